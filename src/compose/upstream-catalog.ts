import { SignJWT } from 'jose'
import type { Logger } from 'pino'
import { z } from 'zod'
import type { LoadedConfig } from '../config/load.js'
import { SecurityError } from '../errors.js'
import { screenText, type ToolDefinitionPin } from '../gateway/definitions.js'
import { compileSchema } from '../gateway/json-schema.js'
import type { CallToolResult } from '../protocol.js'
import type { PromptDefinition, ResourceDefinition } from '../tools/catalog.js'
import { Confirmations } from '../tools/confirm.js'
import type { ToolDefinition } from '../tools/registry.js'
import { UpstreamUnavailable } from '../transport/upstream/connection.js'
import { failConfig } from './upstream-setup.js'
import type { Upstream } from './upstream-state.js'

/** A JSON Schema with invisible characters stripped from its `title` and `description` texts (nothing else: patterns and values keep their meaning). */
function withoutInvisibleText(schema: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const walk = (v: unknown, key: string | undefined): unknown => {
    if (typeof v === 'string') return key === 'title' || key === 'description' ? screenText(v).text : v
    if (Array.isArray(v)) return v.map((x) => walk(x, undefined))
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]))
    return v
  }
  return walk(schema, undefined) as Record<string, unknown>
}

/**
 * An upstream whose pinned definitions were not compared with its list yet (down since start):
 * try to reach it now, then serve only if its list was compared. Nothing is forwarded unverified.
 * @throws SecurityError ERR_UPSTREAM_UNAVAILABLE
 */
async function unverified(u: Upstream, what: 'tools' | 'resources' | 'prompts'): Promise<void> {
  try {
    await u.conn.ensure()
  } catch (error) {
    throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', error instanceof Error ? error.message : `upstream ${u.name} unavailable`)
  }
  const listed = what === 'tools' ? u.listed : u.catalogListed
  if (!listed) throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', `upstream ${u.name} has not listed its ${what} yet: pins unverified`)
}

/** The whole input a tool gets: an object (the JSON Schema says more, checked by `check`). */
const objectArgs = z.record(z.string(), z.unknown())

/** What an upstream tool needs besides its upstream. */
export interface ToolDeps {
  readonly loaded: LoadedConfig
  readonly log: Logger
  readonly confirmations: Confirmations
  /** `forwardIdentity`: the header and the key that signs who called. */
  readonly identity: { readonly header: string; readonly key: Uint8Array } | undefined
}

export function upstreamTool(u: Upstream, def: ToolDefinitionPin, deps: ToolDeps): ToolDefinition {
  const { loaded } = deps
  const name = `${u.prefix}${def.name}`
  let check: ReturnType<typeof compileSchema>
  let checkOutput: ReturnType<typeof compileSchema> | undefined
  try {
    check = compileSchema(def.inputSchema)
    checkOutput = def.outputSchema === undefined ? undefined : compileSchema(def.outputSchema)
  } catch (error) {
    return failConfig(loaded, `upstreams.${u.name}`, `tool ${def.name}: ${error instanceof Error ? error.message : 'invalid schema'}`)
  }
  const input = objectArgs.superRefine((value, ctx) => {
    const problem = check(value)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem.what, path: problem.path === 'arguments' ? [] : problem.path.split('.') })
  })
  const description = screenText(def.description ?? '')
  if (description.flagged.length > 0 || description.invisible > 0)
    deps.log.warn({ upstream: u.name, tool: def.name, invisible: description.invisible, flagged: description.flagged }, 'upstream tool description screened')
  const destructive = u.config.confirm.includes(def.name) || def.annotations?.destructiveHint === true
  const confirmations = deps.confirmations
  const identity = deps.identity
  const blocked = (): SecurityError | undefined => {
    const drift = u.blocked.get(name)
    if (drift === undefined) return undefined
    return new SecurityError('ERR_TOOL_BLOCKED', `upstream ${u.name} tool ${def.name} ${drift.change} since pinned (${drift.fields.join(', ').slice(0, 300)})`)
  }
  const verify = (): void => {
    const refusal = blocked()
    if (refusal !== undefined) throw refusal
  }
  return {
    name,
    ...(def.title === undefined ? {} : { title: screenText(def.title).text }),
    description: description.text,
    input,
    // Served as pinned but for invisible characters in the texts a model reads (titles, descriptions).
    jsonSchema: { input: withoutInvisibleText(def.inputSchema), ...(def.outputSchema === undefined ? {} : { output: withoutInvisibleText(def.outputSchema) }) },
    ...(u.config.permissions === undefined ? {} : { permissions: u.config.permissions }),
    ...(def.annotations === undefined ? {} : { annotations: def.annotations }),
    auditFields: { upstream: u.name },
    blocked,
    run: async (args, ctx) => {
      // Pinned tools of an upstream not yet listed are unverified: nothing is forwarded before the comparison.
      if (!u.listed && u.mode === 'enforce') await unverified(u, 'tools')
      if (destructive) {
        const state = Confirmations.stateOf(ctx)
        if (state === undefined) {
          const preview = { upstream: u.name, tool: def.name }
          ctx.audit({ dryRun: preview })
          return confirmations.ask(ctx, name, args, `Run ${def.name} on ${u.name}? It may change or delete data.`, preview)
        }
        await confirmations.redeem(ctx, name, args, state)
      }
      const headers: Record<string, string> = {}
      if (identity !== undefined) headers[identity.header] = await identityToken(identity.key, u.name, ctx.principal.id, ctx.principal.roles, ctx.requestId)
      let result: CallToolResult
      try {
        // Checked again once connected: a reconnect or re-list may just have blocked it.
        const sent = performance.now()
        // OpenTelemetry: the call's trace context goes on in the request's params._meta and, over HTTP, its headers.
        const trace = ctx.trace?.context ?? {}
        result = await u.conn.call(def.name, args as Record<string, unknown>, ctx.signal, { ...trace, ...headers }, verify, trace)
        ctx.trace?.mark('upstream', sent)
      } catch (error) {
        if (error instanceof SecurityError) throw error
        if (error instanceof UpstreamUnavailable) throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', error.message)
        if (ctx.signal.aborted) throw error
        const code = (error as { code?: unknown }).code
        // The upstream's own error text is not forwarded: it may hold paths or internals.
        throw new SecurityError(
          'ERR_TOOL_FAILED',
          `upstream ${u.name} tool ${def.name} answered a JSON-RPC error ${String(code)}: ${error instanceof Error ? error.message.slice(0, 300) : ''}`,
          {
            expose: 'the upstream server refused the call',
          },
        )
      }
      return screenResult(u.name, def.name, result, checkOutput, ctx.audit)
    },
  }
}

