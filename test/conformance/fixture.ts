import { randomBytes } from 'node:crypto'
import { mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  acceptedContent,
  type CallToolResult,
  CLIENT_CAPABILITIES_META_KEY,
  completable,
  createRequestStateCodec,
  type GetPromptResult,
  type InputRequest,
  inputRequired,
  inputResponse,
} from '@modelcontextprotocol/server'
import { pino } from 'pino'
import { z } from 'zod'
import { type Bastion, createBastion } from '../../src/index.js'
import { startAuthProxy } from './auth-proxy.js'

export interface Fixture {
  /** The URL the conformance harness talks to (the auth proxy in front of the bastion). */
  readonly url: string
  close(): Promise<void>
}

// 1×1 PNG and a 44-byte WAV header with two silent samples.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=='
const WAV = Buffer.concat([
  Buffer.from('RIFF'),
  Buffer.from([40, 0, 0, 0]),
  Buffer.from('WAVEfmt '),
  Buffer.from([16, 0, 0, 0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]),
  Buffer.from('data'),
  Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]),
]).toString('base64')

const NO_ARGS = z.strictObject({})
const CLIENT_CAPABILITIES = z.object({ sampling: z.unknown().optional(), elicitation: z.unknown().optional() })
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const text = (t: string): CallToolResult => ({ content: [{ type: 'text', text: t }] })
const nameRequest = (message = 'What is your name?'): InputRequest =>
  inputRequired.elicit({ message, requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } })
const confirmRequest = (): InputRequest =>
  inputRequired.elicit({ message: 'Please confirm', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } })

/** requestState payloads minted by this fixture (HMAC-sealed, so the harness cannot forge them). */
type State = { step: 'confirm' } | { step: 'multi' } | { step: 'tamper' } | { step: 'round1' } | { step: 'round2'; name: string }

/** Content, logging, progress and elicitation/sampling tools of the 2025-11-25 scenarios. */
function registerContentTools(bastion: Bastion): void {
  bastion
    .tool({ name: 'test_simple_text', description: 'Returns simple text', input: NO_ARGS, run: async () => text('This is a simple text response for testing.') })
    .tool({
      name: 'test_image_content',
      description: 'Returns an image',
      input: NO_ARGS,
      run: async () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }),
    })
    .tool({
      name: 'test_audio_content',
      description: 'Returns audio',
      input: NO_ARGS,
      run: async () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }),
    })
    .tool({
      name: 'test_embedded_resource',
      description: 'Returns an embedded resource',
      input: NO_ARGS,
      run: async () => ({
        content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }],
      }),
    })
    .tool({
      name: 'test_multiple_content_types',
      description: 'Returns text, an image and a resource',
      input: NO_ARGS,
      run: async () => ({
        content: [
          { type: 'text', text: 'Multiple content types test:' },
          { type: 'image', data: PNG, mimeType: 'image/png' },
          { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' } },
        ],
      }),
    })
    .tool({
      name: 'test_error_handling',
      description: 'Always returns a tool error',
      input: NO_ARGS,
      run: async () => ({ isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] }),
    })
    .tool({
      name: 'test_tool_with_logging',
      description: 'Sends three log notifications',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        await mcp.mcpReq.log('info', 'Tool execution started')
        await sleep(50)
        await mcp.mcpReq.log('info', 'Tool processing data')
        await sleep(50)
        await mcp.mcpReq.log('info', 'Tool execution completed')
        return text('Logging tool completed')
      },
    })
    .tool({
      name: 'test_tool_with_progress',
      description: 'Sends three progress notifications',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const progressToken = mcp.mcpReq._meta?.progressToken
        for (const progress of [0, 50, 100]) {
          if (progressToken !== undefined) await mcp.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } })
          if (progress < 100) await sleep(50)
        }
        return text('Progress tool completed')
      },
    })
    // Written once as multi-round-trip tools: on the 2025 wire the SDK turns input_required into
    // real server-to-client requests on the session's stream.
    .tool({
      name: 'test_sampling',
      description: 'Asks the client to sample',
      input: z.strictObject({ prompt: z.string() }),
      run: async ({ prompt }, { mcp }) => {
        const view = inputResponse(mcp.mcpReq.inputResponses, 'llm')
        if (view.kind !== 'sampling') {
          return inputRequired({ inputRequests: { llm: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 }) } })
        }
        const content = view.result.content
        return text(`LLM response: ${!Array.isArray(content) && content.type === 'text' ? content.text : JSON.stringify(content)}`)
      },
    })
    .tool({
      name: 'test_elicitation',
      description: 'Asks the client for a username and email',
      input: z.strictObject({ message: z.string() }),
      run: async ({ message }, { mcp }) => {
        const view = inputResponse(mcp.mcpReq.inputResponses, 'user')
        if (view.kind !== 'elicit') {
          const requestedSchema = {
            type: 'object' as const,
            properties: { username: { type: 'string' as const, description: "User's response" }, email: { type: 'string' as const, description: "User's email address" } },
            required: ['username', 'email'],
          }
          return inputRequired({ inputRequests: { user: inputRequired.elicit({ message, requestedSchema }) } })
        }
        return text(`User response: action=${view.action}, content=${JSON.stringify(view.content ?? {})}`)
      },
    })
    .tool({
      name: 'test_elicitation_sep1034_defaults',
      description: 'Elicitation with default values',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const view = inputResponse(mcp.mcpReq.inputResponses, 'defaults')
        if (view.kind !== 'elicit') {
          const properties = {
            name: { type: 'string' as const, default: 'John Doe' },
            age: { type: 'integer' as const, default: 30 },
            score: { type: 'number' as const, default: 95.5 },
            status: { type: 'string' as const, enum: ['active', 'inactive', 'pending'], default: 'active' },
            verified: { type: 'boolean' as const, default: true },
          }
          return inputRequired({ inputRequests: { defaults: inputRequired.elicit({ message: 'Defaults', requestedSchema: { type: 'object', properties } }) } })
        }
        return text(`Elicitation completed: action=${view.action}, content=${JSON.stringify(view.content ?? {})}`)
      },
    })
    .tool({
      name: 'test_elicitation_sep1330_enums',
      description: 'Elicitation with every enum shape',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const view = inputResponse(mcp.mcpReq.inputResponses, 'enums')
        if (view.kind !== 'elicit') {
          const titled = (prefix: string) => [1, 2, 3].map((i) => ({ const: `value${i}`, title: `${prefix} ${['First', 'Second', 'Third'][i - 1]}` }))
          const properties = {
            untitledSingle: { type: 'string' as const, enum: ['option1', 'option2', 'option3'] },
            titledSingle: { type: 'string' as const, oneOf: titled('Option') },
            legacyEnum: { type: 'string' as const, enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
            untitledMulti: { type: 'array' as const, items: { type: 'string' as const, enum: ['option1', 'option2', 'option3'] } },
            titledMulti: { type: 'array' as const, items: { anyOf: titled('Choice') } },
          }
          return inputRequired({ inputRequests: { enums: inputRequired.elicit({ message: 'Enums', requestedSchema: { type: 'object', properties } }) } })
        }
        return text(`Elicitation completed: action=${view.action}, content=${JSON.stringify(view.content ?? {})}`)
      },
    })
}

