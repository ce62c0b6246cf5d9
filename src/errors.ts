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
  | 'ERR_HEADER_INVALID'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_JSON_TOO_DEEP'
  | 'ERR_PARSE'
  | 'ERR_INVALID_REQUEST'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'ERR_NOT_ACCEPTABLE'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_NOT_FOUND'
  | 'ERR_METHOD_NOT_FOUND'
  | 'ERR_INVALID_PARAMS'
  | 'ERR_HEADER_MISMATCH'
  | 'ERR_CAPABILITY_MISSING'
  | 'ERR_UNSUPPORTED_VERSION'
  | 'ERR_TOOL_NOT_FOUND'
  | 'ERR_RESOURCE_NOT_FOUND'
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
  | 'ERR_UPSTREAM_UNAVAILABLE'
  | 'ERR_TOOL_BLOCKED'

/**
 * How a refusal travels:
 * - `http`: decided before the MCP SDK runs; over HTTP the status line carries it (with a JSON-RPC
 *   error body), over stdio a JSON-RPC error;
 * - `rpc`: a JSON-RPC error inside a 200 answer (the protocol's own errors);
 * - `tool`: an in-band tool result with `isError: true`, so the model can correct itself (MCP:
 *   tool execution errors are reported in the result, not as protocol errors).
 */
export type Carrier = 'http' | 'rpc' | 'tool'

/** The `WWW-Authenticate` challenge a refusal carries (RFC 6750 §3). */
export type Challenge = 'bearer' | 'invalid_token' | 'insufficient_scope'

export interface WireError {
  /** HTTP status when the refusal is answered over HTTP before dispatch (`carrier: http`). */
  readonly http: number
  /**
   * JSON-RPC error code: the JSON-RPC 2.0 codes and MCP's -32020…-32022 with exactly their meaning;
   * bastion's own codes lie outside the reserved range -32768…-32000 (MCP 2026-07-28, Error Codes),
   * in -31xxx where xxx mirrors the HTTP status: -31401, -31403, -31404, -31413, -31429, -31503.
   */
  readonly rpc: number
  /** Public text: the only message a client ever sees. */
  readonly text: string
  /** The audit event of a request refused with this code. */
  readonly event: string
  /** `deny`: the caller was refused; `error`: bastion (or a dependency) failed. */
  readonly outcome: 'deny' | 'error'
  readonly carrier: Carrier
  readonly challenge?: Challenge
}

type Row = Omit<WireError, 'outcome' | 'carrier'> & { outcome?: 'error'; carrier?: Carrier }

// -31xxx: bastion's own codes (outside JSON-RPC's reserved range); xxx mirrors the HTTP status.
const AUTH = -31401
const FORBIDDEN = -31403
const NOT_FOUND = -31404
const TOO_LARGE = -31413
const LIMITED = -31429
const UNAVAILABLE = -31503

const AUTH_FAILURE = 'auth.failure'
const DENIED = 'authz.denied'
const LIMIT = 'limit.exceeded'
const REJECTED = 'request.rejected'
const TOOL = 'tool.call'

