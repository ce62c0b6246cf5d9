import type { AuthInfo, McpHttpHandler } from '@modelcontextprotocol/server'
import { isLegacyRequest } from '@modelcontextprotocol/server'
import { SecurityError } from '../../errors.js'
import type { RequestContext } from '../../pipeline/context.js'
import type { HttpContext, HttpGuard } from './context.js'
import type { LegacySessions } from './sessions.js'

/** Key under `authInfo.extra` carrying the edge's request context to the SDK handlers. */
export const CONTEXT_KEY = 'bastion.request'

/** The request context an SDK handler was called for; fails closed if it is missing. */
export function contextFromAuthInfo(authInfo: AuthInfo | undefined): RequestContext {
  const ctx = authInfo?.extra?.[CONTEXT_KEY]
  if (ctx === undefined || ctx === null || typeof ctx !== 'object') throw new SecurityError('ERR_INTERNAL', 'SDK handler called without the edge request context')
  return ctx as RequestContext
}

/**
 * Which protocol era a request belongs to, decided by the SDK's own classifier so that bastion and
 * the SDK can never disagree. GET and DELETE are 2025-11-25 session operations.
 * Does not check: anything; it labels the request for later stages and the audit line.
 */
export function eraGuard(): HttpGuard {
  return async function eraGuardStage(ctx, next) {
    const legacy = ctx.request.method !== 'POST' || (await isLegacyRequest(ctx.request, ctx.body))
    ctx.era = legacy ? 'legacy' : 'modern'
    return next()
  }
}

/**
 * The terminal stage: hand the authenticated, parsed request to the SDK. 2026-07-28 traffic goes
 * to the stateless per-request handler; 2025-era traffic to the principal's own session.
 */
export function dispatch(modern: McpHttpHandler, sessions: LegacySessions): (ctx: HttpContext) => Promise<Response> {
  return async function dispatchTerminal(ctx) {
    const principal = ctx.principal
    if (principal === undefined) throw new SecurityError('ERR_INTERNAL', 'dispatch reached unauthenticated')
    // The SDK's AuthInfo wants a token; handlers never need the credential, so it never gets one.
    const authInfo: AuthInfo = { token: '[not-forwarded]', clientId: principal.id, scopes: [], extra: { [CONTEXT_KEY]: ctx } }
    if (ctx.era === 'modern') return modern.fetch(ctx.request, { authInfo, parsedBody: ctx.body })
    return sessions.handle(ctx.request, ctx.body, principal, authInfo, (id) => {
      ctx.sessionId = id
    })
  }
}
