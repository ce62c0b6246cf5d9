/**
 * One error class for every refusal, with stable codes and one wire table.
 * Codes are added, never renamed: operators alert on them.
 */

export type SecurityErrorCode =
  | 'ERR_AUTH_MISSING'
  | 'ERR_AUTH_INVALID'
  | 'ERR_AUTH_EXPIRED'
  | 'ERR_AUTH_REVOKED'
  | 'ERR_FORBIDDEN'
  | 'ERR_SESSION_FORBIDDEN'
  | 'ERR_SESSION_NOT_FOUND'
  | 'ERR_SESSION_REQUIRED'
  | 'ERR_SESSION_LIMIT'
  | 'ERR_ORIGIN_FORBIDDEN'
  | 'ERR_HOST_FORBIDDEN'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_JSON_TOO_DEEP'
  | 'ERR_PARSE'
  | 'ERR_INVALID_REQUEST'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'ERR_NOT_ACCEPTABLE'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_NOT_FOUND'
  | 'ERR_TOOL_NOT_FOUND'
  | 'ERR_VALIDATION'
  | 'ERR_PATH_FORBIDDEN'
  | 'ERR_FILE_NOT_FOUND'
  | 'ERR_FILE_TOO_LARGE'
  | 'ERR_AUDIT_UNAVAILABLE'
  | 'ERR_TOOL_FAILED'
  | 'ERR_INTERNAL'
  | 'ERR_RATE_LIMITED'
  | 'ERR_CONCURRENCY_LIMIT'
  | 'ERR_LIMITS_UNAVAILABLE'
  | 'ERR_TOOL_TIMEOUT'
  | 'ERR_CANCELLED'
  | 'ERR_OUTPUT_TOO_LARGE'
  | 'ERR_TOOL_RESOURCE_LIMIT'
  | 'ERR_AUTH_UNAVAILABLE'
  | 'ERR_INSUFFICIENT_SCOPE'
  | 'ERR_AUTH_BLOCKED'
  | 'ERR_TOKEN_IN_QUERY'
  | 'ERR_PII_BLOCKED'
  | 'ERR_DATABASE'
  | 'ERR_CONFIRMATION_REQUIRED'
  | 'ERR_CONFIRMATION_INVALID'
  | 'ERR_DECLINED'

export interface WireError {
  /** HTTP status where the protocol lets us choose one. */
  readonly http: number
  /** JSON-RPC error code. */
  readonly rpc: number
  /** Public text: the only message a client ever sees. */
  readonly text: string
}

