import { SecurityError } from '../errors.js'
import type { ToolRegistry } from '../tools/registry.js'
import type { HttpGuard } from '../transport/http/context.js'
import { decideTool, type RbacPolicy } from './rbac.js'

/**
 * Early RBAC for `tools/call` over HTTP, so a denied call to an existing tool is answered with
 * HTTP 403 (a client can step up) before any SDK code runs. The call pipeline checks again; this
 * stage exists for the status code, not as the only check.
 * Does not check: unknown tools (the call pipeline answers not-found), arguments.
 */
export function toolGateGuard(registry: ToolRegistry, rbac: () => RbacPolicy): HttpGuard {
  return async function toolGateGuardStage(ctx, next) {
    if (ctx.method !== 'tools/call' || ctx.principal === undefined) return next()
    const params = (ctx.body as { params?: unknown }).params
    const name = params !== null && typeof params === 'object' ? (params as { name?: unknown }).name : undefined
    if (typeof name !== 'string' || registry.get(name) === undefined) return next()
    ctx.tool = name
    const decision = decideTool(rbac(), ctx.principal, name)
    ctx.outcome.extra = { ...ctx.outcome.extra, rule: decision.rule }
    if (!decision.allow) throw new SecurityError('ERR_FORBIDDEN', `no role of ${ctx.principal.id} grants tool ${name} (${decision.rule})`)
    return next()
  }
}
