import {
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  type InputRequiredResult,
  inputRequired,
  inputResponse,
  isInputRequiredResult,
  McpServer,
  ResourceNotFoundError,
  ResourceTemplate,
  type ServerCapabilities,
  type ServerContext,
  type ServerOptions,
  UriTemplate,
} from '@modelcontextprotocol/server'
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/server/validators/ajv'
import type { ScopeRules } from '../auth/resource-metadata.js'
import { SecurityError, toSecurityError, WIRE } from '../errors.js'
import { type Exchange, policyOf } from '../pipeline/exchange.js'
import type { CompiledPolicy, Target } from '../policy/engine.js'
import { decisionPrincipal } from '../policy/replay.js'
import type { Principal } from '../principal.js'
import { auditArgs } from '../protect/redact.js'
import type { InputHelpers } from '../protocol.js'
import type { Catalog, PromptDefinition, ResourceDefinition, ResourceTemplateDefinition } from '../tools/catalog.js'
import type { ToolOutput, ToolRegistry } from '../tools/registry.js'
import { toolErrorResult, toProtocolError } from './wire.js'

export interface ServerDeps {
  readonly info: { readonly name: string; readonly version: string }
  readonly registry: ToolRegistry
  readonly catalog: Catalog
  readonly policy: () => CompiledPolicy
  readonly scopes: ScopeRules
  /** The call path for a tool the stage list has resolved and authorized (transport/stages.ts callPath). */
  readonly run: (x: Exchange, mcp: ServerContext, canElicit: boolean) => Promise<ToolOutput>
  /** One validator for every instance: building one per request triples the SDK's cost per call. */
  readonly validator: AjvJsonSchemaValidator
  /** Extra capabilities a library user's tools rely on (logging, completions, …). */
  readonly capabilities?: ServerCapabilities
  readonly requestState?: ServerOptions['requestState']
}

/** The SDK's multi-round-trip helpers, for tool contexts (tools never import the SDK). */
export const INPUT_HELPERS: InputHelpers = Object.freeze({ required: inputRequired, response: inputResponse })

/** The JSON Schema validator of every server instance (one: building one per request triples the SDK's cost per call). */
export function createValidator(): AjvJsonSchemaValidator {
  return new AjvJsonSchemaValidator()
}

/** How a handler finds the exchange of the request it serves (a typed map kept by the transport). */
export type ExchangeOf = (handlerCtx: ServerContext) => Exchange

const visibleResource = (policy: CompiledPolicy, p: Principal, r: ResourceDefinition): boolean =>
  r.blocked?.() !== true &&
  policy.decide(p, { kind: 'resource', name: r.name, uri: r.uri, action: 'list' }, undefined).allow &&
  policy.decide(p, { kind: 'resource', name: r.name, uri: r.uri, action: 'read' }, undefined).allow
const visibleTemplate = (policy: CompiledPolicy, p: Principal, t: ResourceTemplateDefinition): boolean => policy.templateReachable(p, t.name, t.uriTemplate)
const visiblePrompt = (policy: CompiledPolicy, p: Principal, d: PromptDefinition): boolean => d.blocked?.() !== true && policy.reachable(p, { kind: 'prompt', name: d.name }).allow

function principalOf(x: Exchange): Principal {
  if (x.principal === undefined) throw new SecurityError('ERR_INTERNAL', 'SDK handler reached without a principal')
  return x.principal
}

/** A list or read handler's body, with its refusals rendered through the wire and recorded on the exchange. */
async function guarded<T>(x: Exchange, run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (error) {
    // The SDK's own not-found, raised on purpose (below): re-rendered by the wire like the SDK's.
    if (error instanceof ResourceNotFoundError) throw error
    const failure = toSecurityError(error)
    x.audit.fail(failure)
    throw toProtocolError(failure, x.requestId)
  }
}

