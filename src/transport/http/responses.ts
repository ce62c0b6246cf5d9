import { bearerChallenge, ScopeError } from '../../auth/resource-metadata.js'
import { rpcError, type SecurityError, WIRE } from '../../errors.js'
import { type HttpContext, rpcIdOf } from './context.js'

const CHALLENGE = 'Bearer realm="mcp-bastion"'
const INVALID = new Set(['ERR_AUTH_INVALID', 'ERR_AUTH_EXPIRED', 'ERR_AUTH_REVOKED'])

/**
 * RFC 6750 §3: a challenge on every 401, `invalid_token` when a credential was refused, and
 * `insufficient_scope` on a scope 403. With tokens enabled the challenge names the Protected
 * Resource Metadata and the scopes (MCP authorization spec, RFC 9728 §5.1).
 */
function challengeFor(ctx: HttpContext, error: SecurityError): string | undefined {
  const rs = ctx.resourceServer
  const invalid = INVALID.has(error.code)
  if (error.code === 'ERR_INSUFFICIENT_SCOPE' && error instanceof ScopeError && rs !== undefined) return bearerChallenge(rs, 'insufficient_scope', error.needed)
  if (error.code !== 'ERR_AUTH_MISSING' && !invalid) return undefined
  if (rs !== undefined) return bearerChallenge(rs, invalid ? 'invalid_token' : undefined, rs.scopesSupported)
  return invalid ? `${CHALLENGE}, error="invalid_token"` : CHALLENGE
}

/** The one HTTP error shape: status from the wire table, a JSON-RPC error body with the request id. */
export function errorResponse(ctx: HttpContext, error: SecurityError): Response {
  const wire = WIRE[error.code]
  const headers = new Headers({ 'content-type': 'application/json', 'cache-control': 'no-store' })
  const challenge = challengeFor(ctx, error)
  if (challenge !== undefined) headers.set('www-authenticate', challenge)
  if (error.code === 'ERR_BODY_TOO_LARGE') headers.set('connection', 'close')
  if (error.code === 'ERR_SESSION_LIMIT') headers.set('retry-after', '30')
  // RFC 9110 §10.2.3: whole seconds, rounded up so a client that obeys is never early.
  if (error.retryAfterMs !== undefined) headers.set('retry-after', String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))))
  const body = { jsonrpc: '2.0', id: rpcIdOf(ctx.body), error: rpcError(error, ctx.requestId) }
  return new Response(JSON.stringify(body), { status: wire.http, headers })
}

/** Add the request id (and any stage's headers) to an outgoing response. */
export function finalizeResponse(ctx: HttpContext, response: Response): Response {
  ctx.responseHeaders.set('x-request-id', ctx.requestId)
  try {
    for (const [name, value] of ctx.responseHeaders) response.headers.set(name, value)
    return response
  } catch {
    // Immutable headers (a Response from fetch): copy once.
    const headers = new Headers(response.headers)
    for (const [name, value] of ctx.responseHeaders) headers.set(name, value)
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers })
  }
}