// Exhaustive: a new code without a row does not compile. test/errors.test.ts pins every row.
export const WIRE: { readonly [C in SecurityErrorCode]: WireError } = {
  ERR_AUTH_MISSING: { http: 401, rpc: -32001, text: 'authentication required' },
  ERR_AUTH_INVALID: { http: 401, rpc: -32001, text: 'invalid credentials' },
  ERR_AUTH_EXPIRED: { http: 401, rpc: -32001, text: 'invalid credentials' },
  ERR_AUTH_REVOKED: { http: 401, rpc: -32001, text: 'invalid credentials' },
  ERR_FORBIDDEN: { http: 403, rpc: -32003, text: 'forbidden' },
  ERR_SESSION_FORBIDDEN: { http: 403, rpc: -32003, text: 'session belongs to another principal' },
  ERR_SESSION_NOT_FOUND: { http: 404, rpc: -32001, text: 'session not found' },
  ERR_SESSION_REQUIRED: { http: 400, rpc: -32600, text: 'session id required' },
  ERR_SESSION_LIMIT: { http: 429, rpc: -32029, text: 'too many sessions' },
  ERR_ORIGIN_FORBIDDEN: { http: 403, rpc: -32003, text: 'origin not allowed' },
  ERR_HOST_FORBIDDEN: { http: 403, rpc: -32003, text: 'host not allowed' },
  ERR_BODY_TOO_LARGE: { http: 413, rpc: -32600, text: 'request body too large' },
  ERR_JSON_TOO_DEEP: { http: 400, rpc: -32600, text: 'request nested too deeply' },
  ERR_PARSE: { http: 400, rpc: -32700, text: 'parse error' },
  ERR_INVALID_REQUEST: { http: 400, rpc: -32600, text: 'invalid request' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { http: 415, rpc: -32600, text: 'content-type must be application/json' },
  ERR_NOT_ACCEPTABLE: { http: 406, rpc: -32600, text: 'accept must include application/json and text/event-stream' },
  ERR_METHOD_NOT_ALLOWED: { http: 405, rpc: -32600, text: 'method not allowed' },
  ERR_NOT_FOUND: { http: 404, rpc: -32601, text: 'not found' },
  ERR_TOOL_NOT_FOUND: { http: 200, rpc: -32602, text: 'unknown tool' },
  ERR_VALIDATION: { http: 200, rpc: -32602, text: 'invalid arguments' },
  ERR_PATH_FORBIDDEN: { http: 200, rpc: -32003, text: 'path refused' },
  ERR_FILE_NOT_FOUND: { http: 200, rpc: -32002, text: 'file not found' },
  ERR_FILE_TOO_LARGE: { http: 200, rpc: -32600, text: 'file too large' },
  ERR_AUDIT_UNAVAILABLE: { http: 503, rpc: -32603, text: 'service unavailable' },
  ERR_TOOL_FAILED: { http: 200, rpc: -32603, text: 'tool failed' },
  ERR_INTERNAL: { http: 500, rpc: -32603, text: 'internal error' },
  ERR_RATE_LIMITED: { http: 429, rpc: -32029, text: 'rate limit exceeded' },
  ERR_CONCURRENCY_LIMIT: { http: 429, rpc: -32029, text: 'too many calls in progress' },
  ERR_LIMITS_UNAVAILABLE: { http: 503, rpc: -32603, text: 'service unavailable' },
  ERR_TOOL_TIMEOUT: { http: 200, rpc: -32603, text: 'tool timed out' },
  ERR_CANCELLED: { http: 200, rpc: -32800, text: 'request cancelled' },
  ERR_OUTPUT_TOO_LARGE: { http: 200, rpc: -32603, text: 'tool output too large' },
  ERR_TOOL_RESOURCE_LIMIT: { http: 200, rpc: -32603, text: 'tool exceeded its resource limits' },
  ERR_AUTH_UNAVAILABLE: { http: 503, rpc: -32001, text: 'authentication unavailable' },
  ERR_INSUFFICIENT_SCOPE: { http: 403, rpc: -32003, text: 'insufficient scope' },
  ERR_AUTH_BLOCKED: { http: 429, rpc: -32029, text: 'too many failed authentications' },
  ERR_TOKEN_IN_QUERY: { http: 400, rpc: -32600, text: 'credentials are not accepted in the URL' },
  ERR_PII_BLOCKED: { http: 200, rpc: -32003, text: 'result withheld: it contains personal data' },
  ERR_DATABASE: { http: 200, rpc: -32603, text: 'database error' },
  ERR_CONFIRMATION_REQUIRED: { http: 200, rpc: -32003, text: "this operation needs the user's confirmation, and this client cannot ask for it" },
  ERR_CONFIRMATION_INVALID: { http: 200, rpc: -32003, text: 'confirmation refused: it is invalid, expired, already used or for another call' },
  ERR_DECLINED: { http: 200, rpc: -32003, text: 'not done: the user did not confirm' },
}

export class SecurityError extends Error {
  override readonly name = 'SecurityError'
  /** A short, client-safe detail authored by bastion (never input, never a host path). */
  readonly expose: string | undefined
  /** For refusals a client may retry: when (ms). Goes on the wire as `Retry-After` and `data.retryAfterMs`. */
  readonly retryAfterMs: number | undefined
  /** `message` goes to the audit log, never to the client. */
  constructor(
    readonly code: SecurityErrorCode,
    message: string,
    options?: { cause?: unknown; expose?: string; retryAfterMs?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.expose = options?.expose
    this.retryAfterMs = options?.retryAfterMs
  }
}

/** Any thrown value becomes a SecurityError; unknown throws are `ERR_INTERNAL`, never a pass. */
export function toSecurityError(error: unknown): SecurityError {
  if (error instanceof SecurityError) return error
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : 'non-error thrown'
  return new SecurityError('ERR_INTERNAL', detail, { cause: error })
}

/** The JSON-RPC `error` object a client sees: stable code, public text, request id. */
export function rpcError(error: SecurityError, requestId: string): { code: number; message: string; data: { code: SecurityErrorCode; requestId: string; retryAfterMs?: number } } {
  const wire = WIRE[error.code]
  const data = error.retryAfterMs === undefined ? { code: error.code, requestId } : { code: error.code, requestId, retryAfterMs: error.retryAfterMs }
  return { code: wire.rpc, message: publicText(error), data }
}

/** The public text: the table's text plus the error's client-safe detail, if any. */
export function publicText(error: SecurityError): string {
  const wire = WIRE[error.code]
  return error.expose === undefined ? wire.text : `${wire.text}: ${error.expose}`
}
