import { requireScopes, type ScopeRules } from '../auth/resource-metadata.js'
import { SecurityError } from '../errors.js'
import { policyOf } from '../pipeline/context.js'
import type { ToolRegistry } from '../tools/registry.js'
import { type HttpGuard, rpcToolOf } from '../transport/http/context.js'
import type { CompiledPolicy } from './engine.js'

/**
 * Early policy check for `tools/call` over HTTP, so a call to an existing tool the caller may not
 * use at all is answered with HTTP 403 (a client can step up) before any SDK code runs. The call
 * pipeline checks again, with the arguments; this stage exists for the status code, not as the
 * only check.
 * Also checks the scopes a token needs for the tool (MCP authorization spec: 403 with
 * `error="insufficient_scope"`).
 * Does not check: unknown tools (the call pipeline answers not-found), arguments (they are not
 * validated yet: argument rules are decided in the call pipeline).
 */
export function toolGateGuard(registry: ToolRegistry, current: () => CompiledPolicy, scopes: ScopeRules): HttpGuard {
  return async function toolGateGuardStage(ctx, next) {
    const name = rpcToolOf(ctx.body)
    if (ctx.principal === undefined || name === undefined || registry.get(name) === undefined) return next()
    ctx.tool = name
    const policy = policyOf(ctx, current)
    const decision = policy.reachable(ctx.principal, { kind: 'tool', name })
    ctx.outcome.extra = { ...ctx.outcome.extra, rule: decision.rule, policy: policy.version }
    if (!decision.allow) throw new SecurityError('ERR_FORBIDDEN', `policy ${policy.version} denies ${ctx.principal.id} tool ${name} (${decision.rule})`)
    // A token without the tool's scopes: 403 insufficient_scope naming every scope needed.
    requireScopes(ctx.principal, scopes.required('tool', name), scopes.implies, `tool ${name}`)
    return next()
  }
}