/** Tools of the 2026-07-28 server-stateless scenario (a probe each). */
function registerStatelessTools(bastion: Bastion): void {
  bastion
    .tool({
      name: 'test_logging_tool',
      description: 'Logs once (no notification unless the request asks for a log level)',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        await mcp.mcpReq.log('info', 'log line')
        return text('logged')
      },
    })
    // Returning input_required that needs an undeclared client capability makes the SDK answer
    // -32021 itself (a thrown error would become an isError tool result).
    .tool({
      name: 'test_missing_capability',
      description: 'Needs the sampling capability',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        if (inputResponse(mcp.mcpReq.inputResponses, 's').kind === 'sampling') return text('client has sampling')
        return inputRequired({ inputRequests: { s: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'ping' } }], maxTokens: 5 }) } })
      },
    })
    .tool({
      name: 'test_streaming_elicitation',
      description: 'Elicits through input_required, never a server-to-client request',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        if (inputResponse(mcp.mcpReq.inputResponses, 'q').kind === 'elicit') return text('done')
        return inputRequired({ inputRequests: { q: inputRequired.elicit({ message: 'q?', requestedSchema: { type: 'object', properties: { a: { type: 'string' } } } }) } })
      },
    })
    // SEP-2243: the argument is mirrored into an `Mcp-Param-Region` header, which the server checks.
    .tool({
      name: 'test_custom_header',
      description: 'Takes a region mirrored into a header',
      input: z.strictObject({ region: z.string().meta({ 'x-mcp-header': 'Region' }) }),
      run: async ({ region }) => text(`region ${region}`),
    })
    .tool({
      name: 'test_trigger_tool_change',
      description: 'Publishes tools list_changed',
      input: NO_ARGS,
      run: async () => {
        bastion.edge().modern.notify.toolsChanged()
        return text('tools changed')
      },
    })
    .tool({
      name: 'test_trigger_prompt_change',
      description: 'Publishes prompts list_changed',
      input: NO_ARGS,
      run: async () => {
        bastion.edge().modern.notify.promptsChanged()
        return text('prompts changed')
      },
    })
}

