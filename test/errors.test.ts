import { describe, expect, it } from 'vitest'
import { publicText, rpcError, SecurityError, type SecurityErrorCode, toSecurityError, WIRE, type WireError } from '../src/errors.js'

// Pinned literally: operators alert on these codes and clients branch on these numbers. Changing a
// row must be a deliberate edit here too.
const PINNED: ReadonlyArray<readonly [SecurityErrorCode, WireError]> = [
  ['ERR_AUTH_MISSING', { http: 401, rpc: -32001, text: 'authentication required' }],
  ['ERR_AUTH_INVALID', { http: 401, rpc: -32001, text: 'invalid credentials' }],
  ['ERR_AUTH_EXPIRED', { http: 401, rpc: -32001, text: 'invalid credentials' }],
  ['ERR_AUTH_REVOKED', { http: 401, rpc: -32001, text: 'invalid credentials' }],
  ['ERR_FORBIDDEN', { http: 403, rpc: -32003, text: 'forbidden' }],
  ['ERR_SESSION_FORBIDDEN', { http: 403, rpc: -32003, text: 'session belongs to another principal' }],
  ['ERR_SESSION_NOT_FOUND', { http: 404, rpc: -32001, text: 'session not found' }],
  ['ERR_SESSION_REQUIRED', { http: 400, rpc: -32600, text: 'session id required' }],
  ['ERR_SESSION_LIMIT', { http: 429, rpc: -32029, text: 'too many sessions' }],
  ['ERR_ORIGIN_FORBIDDEN', { http: 403, rpc: -32003, text: 'origin not allowed' }],
  ['ERR_HOST_FORBIDDEN', { http: 403, rpc: -32003, text: 'host not allowed' }],
  ['ERR_BODY_TOO_LARGE', { http: 413, rpc: -32600, text: 'request body too large' }],
  ['ERR_JSON_TOO_DEEP', { http: 400, rpc: -32600, text: 'request nested too deeply' }],
  ['ERR_PARSE', { http: 400, rpc: -32700, text: 'parse error' }],
  ['ERR_INVALID_REQUEST', { http: 400, rpc: -32600, text: 'invalid request' }],
  ['ERR_UNSUPPORTED_MEDIA_TYPE', { http: 415, rpc: -32600, text: 'content-type must be application/json' }],
  ['ERR_NOT_ACCEPTABLE', { http: 406, rpc: -32600, text: 'accept must include application/json and text/event-stream' }],
  ['ERR_METHOD_NOT_ALLOWED', { http: 405, rpc: -32600, text: 'method not allowed' }],
  ['ERR_NOT_FOUND', { http: 404, rpc: -32601, text: 'not found' }],
  ['ERR_TOOL_NOT_FOUND', { http: 200, rpc: -32602, text: 'unknown tool' }],
  ['ERR_VALIDATION', { http: 200, rpc: -32602, text: 'invalid arguments' }],
  ['ERR_PATH_FORBIDDEN', { http: 200, rpc: -32003, text: 'path refused' }],
  ['ERR_FILE_NOT_FOUND', { http: 200, rpc: -32002, text: 'file not found' }],
  ['ERR_FILE_TOO_LARGE', { http: 200, rpc: -32600, text: 'file too large' }],
  ['ERR_AUDIT_UNAVAILABLE', { http: 503, rpc: -32603, text: 'service unavailable' }],
  ['ERR_TOOL_FAILED', { http: 200, rpc: -32603, text: 'tool failed' }],
  ['ERR_INTERNAL', { http: 500, rpc: -32603, text: 'internal error' }],
  ['ERR_RATE_LIMITED', { http: 429, rpc: -32029, text: 'rate limit exceeded' }],
  ['ERR_CONCURRENCY_LIMIT', { http: 429, rpc: -32029, text: 'too many calls in progress' }],
  ['ERR_LIMITS_UNAVAILABLE', { http: 503, rpc: -32603, text: 'service unavailable' }],
  ['ERR_TOOL_TIMEOUT', { http: 200, rpc: -32603, text: 'tool timed out' }],
  ['ERR_CANCELLED', { http: 200, rpc: -32800, text: 'request cancelled' }],
  ['ERR_OUTPUT_TOO_LARGE', { http: 200, rpc: -32603, text: 'tool output too large' }],
  ['ERR_TOOL_RESOURCE_LIMIT', { http: 200, rpc: -32603, text: 'tool exceeded its resource limits' }],
  ['ERR_AUTH_UNAVAILABLE', { http: 503, rpc: -32001, text: 'authentication unavailable' }],
  ['ERR_INSUFFICIENT_SCOPE', { http: 403, rpc: -32003, text: 'insufficient scope' }],
  ['ERR_AUTH_BLOCKED', { http: 429, rpc: -32029, text: 'too many failed authentications' }],
  ['ERR_TOKEN_IN_QUERY', { http: 400, rpc: -32600, text: 'credentials are not accepted in the URL' }],
  ['ERR_PII_BLOCKED', { http: 200, rpc: -32003, text: 'result withheld: it contains personal data' }],
  ['ERR_DATABASE', { http: 200, rpc: -32603, text: 'database error' }],
  ['ERR_CONFIRMATION_REQUIRED', { http: 200, rpc: -32003, text: "this operation needs the user's confirmation, and this client cannot ask for it" }],
  ['ERR_CONFIRMATION_INVALID', { http: 200, rpc: -32003, text: 'confirmation refused: it is invalid, expired, already used or for another call' }],
  ['ERR_DECLINED', { http: 200, rpc: -32003, text: 'not done: the user did not confirm' }],
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
