import type { HttpGuard } from '../transport/http/context.js'
import { type ApiKeyAuthenticator, credentialFromHeaders } from './authenticate.js'

/**
 * Authenticate every request to `/mcp` from its own credential: a session id never stands in
 * for one. Does not check: what the principal may do (policy does), session ownership (the
 * session stage does).
 */
export function authenticateGuard(authenticator: ApiKeyAuthenticator): HttpGuard {
  return async function authenticateGuardStage(ctx, next) {
    const { token, source } = credentialFromHeaders(ctx.request.headers)
    ctx.principal = authenticator.verify(token)
    ctx.outcome = { event: 'auth.success', decision: 'allow', reason: 'OK', extra: { ...ctx.outcome.extra, credential: source } }
    return next()
  }
}