/** SEP-2322 multi-round-trip (input_required) tools of the 2026-07-28 scenarios. */
function registerInputRequiredTools(bastion: Bastion, mint: (state: State) => Promise<string>): void {
  bastion
    .tool({
      name: 'test_input_required_result_elicitation',
      description: 'Asks for a name',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const content = acceptedContent(mcp.mcpReq.inputResponses, 'user_name', z.object({ name: z.string() }))
        if (content === undefined) return inputRequired({ inputRequests: { user_name: nameRequest() } })
        return text(`Hello, ${content.name}!`)
      },
    })
    .tool({
      name: 'test_input_required_result_sampling',
      description: 'Asks the client to sample',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const view = inputResponse(mcp.mcpReq.inputResponses, 'capital_question')
        if (view.kind !== 'sampling') {
          const messages = [{ role: 'user' as const, content: { type: 'text' as const, text: 'What is the capital of France?' } }]
          return inputRequired({ inputRequests: { capital_question: inputRequired.createMessage({ messages, maxTokens: 100 }) } })
        }
        return text(`Sampling said: ${JSON.stringify(view.result.content)}`)
      },
    })
    .tool({
      name: 'test_input_required_result_list_roots',
      description: 'Asks for the client roots',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const view = inputResponse(mcp.mcpReq.inputResponses, 'client_roots')
        if (view.kind !== 'roots') return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } })
        return text(`Roots: ${view.roots.map((r) => r.uri).join(', ')}`)
      },
    })
    .tool({
      name: 'test_input_required_result_request_state',
      description: 'Round-trips an integrity-protected requestState',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const state = mcp.mcpReq.requestState<State>()
        const content = acceptedContent(mcp.mcpReq.inputResponses, 'confirm', z.object({ ok: z.boolean() }))
        if (content === undefined || state?.step !== 'confirm')
          return inputRequired({ inputRequests: { confirm: confirmRequest() }, requestState: await mint({ step: 'confirm' }) })
        return text(`state-ok confirmed=${content.ok}`)
      },
    })
    .tool({
      name: 'test_input_required_result_tampered_state',
      description: 'A tampered requestState must be refused',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        if (mcp.mcpReq.requestState<State>() === undefined) return inputRequired({ inputRequests: { confirm: confirmRequest() }, requestState: await mint({ step: 'tamper' }) })
        return text('state verified')
      },
    })
    .tool({
      name: 'test_input_required_result_multiple_inputs',
      description: 'Asks for three inputs at once',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const got = (key: string) => inputResponse(mcp.mcpReq.inputResponses, key).kind
        if (got('user_name') === 'elicit' && got('greeting') === 'sampling' && got('client_roots') === 'roots') return text('all inputs received')
        const greeting = inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }], maxTokens: 50 })
        return inputRequired({
          inputRequests: { user_name: nameRequest(), greeting, client_roots: inputRequired.listRoots() },
          requestState: await mint({ step: 'multi' }),
        })
      },
    })
    .tool({
      name: 'test_input_required_result_multi_round',
      description: 'Three rounds, two requestStates',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        const state = mcp.mcpReq.requestState<State>()
        const responses = mcp.mcpReq.inputResponses
        const round1 = async () => inputRequired({ inputRequests: { step1: nameRequest('Step 1: What is your name?') }, requestState: await mint({ step: 'round1' }) })
        if (state?.step === 'round1') {
          const step1 = acceptedContent(responses, 'step1', z.object({ name: z.string() }))
          if (step1 === undefined) return round1()
          const color = inputRequired.elicit({
            message: 'Step 2: What is your favorite color?',
            requestedSchema: { type: 'object', properties: { color: { type: 'string' } }, required: ['color'] },
          })
          return inputRequired({ inputRequests: { step2: color }, requestState: await mint({ step: 'round2', name: step1.name }) })
        }
        if (state?.step === 'round2') {
          const step2 = acceptedContent(responses, 'step2', z.object({ color: z.string() }))
          if (step2 !== undefined) return text(`Done: ${state.name} likes ${step2.color}`)
        }
        return round1()
      },
    })
    .tool({
      name: 'test_input_required_result_capabilities',
      description: 'Only asks for what the client declared',
      input: NO_ARGS,
      run: async (_args, { mcp }) => {
        // The SDK's envelope type is opaque ({}), so read the declared capabilities as untrusted input.
        const envelope: Record<string, unknown> = { ...mcp.mcpReq.envelope }
        const caps = CLIENT_CAPABILITIES.safeParse(envelope[CLIENT_CAPABILITIES_META_KEY]).data ?? {}
        if (Object.keys(mcp.mcpReq.inputResponses ?? {}).length > 0) return text('done')
        const requests: Record<string, InputRequest> = {}
        if (caps.sampling !== undefined) requests.s = inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'hi' } }], maxTokens: 10 })
        if (caps.elicitation !== undefined) requests.e = nameRequest()
        if (Object.keys(requests).length === 0) return text('no input capabilities')
        return inputRequired({ inputRequests: requests })
      },
    })
}