/** Decide a resource read or prompt get by the policy in force for this request; a hidden target is not found. */
function authorize(x: Exchange, deps: ServerDeps, target: Target, args: unknown, visible: boolean): void {
  const principal = principalOf(x)
  const policy = policyOf(x, deps.policy)
  const { name } = target
  x.audit.note({ target: name })
  if (!visible) {
    // A hidden resource is answered exactly like one that does not exist (the SDK's own error,
    // re-rendered by the wire), so its existence does not leak.
    if (target.kind === 'resource') throw new ResourceNotFoundError(target.uri)
    throw new SecurityError('ERR_INVALID_PARAMS', `${principal.id} may not see ${target.kind} ${name}`)
  }
  const decision = policy.decide(principal, target, args)
  const recorded = target.kind === 'resource' ? { uri: target.uri.slice(0, 1024) } : auditArgs(args)
  x.audit.note({ ...recorded, ...decisionPrincipal(principal), rule: decision.rule, policy: policy.version, authz: decision.allow ? 'allow' : 'deny' })
  if (!decision.allow)
    throw new SecurityError(
      'ERR_FORBIDDEN',
      `policy ${policy.version} denies ${principal.id} ${target.kind} ${name} (${decision.rule})${decision.error === undefined ? '' : `: ${decision.error}`}`,
    )
}

// MCP 2026-07-28 (multi round-trip): what a client must have declared to answer each kind of input request.
const INPUT_CAPABILITY: ReadonlyMap<string, keyof ClientCapabilities> = new Map([
  ['elicitation/create', 'elicitation'],
  ['sampling/createMessage', 'sampling'],
  ['roots/list', 'roots'],
])

/**
 * A tool asked for input the client did not declare it can give: refused as -32021 here, before
 * the SDK would answer it with its own text (2025-11-25) or error (2026-07-28).
 * @throws SecurityError ERR_CAPABILITY_MISSING
 */
function requireCapabilities(output: InputRequiredResult, capabilities: ClientCapabilities | undefined): void {
  for (const [key, request] of Object.entries(output.inputRequests ?? {})) {
    const needed = INPUT_CAPABILITY.get(request.method)
    if (needed !== undefined && capabilities?.[needed] === undefined)
      throw new SecurityError('ERR_CAPABILITY_MISSING', `input ${key.slice(0, 64)} needs the client capability ${needed}`, {
        expose: `the client did not declare ${needed}`,
        data: { requiredCapabilities: { [needed]: {} } },
      })
  }
}

// List entries, made once per registration: every request's list reuses them.
const entries = new WeakMap<object, Record<string, unknown>>()
function entry<T extends object>(item: T, make: (item: T) => Record<string, unknown>): Record<string, unknown> {
  let made = entries.get(item)
  if (made === undefined) {
    made = make(item)
    entries.set(item, made)
  }
  return made
}
const optional = (key: string, value: unknown): Record<string, unknown> => (value === undefined ? {} : { [key]: value })
const resourceEntry = (r: ResourceDefinition) =>
  entry(r, () => ({ uri: r.uri, name: r.name, ...optional('description', r.description), ...optional('mimeType', r.mimeType) })) as { uri: string; name: string }
const templateEntry = (t: ResourceTemplateDefinition) =>
  entry(t, () => ({ uriTemplate: t.uriTemplate, name: t.name, ...optional('description', t.description), ...optional('mimeType', t.mimeType) })) as {
    uriTemplate: string
    name: string
  }
const promptEntry = (p: PromptDefinition) =>
  entry(p, () => ({
    name: p.name,
    ...optional('title', p.title),
    ...optional('description', p.description),
    ...optional(
      'arguments',
      p.args === undefined
        ? undefined
        : Object.entries(p.args.shape).map(([name, schema]) => ({ name, ...optional('description', schema.description), required: !schema.safeParse(undefined).success })),
    ),
  })) as { name: string }

/**
 * An SDK server whose handlers only run what the stage list (transport/stages.ts) has already
 * decided: the tool a request resolved to, with its validated arguments. Lists are decided for the
 * credential presented on each request, never for the one that opened a session. Resource reads and
 * prompt gets are decided here, by the same policy, because only the SDK resolves a URI to a template.
 * Cheap to build: descriptors, schemas and the validator are shared across instances.
 */
