import type { CallToolResult, ServerContext } from '@modelcontextprotocol/server'
import type { AuditLog } from '../audit/audit-log.js'
import { requireScopes, type ScopeRules } from '../auth/resource-metadata.js'
import { publicText, SecurityError, type SecurityErrorCode, toSecurityError } from '../errors.js'
import type { ConcurrencyCaps } from '../limits/concurrency.js'
import { executeTool } from '../limits/execute.js'
import { charge, type RateLimitDeps } from '../limits/rate-guard.js'
import type { CompiledPolicy, PolicyDecision } from '../policy/engine.js'
import { auditArgs } from '../protect/redact.js'
import type { RegisteredTool, ToolOutput, ToolRegistry } from '../tools/registry.js'
import { compose, type Guard } from './compose.js'
import { failureOutcome, policyOf, type RequestContext } from './context.js'

/** One `tools/call` as it moves through the call pipeline. */
export interface CallContext {
  readonly request: RequestContext
  readonly name: string
  /** Aborted on client cancellation, disconnect or shutdown. */
  readonly signal: AbortSignal
  readonly mcp: ServerContext
  /** Did the client declare elicitation support (2025-11-25: at initialize; 2026-07-28: in the request)? */
  readonly canElicit: boolean
  /** Arguments as received: untrusted. */
  readonly rawArgs: unknown
  tool: RegisteredTool | undefined
  /** Arguments after validation: the one value every later stage and the tool see. */
  args: unknown
  /** The policy decision on the validated arguments (its `output` settings are for later layers). */
  decision?: PolicyDecision
}

export interface CallDeps {
  readonly registry: ToolRegistry
  readonly policy: () => CompiledPolicy
  readonly scopes: ScopeRules
  readonly audit: AuditLog
  readonly limits: RateLimitDeps
  readonly caps: ConcurrencyCaps
  readonly piiMode: (tool: string, fromPolicy: string | undefined) => 'mask' | 'block' | 'allow'
}

export type CallGuard = Guard<CallContext, ToolOutput>

/** Key under `_meta` carrying the machine-readable refusal of an in-band tool error. */
export const ERROR_META_KEY = 'bastion/error'

/** A tool-level refusal or failure, reported in-band (`isError`) so the model can correct itself. */
export function toolErrorResult(error: SecurityError, requestId: string): CallToolResult {
  return {
    content: [{ type: 'text', text: `${publicText(error)} (request id ${requestId})` }],
    isError: true,
    _meta: { [ERROR_META_KEY]: { code: error.code, requestId } },
  }
}

const CALL_EVENTS: Partial<Record<SecurityErrorCode, string>> = {
  ERR_FORBIDDEN: 'authz.denied',
  ERR_TOOL_NOT_FOUND: 'tool.unknown',
  ERR_RATE_LIMITED: 'limit.exceeded',
  ERR_CONCURRENCY_LIMIT: 'limit.exceeded',
  ERR_LIMITS_UNAVAILABLE: 'error',
  ERR_CANCELLED: 'tool.cancelled',
}

// Fields of the edge that stay on a re-entered round's line; the first round's decisions do not.
const CARRIED = new Set(['via', 'kind', 'limits', 'limitsError'])

/**
 * Audit, outermost: exactly one `tool.call` line per call, with outcome and duration; refusals
 * that are protocol errors are rethrown after the line is written. A failed audit write fails
 * the call closed, even one that already ran.
 */
function auditCall(audit: AuditLog): CallGuard {
  return async function auditCallGuard(ctx, next) {
    const req = ctx.request
    // Re-entry: on a 2025-11-25 session the SDK answers an input-required result by asking the
    // client, then runs the call again on the same request. Each round gets its own line.
    if (req.audited) {
      req.audited = false
      req.round = (req.round ?? 1) + 1
    }
    req.method = 'tools/call'
    req.tool = ctx.name
    // Earlier stages' fields (the credential, a fail-open limiter) stay on the line.
    const previous = req.outcome.extra
    const carried =
      previous === undefined || req.round === undefined ? previous : { ...Object.fromEntries(Object.entries(previous).filter(([k]) => CARRIED.has(k))), round: req.round }
    req.outcome = { event: 'tool.call', decision: 'allow', reason: 'OK', ...(carried === undefined ? {} : { extra: carried }) }
    let result: ToolOutput | undefined
    let failure: SecurityError | undefined
    try {
      result = await next()
    } catch (error) {
      failure = toSecurityError(error)
    }
    if (failure !== undefined) req.outcome = failureOutcome(req.outcome, CALL_EVENTS[failure.code] ?? 'tool.call', failure)
    audit.recordRequest(req)
    // An asynchronous sink: the call is answered only once its line is stored (fails closed).
    await audit.flush()
    if (failure !== undefined) throw failure
    if (result === undefined) throw new SecurityError('ERR_INTERNAL', 'tool produced no result')
    return result
  }
}

/**
 * May this principal call this tool at all (some allow rule covers it, no unconditional deny)?
 * Runs before validation, so a caller who may not use a tool learns nothing about its schema.
 * Does not check: arguments (the argument stage does, after validation).
 */