/** The served resources (fixed URIs, as the upstream names them) behind the same policy as bastion's own. */
export function upstreamResources(u: Upstream, timeoutMs: number): ResourceDefinition[] {
  return [...u.servedResources.values()].map((def): ResourceDefinition => {
    const name = `${u.prefix}${def.name}`
    return {
      name,
      uri: def.uri,
      ...(def.description === undefined ? {} : { description: screenText(def.description).text }),
      ...(def.mimeType === undefined ? {} : { mimeType: def.mimeType }),
      ...(u.config.permissions === undefined ? {} : { permissions: u.config.permissions }),
      blocked: () => u.blockedResources.has(name),
      read: async (uri, mcp) => {
        if (u.blockedResources.has(name)) throw new SecurityError('ERR_RESOURCE_NOT_FOUND', `upstream ${u.name} resource ${def.name} is blocked: its definition drifted`)
        if (!u.catalogListed && u.mode === 'enforce') await unverified(u, 'resources')
        const verify = (): void => {
          if (u.blockedResources.has(name)) throw new SecurityError('ERR_RESOURCE_NOT_FOUND', `upstream ${u.name} resource ${def.name} is blocked: its definition drifted`)
        }
        const result = await forward(u, 'resource', timeoutMs, (signal) => u.conn.readResource(uri.href, AbortSignal.any([mcp.mcpReq.signal, signal]), verify))
        return {
          ...result,
          contents: result.contents.map((c) => ('text' in c && typeof c.text === 'string' ? { ...c, text: screenText(c.text).text } : c)),
        }
      },
    }
  })
}

/** The served prompts, their string arguments as the upstream declared them. */
export function upstreamPrompts(u: Upstream, timeoutMs: number): PromptDefinition[] {
  return [...u.servedPrompts.values()].map((def): PromptDefinition => {
    const name = `${u.prefix}${def.name}`
    const shape: Record<string, z.ZodType> = {}
    for (const a of def.arguments ?? []) {
      const arg = z.string().max(65_536)
      const described = a.description === undefined ? arg : arg.describe(screenText(a.description).text)
      shape[a.name] = a.required === true ? described : described.optional()
    }
    return {
      name,
      ...(def.title === undefined ? {} : { title: screenText(def.title).text }),
      ...(def.description === undefined ? {} : { description: screenText(def.description).text }),
      ...(def.arguments === undefined ? {} : { args: z.object(shape) }),
      ...(u.config.permissions === undefined ? {} : { permissions: u.config.permissions }),
      blocked: () => u.blockedPrompts.has(name),
      get: async (args, mcp) => {
        if (u.blockedPrompts.has(name)) throw new SecurityError('ERR_INVALID_PARAMS', `upstream ${u.name} prompt ${def.name} is blocked: its definition drifted`)
        if (!u.catalogListed && u.mode === 'enforce') await unverified(u, 'prompts')
        const verify = (): void => {
          if (u.blockedPrompts.has(name)) throw new SecurityError('ERR_INVALID_PARAMS', `upstream ${u.name} prompt ${def.name} is blocked: its definition drifted`)
        }
        const result = await forward(u, 'prompt', timeoutMs, (signal) => u.conn.getPrompt(def.name, args, AbortSignal.any([mcp.mcpReq.signal, signal]), verify))
        return {
          ...result,
          messages: result.messages.map((m) => (m.content.type === 'text' ? { ...m, content: { ...m.content, text: screenText(m.content.text).text } } : m)),
        }
      },
    }
  })
}