const ROWS: { readonly [C in SecurityErrorCode]: Row } = {
  ERR_AUTH_MISSING: {
    http: 401,
    rpc: AUTH,
    text: 'authentication required: send "Authorization: Bearer KEY" (an API key or a token) or "X-API-Key: KEY"',
    event: AUTH_FAILURE,
    challenge: 'bearer',
  },
  ERR_AUTH_INVALID: { http: 401, rpc: AUTH, text: 'invalid credentials', event: AUTH_FAILURE, challenge: 'invalid_token' },
  ERR_AUTH_EXPIRED: { http: 401, rpc: AUTH, text: 'invalid credentials', event: AUTH_FAILURE, challenge: 'invalid_token' },
  ERR_AUTH_REVOKED: { http: 401, rpc: AUTH, text: 'invalid credentials', event: AUTH_FAILURE, challenge: 'invalid_token' },
  ERR_AUTH_UNAVAILABLE: { http: 503, rpc: UNAVAILABLE, text: 'authentication unavailable', event: AUTH_FAILURE, outcome: 'error' },
  ERR_AUTH_BLOCKED: { http: 429, rpc: LIMITED, text: 'too many failed authentications', event: 'auth.blocked' },
  ERR_TOKEN_IN_QUERY: { http: 400, rpc: -32600, text: 'credentials are not accepted in the URL', event: AUTH_FAILURE },
  ERR_FORBIDDEN: { http: 403, rpc: FORBIDDEN, text: 'forbidden', event: DENIED },
  ERR_INSUFFICIENT_SCOPE: { http: 403, rpc: FORBIDDEN, text: 'insufficient scope', event: DENIED, challenge: 'insufficient_scope' },
  ERR_SESSION_FORBIDDEN: { http: 403, rpc: FORBIDDEN, text: 'session belongs to another principal', event: DENIED },
  ERR_SESSION_NOT_FOUND: { http: 404, rpc: NOT_FOUND, text: 'session not found', event: REJECTED },
  ERR_SESSION_REQUIRED: { http: 400, rpc: -32600, text: 'session id required', event: REJECTED },
  ERR_SESSION_LIMIT: { http: 429, rpc: LIMITED, text: 'too many sessions', event: LIMIT },
  ERR_ORIGIN_FORBIDDEN: { http: 403, rpc: FORBIDDEN, text: 'origin not allowed', event: 'origin.rejected' },
  ERR_HOST_FORBIDDEN: { http: 403, rpc: FORBIDDEN, text: 'host not allowed', event: 'origin.rejected' },
  ERR_HEADER_INVALID: { http: 400, rpc: -32600, text: 'malformed or repeated header', event: REJECTED },
  ERR_BODY_TOO_LARGE: { http: 413, rpc: -32600, text: 'request body too large', event: LIMIT },
  ERR_JSON_TOO_DEEP: { http: 400, rpc: -32600, text: 'request nested too deeply', event: LIMIT },
  ERR_PARSE: { http: 400, rpc: -32700, text: 'parse error', event: REJECTED },
  ERR_INVALID_REQUEST: { http: 400, rpc: -32600, text: 'invalid request', event: REJECTED },
  ERR_UNSUPPORTED_MEDIA_TYPE: { http: 415, rpc: -32600, text: 'content-type must be application/json', event: REJECTED },
  ERR_NOT_ACCEPTABLE: { http: 406, rpc: -32600, text: 'accept must include application/json and text/event-stream', event: REJECTED },
  ERR_METHOD_NOT_ALLOWED: { http: 405, rpc: -32600, text: 'method not allowed', event: REJECTED },
  ERR_NOT_FOUND: { http: 404, rpc: -32601, text: 'not found', event: REJECTED },
  ERR_METHOD_NOT_FOUND: { http: 404, rpc: -32601, text: 'method not found', event: REJECTED },
  ERR_INVALID_PARAMS: { http: 400, rpc: -32602, text: 'invalid params', event: REJECTED },
  ERR_HEADER_MISMATCH: { http: 400, rpc: -32020, text: 'request headers and body disagree', event: REJECTED },
  ERR_CAPABILITY_MISSING: { http: 400, rpc: -32021, text: 'a required client capability is missing', event: REJECTED },
  ERR_UNSUPPORTED_VERSION: { http: 400, rpc: -32022, text: 'unsupported protocol version', event: REJECTED },
  ERR_TOOL_NOT_FOUND: { http: 200, rpc: -32602, text: 'unknown tool', event: 'tool.unknown', carrier: 'rpc' },
  ERR_RESOURCE_NOT_FOUND: { http: 200, rpc: -32602, text: 'resource not found', event: REJECTED, carrier: 'rpc' },
  ERR_CANCELLED: { http: 200, rpc: -32800, text: 'request cancelled', event: 'tool.cancelled', carrier: 'rpc' },
  ERR_VALIDATION: { http: 200, rpc: -32602, text: 'invalid arguments', event: 'validation.failed', carrier: 'tool' },
  ERR_PATH_FORBIDDEN: { http: 200, rpc: FORBIDDEN, text: 'path refused', event: TOOL, carrier: 'tool' },
  ERR_FILE_NOT_FOUND: { http: 200, rpc: NOT_FOUND, text: 'file not found', event: TOOL, carrier: 'tool' },
  ERR_FILE_TOO_LARGE: { http: 200, rpc: TOO_LARGE, text: 'file too large', event: TOOL, carrier: 'tool' },
  ERR_TOOL_FAILED: { http: 200, rpc: -32603, text: 'tool failed', event: TOOL, carrier: 'tool', outcome: 'error' },
  ERR_TOOL_TIMEOUT: { http: 200, rpc: -32603, text: 'tool timed out', event: TOOL, carrier: 'tool' },
  ERR_OUTPUT_TOO_LARGE: { http: 200, rpc: TOO_LARGE, text: 'tool output too large', event: TOOL, carrier: 'tool' },
  ERR_TOOL_RESOURCE_LIMIT: { http: 200, rpc: -32603, text: 'tool exceeded its resource limits', event: TOOL, carrier: 'tool' },
  ERR_PII_BLOCKED: { http: 200, rpc: FORBIDDEN, text: 'result withheld: it contains personal data', event: TOOL, carrier: 'tool' },
  ERR_DATABASE: { http: 200, rpc: -32603, text: 'database error', event: TOOL, carrier: 'tool', outcome: 'error' },
  ERR_CONFIRMATION_REQUIRED: {
    http: 200,
    rpc: FORBIDDEN,
    text: "this operation needs the user's confirmation, and this client cannot ask for it",
    event: TOOL,
    carrier: 'tool',
  },
  ERR_CONFIRMATION_INVALID: {
    http: 200,
    rpc: FORBIDDEN,
    text: 'confirmation refused: it is invalid, expired, already used or for another call',
    event: TOOL,
    carrier: 'tool',
  },
  ERR_DECLINED: { http: 200, rpc: FORBIDDEN, text: 'not done: the user did not confirm', event: TOOL, carrier: 'tool' },
  ERR_UPSTREAM_UNAVAILABLE: { http: 200, rpc: UNAVAILABLE, text: 'the server behind this tool is unavailable; try again later', event: TOOL, carrier: 'tool', outcome: 'error' },
  ERR_TOOL_BLOCKED: {
    http: 200,
    rpc: FORBIDDEN,
    text: 'tool blocked: its definition changed since it was approved; an operator must review and re-pin it',
    event: 'tool.blocked',
    carrier: 'tool',
  },
  ERR_RATE_LIMITED: { http: 429, rpc: LIMITED, text: 'rate limit exceeded', event: LIMIT },
  ERR_CONCURRENCY_LIMIT: { http: 429, rpc: LIMITED, text: 'too many calls in progress', event: LIMIT },
  ERR_LIMITS_UNAVAILABLE: { http: 503, rpc: UNAVAILABLE, text: 'service unavailable', event: 'error', outcome: 'error' },
  ERR_AUDIT_UNAVAILABLE: { http: 503, rpc: UNAVAILABLE, text: 'service unavailable', event: 'error', outcome: 'error' },
  ERR_INTERNAL: { http: 500, rpc: -32603, text: 'internal error', event: 'error', outcome: 'error' },
}