function authorizeCall(current: () => CompiledPolicy, scopes: ScopeRules): CallGuard {
  return async function authorizeCallGuard(ctx, next) {
    const principal = ctx.request.principal
    if (principal === undefined) throw new SecurityError('ERR_AUTH_MISSING', 'tools/call reached the call pipeline unauthenticated')
    const policy = policyOf(ctx.request, current)
    const decision = policy.reachable(principal, { kind: 'tool', name: ctx.name })
    ctx.request.outcome.extra = { ...ctx.request.outcome.extra, rule: decision.rule, policy: policy.version }
    if (!decision.allow) throw new SecurityError('ERR_FORBIDDEN', `policy ${policy.version} denies ${principal.id} tool ${ctx.name} (${decision.rule})`)
    requireScopes(principal, scopes.required('tool', ctx.name), scopes.implies, `tool ${ctx.name}`)
    return next()
  }
}

/**
 * The full decision on the validated arguments: exactly the object the tool will receive (one
 * parse, one value). The audit line gets the deciding rule, the policy version and the arguments
 * (redacted), enough to replay the decision against another policy.
 * Does not check: anything the rules do not say.
 */
function authorizeArgs(current: () => CompiledPolicy): CallGuard {
  return async function authorizeArgsGuard(ctx, next) {
    const principal = ctx.request.principal
    if (principal === undefined) throw new SecurityError('ERR_AUTH_MISSING', 'argument policy reached unauthenticated')
    const policy = policyOf(ctx.request, current)
    const decision = policy.decide(principal, { kind: 'tool', name: ctx.name }, ctx.args)
    ctx.decision = decision
    ctx.request.outcome.extra = { ...ctx.request.outcome.extra, ...auditArgs(ctx.args), rule: decision.rule, policy: policy.version, authz: decision.allow ? 'allow' : 'deny' }
    if (!decision.allow) {
      const why = decision.error === undefined ? '' : `: condition failed to evaluate (${decision.error})`
      throw new SecurityError('ERR_FORBIDDEN', `policy ${policy.version} denies ${principal.id} tool ${ctx.name} with these arguments (${decision.rule})${why}`)
    }
    return next()
  }
}

/**
 * Validate arguments against the tool's schema (compiled once at registration). The parsed value
 * replaces the raw one; nothing downstream reads `rawArgs`. Refusals are in-band tool errors
 * (MCP: input validation errors are tool execution errors) and are audited as denials.
 */
function validateCall(): CallGuard {
  return async function validateCallGuard(ctx, next) {
    const tool = ctx.tool
    if (tool === undefined) throw new SecurityError('ERR_INTERNAL', 'validate stage without a tool')
    const parsed = tool.definition.input.safeParse(ctx.rawArgs ?? {})
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue === undefined || issue.path.length === 0 ? 'arguments' : issue.path.map(String).join('.')
      // zod's messages describe the schema, never echo the value; still, cap the length.
      const what = (issue?.message ?? 'invalid').slice(0, 200)
      const error = new SecurityError('ERR_VALIDATION', `invalid arguments for ${ctx.name}: ${where}: ${what}`, { expose: `${where}: ${what}` })
      ctx.request.outcome = failureOutcome(ctx.request.outcome, 'validation.failed', error)
      return toolErrorResult(error, ctx.request.requestId)
    }
    ctx.args = parsed.data
    return next()
  }
}

/**
 * Rate limits for transports that did not charge the request at their edge (stdio): the same
 * buckets, refused with a JSON-RPC error carrying `data.retryAfterMs`.
 */
function limitCall(limits: RateLimitDeps): CallGuard {
  return async function limitCallGuard(ctx, next) {
    const principal = ctx.request.principal
    if (ctx.request.limited || principal === undefined) return next()
    await charge(limits, ctx.request, limits.plan.forRequest(principal, ctx.name))
    ctx.request.limited = true
    return next()
  }
}

/** Look the tool up: an unknown tool is a not-found protocol error. */
function resolveTool(registry: ToolRegistry): CallGuard {
  return async function resolveToolGuard(ctx, next) {
    ctx.tool = registry.get(ctx.name)
    if (ctx.tool === undefined) throw new SecurityError('ERR_TOOL_NOT_FOUND', `no tool named ${JSON.stringify(ctx.name.slice(0, 128))}`)
    return next()
  }
}

/**
 * The call pipeline, in fixed order: audit → resolve → rate limit → authorize (tool) → validate →
 * authorize (arguments) → run (concurrency caps, timeout, cancellation, output cap, isolation).
 * Authorization by name runs before validation so that a caller who may not use a tool learns
 * nothing about its schema; argument-level policy (a later layer) runs after validation.
 */
export function createCallPipeline(deps: CallDeps): (ctx: CallContext) => Promise<ToolOutput> {
  const run = executeTool({ plan: deps.limits.plan, caps: deps.caps, metrics: deps.limits.metrics, toolError: toolErrorResult, piiMode: deps.piiMode })
  return compose<CallContext, ToolOutput>(
    [auditCall(deps.audit), resolveTool(deps.registry), limitCall(deps.limits), authorizeCall(deps.policy, deps.scopes), validateCall(), authorizeArgs(deps.policy)],
    run,
  )
}