/**
 * A resource read or prompt get: the upstream's failures in bastion's codes (as JSON-RPC errors:
 * reads and gets have no in-band error), its own text kept out.
 */
async function forward<T>(u: Upstream, kind: 'resource' | 'prompt', timeoutMs: number, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  // Bastion's own limit (limits.timeoutMs), as for tool calls: a client without a timeout is not held forever.
  const timeout = AbortSignal.timeout(timeoutMs)
  try {
    return await run(timeout)
  } catch (error) {
    if (error instanceof SecurityError) throw error
    if (error instanceof UpstreamUnavailable) throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', error.message)
    if (timeout.aborted) throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', `upstream ${u.name} did not answer the ${kind} within ${timeoutMs} ms`)
    throw new SecurityError(
      kind === 'resource' ? 'ERR_RESOURCE_NOT_FOUND' : 'ERR_INVALID_PARAMS',
      `upstream ${u.name} refused: ${error instanceof Error ? error.message.slice(0, 300) : 'error'}`,
    )
  }
}

/** A short-lived signed statement of who called, for an upstream that asked for it (`forwardIdentity`). */
function identityToken(key: Uint8Array, upstream: string, sub: string, roles: readonly string[], requestId: string): Promise<string> {
  return new SignJWT({ roles: [...roles] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('mcp-bastion')
    .setAudience(upstream)
    .setSubject(sub)
    .setJti(requestId)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(key)
}

const RESULT_SHAPE = z.looseObject({ content: z.array(z.looseObject({ type: z.string() })).optional(), isError: z.boolean().optional() })

/**
 * An upstream's result, checked before it goes anywhere: the result shape, its structured content
 * against the pinned output schema, invisible characters stripped from its text and
 * instruction-like text flagged in the audit line.
 * Does not check: personal data and size (the run stage does, for every tool).
 */
function screenResult(
  upstream: string,
  tool: string,
  result: CallToolResult,
  checkOutput: ReturnType<typeof compileSchema> | undefined,
  audit: (fields: Record<string, unknown>) => void,
): CallToolResult {
  const invalid = (why: string): never => {
    throw new SecurityError('ERR_TOOL_FAILED', `upstream ${upstream} tool ${tool}: ${why}`, { expose: 'the upstream server answered outside its declared schema' })
  }
  if (!RESULT_SHAPE.safeParse(result).success) invalid('the result is not a tool result')
  if (checkOutput !== undefined && result.isError !== true) {
    if (result.structuredContent === undefined) invalid('no structuredContent, yet the tool declares an output schema')
    const problem = checkOutput(result.structuredContent)
    if (problem !== undefined) invalid(`structuredContent: ${problem.path}: ${problem.what}`)
  }
  let invisible = 0
  const flagged = new Set<string>()
  const screen = (text: string): string => {
    const screened = screenText(text)
    invisible += screened.invisible
    for (const f of screened.flagged) flagged.add(f)
    return screened.text
  }
  const content = (result.content ?? []).map((block): CallToolResult['content'][number] => {
    if (block.type === 'text' && typeof block.text === 'string') return { ...block, text: screen(block.text) }
    // An embedded resource's text is read by the model as much as a text block.
    if (block.type === 'resource' && 'text' in block.resource && typeof block.resource.text === 'string')
      return { ...block, resource: { ...block.resource, text: screen(block.resource.text) } }
    return block
  })
  if (invisible > 0 || flagged.size > 0) audit({ screened: `invisible:${invisible}${flagged.size > 0 ? `,instructions:${flagged.size}` : ''}` })
  // A tool error carries no structured result (it was checked against nothing): only its content goes on.
  if (result.isError === true) {
    const { structuredContent: _dropped, ...rest } = result
    return { ...rest, content } as CallToolResult
  }
  return { ...result, content }
}
