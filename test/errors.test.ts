import { describe, expect, it } from 'vitest'
import { publicText, rpcError, SecurityError, type SecurityErrorCode, toSecurityError, WIRE, type WireError } from '../src/errors.js'

// Pinned literally: operators alert on these codes and clients branch on these numbers. Changing a
// row must be a deliberate edit here too.
const PINNED: ReadonlyArray<readonly [SecurityErrorCode, WireError]> = [
  [
    'ERR_AUTH_MISSING',
    {
      http: 401,
      rpc: -31401,
      text: 'authentication required: send "Authorization: Bearer KEY" (an API key or a token) or "X-API-Key: KEY"',
      event: 'auth.failure',
      challenge: 'bearer',
      outcome: 'deny',
      carrier: 'http',
    },
  ],
  ['ERR_AUTH_INVALID', { http: 401, rpc: -31401, text: 'invalid credentials', event: 'auth.failure', challenge: 'invalid_token', outcome: 'deny', carrier: 'http' }],
  ['ERR_AUTH_EXPIRED', { http: 401, rpc: -31401, text: 'invalid credentials', event: 'auth.failure', challenge: 'invalid_token', outcome: 'deny', carrier: 'http' }],
  ['ERR_AUTH_REVOKED', { http: 401, rpc: -31401, text: 'invalid credentials', event: 'auth.failure', challenge: 'invalid_token', outcome: 'deny', carrier: 'http' }],
  ['ERR_AUTH_UNAVAILABLE', { http: 503, rpc: -31503, text: 'authentication unavailable', event: 'auth.failure', outcome: 'error', carrier: 'http' }],
  ['ERR_AUTH_BLOCKED', { http: 429, rpc: -31429, text: 'too many failed authentications', event: 'auth.blocked', outcome: 'deny', carrier: 'http' }],
  ['ERR_TOKEN_IN_QUERY', { http: 400, rpc: -32600, text: 'credentials are not accepted in the URL', event: 'auth.failure', outcome: 'deny', carrier: 'http' }],
  ['ERR_FORBIDDEN', { http: 403, rpc: -31403, text: 'forbidden', event: 'authz.denied', outcome: 'deny', carrier: 'http' }],
  ['ERR_INSUFFICIENT_SCOPE', { http: 403, rpc: -31403, text: 'insufficient scope', event: 'authz.denied', challenge: 'insufficient_scope', outcome: 'deny', carrier: 'http' }],
  ['ERR_SESSION_FORBIDDEN', { http: 403, rpc: -31403, text: 'session belongs to another principal', event: 'authz.denied', outcome: 'deny', carrier: 'http' }],
  ['ERR_SESSION_NOT_FOUND', { http: 404, rpc: -31404, text: 'session not found', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_SESSION_REQUIRED', { http: 400, rpc: -32600, text: 'session id required', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_SESSION_LIMIT', { http: 429, rpc: -31429, text: 'too many sessions', event: 'limit.exceeded', outcome: 'deny', carrier: 'http' }],
  ['ERR_ORIGIN_FORBIDDEN', { http: 403, rpc: -31403, text: 'origin not allowed', event: 'origin.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_HOST_FORBIDDEN', { http: 403, rpc: -31403, text: 'host not allowed', event: 'origin.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_HEADER_INVALID', { http: 400, rpc: -32600, text: 'malformed or repeated header', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_BODY_TOO_LARGE', { http: 413, rpc: -32600, text: 'request body too large', event: 'limit.exceeded', outcome: 'deny', carrier: 'http' }],
  ['ERR_JSON_TOO_DEEP', { http: 400, rpc: -32600, text: 'request nested too deeply', event: 'limit.exceeded', outcome: 'deny', carrier: 'http' }],
  ['ERR_PARSE', { http: 400, rpc: -32700, text: 'parse error', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_INVALID_REQUEST', { http: 400, rpc: -32600, text: 'invalid request', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_UNSUPPORTED_MEDIA_TYPE', { http: 415, rpc: -32600, text: 'content-type must be application/json', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  [
    'ERR_NOT_ACCEPTABLE',
    { http: 406, rpc: -32600, text: 'accept must include application/json and text/event-stream', event: 'request.rejected', outcome: 'deny', carrier: 'http' },
  ],
  ['ERR_METHOD_NOT_ALLOWED', { http: 405, rpc: -32600, text: 'method not allowed', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_NOT_FOUND', { http: 404, rpc: -32601, text: 'not found', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_METHOD_NOT_FOUND', { http: 404, rpc: -32601, text: 'method not found', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_INVALID_PARAMS', { http: 400, rpc: -32602, text: 'invalid params', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_HEADER_MISMATCH', { http: 400, rpc: -32020, text: 'request headers and body disagree', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_CAPABILITY_MISSING', { http: 400, rpc: -32021, text: 'a required client capability is missing', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_UNSUPPORTED_VERSION', { http: 400, rpc: -32022, text: 'unsupported protocol version', event: 'request.rejected', outcome: 'deny', carrier: 'http' }],
  ['ERR_TOOL_NOT_FOUND', { http: 200, rpc: -32602, text: 'unknown tool', event: 'tool.unknown', carrier: 'rpc', outcome: 'deny' }],
  ['ERR_RESOURCE_NOT_FOUND', { http: 200, rpc: -32602, text: 'resource not found', event: 'request.rejected', carrier: 'rpc', outcome: 'deny' }],
  ['ERR_CANCELLED', { http: 200, rpc: -32800, text: 'request cancelled', event: 'tool.cancelled', carrier: 'rpc', outcome: 'deny' }],
  ['ERR_VALIDATION', { http: 200, rpc: -32602, text: 'invalid arguments', event: 'validation.failed', carrier: 'tool', outcome: 'deny' }],
  ['ERR_PATH_FORBIDDEN', { http: 200, rpc: -31403, text: 'path refused', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  ['ERR_FILE_NOT_FOUND', { http: 200, rpc: -31404, text: 'file not found', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  ['ERR_FILE_TOO_LARGE', { http: 200, rpc: -31413, text: 'file too large', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  ['ERR_TOOL_FAILED', { http: 200, rpc: -32603, text: 'tool failed', event: 'tool.call', carrier: 'tool', outcome: 'error' }],
  ['ERR_TOOL_TIMEOUT', { http: 200, rpc: -32603, text: 'tool timed out', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  ['ERR_OUTPUT_TOO_LARGE', { http: 200, rpc: -31413, text: 'tool output too large', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  ['ERR_TOOL_RESOURCE_LIMIT', { http: 200, rpc: -32603, text: 'tool exceeded its resource limits', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  ['ERR_PII_BLOCKED', { http: 200, rpc: -31403, text: 'result withheld: it contains personal data', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  [
    'ERR_UPSTREAM_UNAVAILABLE',
    { http: 200, rpc: -31503, text: 'the server behind this tool is unavailable; try again later', event: 'tool.call', carrier: 'tool', outcome: 'error' },
  ],
  [
    'ERR_TOOL_BLOCKED',
    {
      http: 200,
      rpc: -31403,
      text: 'tool blocked: its definition changed since it was approved; an operator must review and re-pin it',
      event: 'tool.blocked',
      carrier: 'tool',
      outcome: 'deny',
    },
  ],
  ['ERR_DATABASE', { http: 200, rpc: -32603, text: 'database error', event: 'tool.call', carrier: 'tool', outcome: 'error' }],
  [
    'ERR_CONFIRMATION_REQUIRED',
    { http: 200, rpc: -31403, text: "this operation needs the user's confirmation, and this client cannot ask for it", event: 'tool.call', carrier: 'tool', outcome: 'deny' },
  ],
  [
    'ERR_CONFIRMATION_INVALID',
    { http: 200, rpc: -31403, text: 'confirmation refused: it is invalid, expired, already used or for another call', event: 'tool.call', carrier: 'tool', outcome: 'deny' },
  ],
  ['ERR_DECLINED', { http: 200, rpc: -31403, text: 'not done: the user did not confirm', event: 'tool.call', carrier: 'tool', outcome: 'deny' }],
  ['ERR_RATE_LIMITED', { http: 429, rpc: -31429, text: 'rate limit exceeded', event: 'limit.exceeded', outcome: 'deny', carrier: 'http' }],
  ['ERR_CONCURRENCY_LIMIT', { http: 429, rpc: -31429, text: 'too many calls in progress', event: 'limit.exceeded', outcome: 'deny', carrier: 'http' }],
  ['ERR_LIMITS_UNAVAILABLE', { http: 503, rpc: -31503, text: 'service unavailable', event: 'error', outcome: 'error', carrier: 'http' }],
  ['ERR_AUDIT_UNAVAILABLE', { http: 503, rpc: -31503, text: 'service unavailable', event: 'error', outcome: 'error', carrier: 'http' }],
  ['ERR_INTERNAL', { http: 500, rpc: -32603, text: 'internal error', event: 'error', outcome: 'error', carrier: 'http' }],
]

describe('WIRE table', () => {
  it.each(PINNED)('%s is pinned', (code, row) => {
    expect(WIRE[code]).toStrictEqual(row)
  })

  it('has exactly the pinned codes, no more, no fewer', () => {
    expect(Object.keys(WIRE).sort()).toStrictEqual(PINNED.map(([code]) => code).sort())
  })

  it('every JSON-RPC code is a negative integer and every HTTP status a valid status', () => {
    for (const [code, row] of Object.entries(WIRE)) {
      expect(Number.isInteger(row.rpc), code).toBe(true)
      expect(row.rpc, code).toBeLessThan(0)
      expect(row.http, code).toBeGreaterThanOrEqual(200)
      expect(row.http, code).toBeLessThan(600)
    }
  })

  it('emits no JSON-RPC code in the range MCP reserves (-32099…-32000) but the three it defines, used for their meaning', () => {
    const defined = new Map([
      [-32020, 'ERR_HEADER_MISMATCH'],
      [-32021, 'ERR_CAPABILITY_MISSING'],
      [-32022, 'ERR_UNSUPPORTED_VERSION'],
    ])
    for (const [code, row] of Object.entries(WIRE)) {
      if (row.rpc < -32099 || row.rpc > -32000) continue
      expect(defined.get(row.rpc), `${code} uses ${row.rpc}`).toBe(code)
    }
  })

  it('a refusal decided before dispatch carries an HTTP error status; rpc and tool rows travel in a 200', () => {
    for (const [code, row] of Object.entries(WIRE)) {
      if (row.carrier === 'http') expect(row.http, code).toBeGreaterThanOrEqual(400)
      else expect(row.http, code).toBe(200)
    }
  })
})

describe('SecurityError', () => {
  it('carries code, message, name, expose and cause', () => {
    const cause = new Error('root cause')
    const error = new SecurityError('ERR_FORBIDDEN', 'operator detail', { cause, expose: 'client detail' })
    expect(error).toBeInstanceOf(Error)
    expect(error.name).toBe('SecurityError')
    expect(error.code).toBe('ERR_FORBIDDEN')
    expect(error.message).toBe('operator detail')
    expect(error.expose).toBe('client detail')
    expect(error.cause).toBe(cause)
  })

  it('has no cause property at all when none is given', () => {
    const error = new SecurityError('ERR_FORBIDDEN', 'x')
    expect(Object.hasOwn(error, 'cause')).toBe(false)
    expect(error.expose).toBeUndefined()
  })
})

describe('publicText', () => {
  it.each(PINNED)('%s without expose is the table text only', (code, row) => {
    expect(publicText(new SecurityError(code, 'operator-only /etc/secret'))).toBe(row.text)
  })

  it('appends the client-safe detail after the table text', () => {
    expect(publicText(new SecurityError('ERR_PATH_FORBIDDEN', 'host path /srv/x escaped', { expose: 'outside the workspace' }))).toBe('path refused: outside the workspace')
  })

  it('never contains the operator message', () => {
    const text = publicText(new SecurityError('ERR_INTERNAL', 'SELECT * FROM users at /home/op/db.sqlite'))
    expect(text).toBe('internal error')
    expect(text).not.toContain('SELECT')
  })
})

describe('rpcError', () => {
  it.each(PINNED)('%s maps to its rpc code, public text and request id', (code, row) => {
    const error = new SecurityError(code, 'operator-only detail')
    expect(rpcError(error, 'req-12345678')).toStrictEqual({ code: row.rpc, message: row.text, data: { code, requestId: 'req-12345678' } })
  })

  it('includes expose but not the message', () => {
    const out = rpcError(new SecurityError('ERR_JSON_TOO_DEEP', 'raw input [[[[', { expose: 'nesting deeper than 64' }), 'r1')
    expect(out.message).toBe('request nested too deeply: nesting deeper than 64')
    expect(JSON.stringify(out)).not.toContain('[[[[')
  })
})

describe('toSecurityError', () => {
  it('returns a SecurityError unchanged (same object)', () => {
    const original = new SecurityError('ERR_AUTH_REVOKED', 'revoked')
    expect(toSecurityError(original)).toBe(original)
  })

  const UNKNOWN_THROWS: ReadonlyArray<{ name: string; thrown: unknown; message: string }> = [
    { name: 'Error with a host path', thrown: new Error('ENOENT: open /var/lib/secret.db'), message: 'Error: ENOENT: open /var/lib/secret.db' },
    { name: 'TypeError', thrown: new TypeError('cannot read x of undefined'), message: 'TypeError: cannot read x of undefined' },
    { name: 'string', thrown: 'password=hunter2', message: 'non-error thrown' },
    { name: 'undefined', thrown: undefined, message: 'non-error thrown' },
    { name: 'null', thrown: null, message: 'non-error thrown' },
    { name: 'object with a message', thrown: { message: 'token=abc', code: 'ERR_FORBIDDEN' }, message: 'non-error thrown' },
    { name: 'error-like with a security code', thrown: Object.assign(new Error('looks allowed'), { code: 'ERR_FORBIDDEN' }), message: 'Error: looks allowed' },
  ]

  it.each(UNKNOWN_THROWS)('$name → ERR_INTERNAL, nothing leaks to the client', ({ thrown, message }) => {
    const error = toSecurityError(thrown)
    expect(error).toBeInstanceOf(SecurityError)
    expect(error.code).toBe('ERR_INTERNAL')
    expect(error.message).toBe(message)
    expect(error.expose).toBeUndefined()
    expect(error.cause).toBe(thrown)
    expect(publicText(error)).toBe('internal error')
    const wire = JSON.stringify(rpcError(error, 'r'))
    for (const secret of ['/var/lib', 'hunter2', 'token=abc', 'cannot read', 'looks allowed']) expect(wire).not.toContain(secret)
  })
})