export function buildServer(deps: ServerDeps, exchangeOf: ExchangeOf, era: 'legacy' | 'modern'): McpServer {
  const { catalog } = deps
  const hasResources = catalog.resources.length + catalog.templates.length > 0
  const hasPrompts = catalog.prompts.length > 0
  const mcp = new McpServer(deps.info, {
    capabilities: {
      ...deps.capabilities,
      tools: { listChanged: false, ...deps.capabilities?.tools },
      ...(hasResources ? { resources: { ...deps.capabilities?.resources } } : {}),
      ...(hasPrompts ? { prompts: { ...deps.capabilities?.prompts } } : {}),
    },
    jsonSchemaValidator: deps.validator,
    ...(deps.requestState === undefined ? {} : { requestState: deps.requestState }),
  })
  const server = mcp.server

  server.setRequestHandler('tools/list', (_request, ctx) => {
    const x = exchangeOf(ctx)
    return guarded(x, async () => {
      const principal = principalOf(x)
      const policy = policyOf(x, deps.policy)
      x.audit.note({ policy: policy.version })
      return {
        tools: deps.registry
          .all()
          .filter((t) => t.definition.blocked?.() === undefined && policy.reachable(principal, { kind: 'tool', name: t.definition.name }).allow)
          .map((t) => t.descriptor),
      }
    })
  })

  server.setRequestHandler('tools/call', async (request, ctx) => {
    const x = exchangeOf(ctx)
    return guarded(x, async () => {
      // The SDK parsed the same message the stage list decided on; a different name is a bug, not a call.
      if (x.tool === undefined || x.tool.definition.name !== request.params.name) throw new SecurityError('ERR_INTERNAL', 'tools/call reached the SDK without its decision')
      // 2026-07-28: capabilities ride in each request's envelope; 2025-11-25: declared at initialize.
      const capabilities =
        era === 'modern'
          ? ((ctx.mcpReq.envelope as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META_KEY] as ClientCapabilities | undefined)
          : server.getClientCapabilities()
      const running = deps.run(x, ctx, capabilities?.elicitation !== undefined)
      x.audit.hold(running)
      let output: ToolOutput
      try {
        output = await running
      } catch (error) {
        const failure = toSecurityError(error)
        x.audit.fail(failure)
        // MCP: tool execution errors (invalid arguments among them) are reported in the result.
        if (WIRE[failure.code].carrier === 'tool') return toolErrorResult(failure, x.requestId)
        // A cancelled request gets no answer (MCP cancellation): its line is written now.
        if (failure.code === 'ERR_CANCELLED') await x.audit.commit()
        throw failure
      }
      if (isInputRequiredResult(output)) requireCapabilities(output, capabilities)
      if (era === 'legacy' && isInputRequiredResult(output)) {
        // The SDK asks the client on the open stream and runs the call again on this request: this
        // round's line is written now, the next round gets its own.
        await x.audit.commit()
        x.audit.nextRound()
      }
      return output
    })
  })

  for (const r of catalog.resources) {
    const meta = { ...(r.description === undefined ? {} : { description: r.description }), ...(r.mimeType === undefined ? {} : { mimeType: r.mimeType }) }
    mcp.registerResource(r.name, r.uri, meta, (uri, ctx) => {
      const x = exchangeOf(ctx)
      return guarded(x, async () => {
        authorize(x, deps, { kind: 'resource', name: r.name, uri: uri.href, action: 'read' }, undefined, visibleResource(policyOf(x, deps.policy), principalOf(x), r))
        return r.read(uri, ctx)
      })
    })
  }
  for (const t of catalog.templates) {
    const meta = { ...(t.description === undefined ? {} : { description: t.description }), ...(t.mimeType === undefined ? {} : { mimeType: t.mimeType }) }
    mcp.registerResource(t.name, new ResourceTemplate(t.uriTemplate, { list: undefined }), meta, (uri, variables, ctx) => {
      const x = exchangeOf(ctx)
      return guarded(x, async () => {
        authorize(x, deps, { kind: 'resource', name: t.name, uri: uri.href, action: 'read' }, undefined, visibleTemplate(policyOf(x, deps.policy), principalOf(x), t))
        return t.read(uri, variables, ctx)
      })
    })
  }
  for (const p of catalog.prompts) {
    const meta = { ...(p.title === undefined ? {} : { title: p.title }), ...(p.description === undefined ? {} : { description: p.description }) }
    const get = (ctx: ServerContext, args: Record<string, string>) => {
      const x = exchangeOf(ctx)
      return guarded(x, async () => {
        authorize(x, deps, { kind: 'prompt', name: p.name }, args, visiblePrompt(policyOf(x, deps.policy), principalOf(x), p))
        return p.get(args, ctx)
      })
    }
    if (p.args === undefined) mcp.registerPrompt(p.name, meta, (ctx) => get(ctx, {}))
    else mcp.registerPrompt(p.name, { ...meta, argsSchema: p.args }, (args, ctx) => get(ctx, args as Record<string, string>))
  }

  // Lists for the caller of this request (the SDK's own list handlers would show every registration).
  const listed =
    <T>(list: (policy: CompiledPolicy, who: Principal) => T) =>
    (_request: unknown, ctx: ServerContext): Promise<T> => {
      const x = exchangeOf(ctx)
      return guarded(x, async () => list(policyOf(x, deps.policy), principalOf(x)))
    }
  if (hasResources) {
    server.setRequestHandler(
      'resources/list',
      listed((policy, who) => ({ resources: catalog.resources.filter((r) => visibleResource(policy, who, r)).map(resourceEntry) })),
    )
    server.setRequestHandler(
      'resources/templates/list',
      listed((policy, who) => ({ resourceTemplates: catalog.templates.filter((t) => visibleTemplate(policy, who, t)).map(templateEntry) })),
    )
  }
  if (hasPrompts)
    server.setRequestHandler(
      'prompts/list',
      listed((policy, who) => ({ prompts: catalog.prompts.filter((p) => visiblePrompt(policy, who, p)).map(promptEntry) })),
    )

  // resources/subscribe exists only in the 2025 era (2026-07-28 replaced it with subscriptions/listen,
  // which the SDK serves). A caller may subscribe only to a URI it may read.
  if (era === 'legacy' && deps.capabilities?.resources?.subscribe === true) {
    for (const method of ['resources/subscribe', 'resources/unsubscribe'] as const) {
      server.setRequestHandler(method, (request, ctx) => {
        const x = exchangeOf(ctx)
        return guarded(x, async () => {
          const policy = policyOf(x, deps.policy)
          const who = principalOf(x)
          const uri = request.params.uri
          x.audit.note({ target: uri.slice(0, 256) })
          const readable =
            catalog.resources.some((r) => r.uri === uri && visibleResource(policy, who, r)) ||
            catalog.templates.some((t) => new UriTemplate(t.uriTemplate).match(uri) !== null && visibleTemplate(policy, who, t))
          if (!readable) throw new SecurityError('ERR_RESOURCE_NOT_FOUND', 'subscribe to an unknown or hidden resource')
          return {}
        })
      })
    }
  }
  return mcp
}

/** Idle instances kept for reuse; more than this many at once are built and dropped. */
const POOL_MAX = 64

/**
 * 2026-07-28 server instances, reused across requests: building one (its handlers, the tools'
 * JSON Schemas, the SDK's per-instance state) costs more than the rest of a call. An instance is
 * taken for one exchange and comes back when the SDK closes that exchange (its transport's close
 * chain), never while it serves. Safe because nothing of a request stays on the instance: the SDK
 * seeds each exchange's protocol version and client identity, and the handlers find their
 * exchange through the request they are given.
 */
export class ServerPool {
  readonly #idle: McpServer[] = []
  readonly #build: () => McpServer

  constructor(build: () => McpServer) {
    this.#build = build
  }

  take(): McpServer {
    const reused = this.#idle.pop()
    if (reused !== undefined) return reused
    const made = this.#build()
    const server = made.server
    let home = true
    server.onclose = () => {
      // Closed with no transport: back to the pool once (a second close of the same exchange is a no-op).
      if (server.transport !== undefined || !home) return
      if (this.#idle.length < POOL_MAX && !this.#idle.includes(made)) this.#idle.push(made)
      else home = false
    }
    return made
  }

  get size(): number {
    return this.#idle.length
  }
}
