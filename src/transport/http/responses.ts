import { rpcError, type SecurityError, type SecurityErrorCode, WIRE } from '../../errors.js'
import { type HttpContext, rpcIdOf } from './context.js'

const CHALLENGE = 'Bearer realm="mcp-bastion"'

function challengeFor(code: SecurityErrorCode): string | undefined {
  if (code === 'ERR_AUTH_MISSING') return CHALLENGE
  // RFC 6750 §3.1: invalid_token for malformed, unknown, revoked or expired credentials.
  if (code === 'ERR_AUTH_INVALID' || code === 'ERR_AUTH_EXPIRED' || code === 'ERR_AUTH_REVOKED') return `${CHALLENGE}, error="invalid_token"`
  return undefined
}

/** The one HTTP error shape: status from the wire table, a JSON-RPC error body with the request id. */
export function errorResponse(ctx: HttpContext, error: SecurityError): Response {
  const wire = WIRE[error.code]
  const headers = new Headers({ 'content-type': 'application/json', 'cache-control': 'no-store' })
  const challenge = challengeFor(error.code)
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