function registerResourcesAndPrompts(bastion: Bastion): void {
  bastion
    .resource({
      name: 'static-text',
      uri: 'test://static-text',
      description: 'Static text',
      mimeType: 'text/plain',
      read: async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] }),
    })
    .resource({
      name: 'static-binary',
      uri: 'test://static-binary',
      description: 'Static binary',
      mimeType: 'image/png',
      read: async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG }] }),
    })
    .resource({
      name: 'watched-resource',
      uri: 'test://watched-resource',
      description: 'Subscribable',
      mimeType: 'text/plain',
      read: async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'watched' }] }),
    })
    .resourceTemplate({
      name: 'template',
      uriTemplate: 'test://template/{id}/data',
      description: 'Templated',
      mimeType: 'application/json',
      read: async (uri, { id }) => ({
        contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${String(id)}` }) }],
      }),
    })
    .prompt({
      name: 'test_simple_prompt',
      description: 'A prompt without arguments',
      get: async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] }),
    })
    .prompt({
      name: 'test_prompt_with_arguments',
      description: 'A prompt with two arguments',
      args: z.object({
        arg1: completable(z.string().describe('First test argument'), (value) => ['paris', 'park', 'party', 'test-value'].filter((c) => c.startsWith(value))),
        arg2: z.string().describe('Second test argument'),
      }),
      get: async ({ arg1, arg2 }) => ({
        messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${String(arg1)}', arg2='${String(arg2)}'` } }],
      }),
    })
    .prompt({
      name: 'test_prompt_with_embedded_resource',
      description: 'A prompt embedding a resource',
      args: z.object({ resourceUri: z.string() }),
      get: async ({ resourceUri }) => ({
        messages: [
          { role: 'user', content: { type: 'resource', resource: { uri: String(resourceUri), mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
          { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
        ],
      }),
    })
    .prompt({
      name: 'test_prompt_with_image',
      description: 'A prompt with an image',
      get: async () => ({
        messages: [
          { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
          { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
        ],
      }),
    })
    .prompt({
      name: 'test_input_required_result_prompt',
      description: 'A prompt that asks for context first',
      get: async (_args, mcp) => {
        const content = acceptedContent(mcp.mcpReq.inputResponses, 'user_context', z.object({ context: z.string() }))
        if (content === undefined) {
          const request = inputRequired.elicit({
            message: 'What context should the prompt use?',
            requestedSchema: { type: 'object', properties: { context: { type: 'string' } }, required: ['context'] },
          })
          // PromptDefinition.get is typed GetPromptResult only; the SDK underneath accepts input_required.
          return inputRequired({ inputRequests: { user_context: request } }) as unknown as GetPromptResult
        }
        return { messages: [{ role: 'user', content: { type: 'text', text: `Context: ${content.context}` } }] }
      },
    })
}

/**
 * The conformance "everything server", built with bastion's public API: every scenario tool,
 * resource and prompt of @modelcontextprotocol/conformance, behind the full bastion pipeline
 * (audit, Host/Origin guard, body limits, API-key auth, RBAC), with an auth proxy in front.
 */
export async function startFixture(): Promise<Fixture> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-conformance-')))
  // One key for the whole run: the harness echoes requestState across requests.
  const codec = createRequestStateCodec<State>({ key: randomBytes(32) })
  const bastion = await createBastion({
    baseDir: dir,
    logger: pino({ level: 'silent' }),
    announce: false,
    info: { name: 'bastion-conformance-fixture', version: '0.0.1' },
    config: {
      roles: { admin: { permissions: ['*'] } },
      auth: { reloadIntervalMs: 0 },
      // The harness opens a session per scenario (and three at once in server-sse-multiple-streams).
      server: { sessions: { maxPerPrincipal: 64 } },
      workspace: { enabled: false },
    },
    capabilities: { logging: {}, completions: {}, resources: { subscribe: true, listChanged: true }, tools: { listChanged: true }, prompts: { listChanged: true } },
    requestState: { verify: codec.verify },
  })
  registerContentTools(bastion)
  registerStatelessTools(bastion)
  registerInputRequiredTools(bastion, (state) => codec.mint(state))
  registerResourcesAndPrompts(bastion)
  try {
    const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
    const { key } = bastion.keys.create({ name: 'conformance', roles: ['admin'], expiresAt: null })
    const proxy = await startAuthProxy(running.url, key)
    return {
      url: proxy.url,
      async close() {
        await proxy.close()
        await bastion.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    await bastion.close()
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
