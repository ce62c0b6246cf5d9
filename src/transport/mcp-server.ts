import {
  CLIENT_CAPABILITIES_META_KEY,
  type ClientCapabilities,
  McpServer,
  ProtocolError,
  ResourceTemplate,
  type ServerCapabilities,
  type ServerContext,
  type ServerOptions,
  UriTemplate,
} from '@modelcontextprotocol/server'
import type { AjvJsonSchemaValidator } from '@modelcontextprotocol/server/validators/ajv'
import { type AuditLog, eventFor } from '../audit/audit-log.js'
import type { ScopeRules } from '../auth/resource-metadata.js'

import { publicText, rpcError, SecurityError, toSecurityError } from '../errors.js'
import type { CallContext } from '../pipeline/call.js'
import { failureOutcome, type Principal, policyOf, type RequestContext } from '../pipeline/context.js'
import type { CompiledPolicy, Target } from '../policy/engine.js'
import { auditArgs } from '../protect/redact.js'
import type { Catalog } from '../tools/catalog.js'
import type { ToolOutput, ToolRegistry } from '../tools/registry.js'

export interface ServerDeps {
  readonly info: { readonly name: string; readonly version: string }
  readonly registry: ToolRegistry
  readonly catalog: Catalog
  readonly policy: () => CompiledPolicy
  readonly scopes: ScopeRules
  readonly audit: AuditLog
  readonly callPipeline: (ctx: CallContext) => Promise<ToolOutput>
  /** One validator for every instance: building one per request triples the SDK's cost per call. */
  readonly validator: AjvJsonSchemaValidator
  /** Extra capabilities a library user's tools rely on (logging, completions, …). */
  readonly capabilities?: ServerCapabilities
  readonly requestState?: ServerOptions['requestState']
}

/**
 * How a handler finds its request context: over HTTP it rides in `authInfo.extra` from the edge
 * (which authenticated the request and writes its audit line); over stdio it is made per message
 * from the process principal, and the handler writes the line (`auditHere`).
 */
export type ContextSource = (handlerCtx: ServerContext) => { ctx: RequestContext; auditHere: boolean }

export function toProtocolError(error: SecurityError, requestId: string): ProtocolError {
  const wire = rpcError(error, requestId)
  return new ProtocolError(wire.code, publicText(error), wire.data)
}

/**
 * Run a non-tool handler inside the request's audit scope: one line per request when this
 * transport audits in the handler, and SecurityErrors turned into safe protocol errors.
 */
async function audited<T>(
  deps: ServerDeps,
  contextOf: ContextSource,
  handlerCtx: ServerContext,
  method: string,
  target: string | undefined,
  run: (ctx: RequestContext) => Promise<T>,
  authorize?: { target: Target; args: unknown },
): Promise<T> {
  const { ctx, auditHere } = contextOf(handlerCtx)
  ctx.method = method
  if (target !== undefined) ctx.outcome.extra = { ...ctx.outcome.extra, target }
  try {
    if (authorize !== undefined) {
      // Decided at use, by the policy in force now: a session's lists may predate a reload.
      const principal = ctx.principal
      if (principal === undefined) throw new SecurityError('ERR_INTERNAL', `${method} without a principal`)
      const policy = policyOf(ctx, deps.policy)
      const decision = policy.decide(principal, authorize.target, authorize.args)
      const recorded = authorize.target.kind === 'resource' ? { uri: authorize.target.uri.slice(0, 1024) } : auditArgs(authorize.args)
      ctx.outcome.extra = { ...ctx.outcome.extra, ...recorded, rule: decision.rule, policy: policy.version, authz: decision.allow ? 'allow' : 'deny' }
      if (!decision.allow)
        throw new SecurityError(
          'ERR_FORBIDDEN',
          `policy ${policy.version} denies ${principal.id} ${method} ${target ?? ''} (${decision.rule})${decision.error === undefined ? '' : `: ${decision.error}`}`,
        )
    }
    const result = await run(ctx)
    if (auditHere) {
      deps.audit.recordRequest(ctx)
      await deps.audit.flush()
    }
    return result
  } catch (error) {
    // The outcome is set whichever transport writes the line (HTTP writes it at the edge).
    if (error instanceof ProtocolError) {
      if (!ctx.audited) ctx.outcome = failureOutcome(ctx.outcome, 'request', new SecurityError('ERR_INVALID_REQUEST', `protocol error ${error.code}`))
      if (auditHere && !ctx.audited) deps.audit.recordRequest(ctx)
      throw error
    }
    const failure = toSecurityError(error)
    if (!ctx.audited) ctx.outcome = failureOutcome(ctx.outcome, eventFor(failure.code), failure)
    if (auditHere && !ctx.audited && failure.code !== 'ERR_AUDIT_UNAVAILABLE') deps.audit.recordRequest(ctx)
    throw toProtocolError(failure, ctx.requestId)
  }
}

/**
 * An SDK `McpServer` for one principal: tools go through the call pipeline (the registry's shared
 * descriptors, filtered per caller); resources and prompts are registered only when the caller
 * may use them, so lists are filtered and a forbidden one is simply not found.
 * Cheap to build: descriptors, schemas and the validator are shared across instances.
 */