/**
 * The one wire table: every column a renderer or the audit trail needs, per code. Exhaustive: a new
 * code without a row does not compile. test/errors.test.ts pins every row.
 */
export const WIRE: { readonly [C in SecurityErrorCode]: WireError } = Object.freeze(
  Object.fromEntries(Object.entries(ROWS).map(([code, row]) => [code, Object.freeze({ ...row, outcome: row.outcome ?? 'deny', carrier: row.carrier ?? 'http' })])) as {
    [C in SecurityErrorCode]: WireError
  },
)

/** Is this string one of bastion's codes (for values read back off the wire)? */
export function isSecurityErrorCode(value: unknown): value is SecurityErrorCode {
  return typeof value === 'string' && Object.hasOwn(WIRE, value)
}

export class SecurityError extends Error {
  override readonly name = 'SecurityError'
  /** A short, client-safe detail authored by bastion (never input, never a host path). */
  readonly expose: string | undefined
  /** For refusals a client may retry: when (ms). Goes on the wire as `Retry-After` and `data.retryAfterMs`. */
  readonly retryAfterMs: number | undefined
  /** Client-safe `error.data` members the specification defines for this error (the supported versions of -32022, …). */
  readonly data: Readonly<Record<string, unknown>> | undefined
  /** `message` goes to the audit log, never to the client. */
  constructor(
    readonly code: SecurityErrorCode,
    message: string,
    options?: { cause?: unknown; expose?: string; retryAfterMs?: number; data?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.expose = options?.expose
    this.retryAfterMs = options?.retryAfterMs
    this.data = options?.data
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
  const ours = error.retryAfterMs === undefined ? { code: error.code, requestId } : { code: error.code, requestId, retryAfterMs: error.retryAfterMs }
  // The specification's members first: they can add to `data`, never replace the code or the id.
  const data = error.data === undefined ? ours : { ...error.data, ...ours }
  return { code: wire.rpc, message: publicText(error), data }
}

/** The public text: the table's text plus the error's client-safe detail, if any. */
export function publicText(error: SecurityError): string {
  const wire = WIRE[error.code]
  return error.expose === undefined ? wire.text : `${wire.text}: ${error.expose}`
}