export function buildServer(deps: ServerDeps, principal: Principal, contextOf: ContextSource, era: 'legacy' | 'modern' = 'legacy'): McpServer {
  const policy = deps.policy()
  // Lists show what the caller may use: resources it may both list and read, by their URI.
  const resources = deps.catalog.resources.filter(
    (r) =>
      policy.decide(principal, { kind: 'resource', name: r.name, uri: r.uri, action: 'list' }, undefined).allow &&
      policy.decide(principal, { kind: 'resource', name: r.name, uri: r.uri, action: 'read' }, undefined).allow,
  )
  const templates = deps.catalog.templates.filter((t) => policy.templateReachable(principal, t.name, t.uriTemplate))
  const prompts = deps.catalog.prompts.filter((p) => policy.reachable(principal, { kind: 'prompt', name: p.name }).allow)
  const hasResources = deps.catalog.resources.length + deps.catalog.templates.length > 0
  const hasPrompts = deps.catalog.prompts.length > 0

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
  // The SDK's HTTP entry validates `Mcp-Param-*` headers (SEP-2243) against this schema before
  // dispatch; tools registered through bastion are not in McpServer's own table, so supply them.
  mcp.toolInputSchemaJson = (name: string) => deps.registry.get(name)?.descriptor.inputSchema

  server.setRequestHandler('tools/list', (_request, handlerCtx) =>
    audited(deps, contextOf, handlerCtx, 'tools/list', undefined, async (ctx) => {
      const current = policyOf(ctx, deps.policy)
      ctx.outcome.extra = { ...ctx.outcome.extra, policy: current.version }
      const tools = deps.registry
        .all()
        .filter((t) => current.reachable(principal, { kind: 'tool', name: t.definition.name }).allow)
        .map((t) => t.descriptor)
      return { tools }
    }),
  )

  server.setRequestHandler('tools/call', async (request, handlerCtx) => {
    const { ctx } = contextOf(handlerCtx)
    const signal = handlerCtx.mcpReq.signal
    try {
      // 2026-07-28: capabilities ride in each request's envelope; 2025-11-25: declared at initialize.
      const capabilities =
        era === 'modern'
          ? ((handlerCtx.mcpReq.envelope as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META_KEY] as ClientCapabilities | undefined)
          : server.getClientCapabilities()
      const canElicit = capabilities?.elicitation !== undefined
      return await deps.callPipeline({
        request: ctx,
        name: request.params.name,
        rawArgs: request.params.arguments,
        signal,
        mcp: handlerCtx,
        canElicit,
        tool: undefined,
        args: undefined,
      })
    } catch (error) {
      throw toProtocolError(toSecurityError(error), ctx.requestId)
    }
  })

  // resources/subscribe exists only in the 2025 era (2026-07-28 replaced it with subscriptions/listen,
  // which the SDK serves). A caller may subscribe only to a URI it may read.
  if (era === 'legacy' && deps.capabilities?.resources?.subscribe === true) {
    const readable = (uri: string): boolean => resources.some((r) => r.uri === uri) || templates.some((t) => new UriTemplate(t.uriTemplate).match(uri) !== null)
    for (const method of ['resources/subscribe', 'resources/unsubscribe'] as const) {
      server.setRequestHandler(method, (request, handlerCtx) =>
        audited(deps, contextOf, handlerCtx, method, request.params.uri.slice(0, 256), async () => {
          if (!readable(request.params.uri)) throw new ProtocolError(-32602, 'resource not found', { uri: request.params.uri.slice(0, 256) })
          return {}
        }),
      )
    }
  }
  for (const r of resources) {
    mcp.registerResource(
      r.name,
      r.uri,
      { ...(r.description === undefined ? {} : { description: r.description }), ...(r.mimeType === undefined ? {} : { mimeType: r.mimeType }) },
      (uri, handlerCtx) =>
        audited(deps, contextOf, handlerCtx, 'resources/read', r.name, () => r.read(uri, handlerCtx), {
          target: { kind: 'resource', name: r.name, uri: uri.href, action: 'read' },
          args: undefined,
        }),
    )
  }
  for (const t of templates) {
    mcp.registerResource(
      t.name,
      new ResourceTemplate(t.uriTemplate, { list: undefined }),
      { ...(t.description === undefined ? {} : { description: t.description }), ...(t.mimeType === undefined ? {} : { mimeType: t.mimeType }) },
      (uri, variables, handlerCtx) =>
        audited(deps, contextOf, handlerCtx, 'resources/read', t.name, () => t.read(uri, variables, handlerCtx), {
          target: { kind: 'resource', name: t.name, uri: uri.href, action: 'read' },
          args: undefined,
        }),
    )
  }
  for (const p of prompts) {
    const meta = {
      ...(p.title === undefined ? {} : { title: p.title }),
      ...(p.description === undefined ? {} : { description: p.description }),
    }
    if (p.args === undefined) {
      mcp.registerPrompt(p.name, meta, (handlerCtx) =>
        audited(deps, contextOf, handlerCtx, 'prompts/get', p.name, () => p.get({}, handlerCtx), { target: { kind: 'prompt', name: p.name }, args: {} }),
      )
    } else {
      mcp.registerPrompt(p.name, { ...meta, argsSchema: p.args }, (args, handlerCtx) =>
        audited(deps, contextOf, handlerCtx, 'prompts/get', p.name, () => p.get(args as Record<string, string>, handlerCtx), {
          target: { kind: 'prompt', name: p.name },
          args,
        }),
      )
    }
  }
  return mcp
}
