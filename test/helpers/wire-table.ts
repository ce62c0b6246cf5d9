import { expect } from 'vitest'
import { type SecurityErrorCode, WIRE } from '../../src/errors.js'

/** Where a refusal can be observed: HTTP in each protocol era, and stdio. */
export type Transport = 'http-modern' | 'http-legacy' | 'stdio'
export const TRANSPORTS: readonly Transport[] = ['http-modern', 'http-legacy', 'stdio']

/**
 * Rows that cannot occur on a transport, each with why. Every (code, transport) pair has a driver
 * in test/e2e/wire-table-*.test.ts or a line here; a new code with neither fails the coverage test.
 */
export const NOT_REACHABLE: readonly { code: SecurityErrorCode; transports: readonly Transport[]; reason: string }[] = [
  { code: 'ERR_AUTH_MISSING', transports: ['stdio'], reason: 'the stdio credential is MCP_API_KEY, checked before serving: without it the process exits and serves nothing' },
  { code: 'ERR_AUTH_UNAVAILABLE', transports: ['stdio'], reason: 'stdio accepts only API keys, verified against the local key store: there is no remote verifier to be down' },
  {
    code: 'ERR_AUTH_BLOCKED',
    transports: ['stdio'],
    reason: 'brute-force blocking counts failed presentations per address and key id over HTTP; a stdio process holds one credential, fixed at start',
  },
  { code: 'ERR_TOKEN_IN_QUERY', transports: ['stdio'], reason: 'a pipe has no URL' },
  { code: 'ERR_INSUFFICIENT_SCOPE', transports: ['stdio'], reason: 'stdio principals are API keys, which carry roles, not OAuth scopes' },
  {
    code: 'ERR_SESSION_FORBIDDEN',
    transports: ['http-modern', 'stdio'],
    reason: '2026-07-28 HTTP is stateless and stdio is one connection: only 2025-11-25 HTTP has Mcp-Session-Id',
  },
  {
    code: 'ERR_SESSION_NOT_FOUND',
    transports: ['http-modern', 'stdio'],
    reason: '2026-07-28 HTTP is stateless and stdio is one connection: only 2025-11-25 HTTP has Mcp-Session-Id',
  },
  {
    code: 'ERR_SESSION_REQUIRED',
    transports: ['http-modern', 'stdio'],
    reason: '2026-07-28 HTTP is stateless and stdio is one connection: only 2025-11-25 HTTP has Mcp-Session-Id',
  },
  { code: 'ERR_SESSION_LIMIT', transports: ['http-modern', 'stdio'], reason: '2026-07-28 HTTP is stateless and stdio is one connection: only 2025-11-25 HTTP opens sessions' },
  { code: 'ERR_ORIGIN_FORBIDDEN', transports: ['stdio'], reason: 'a pipe has no Origin header' },
  { code: 'ERR_HOST_FORBIDDEN', transports: ['stdio'], reason: 'a pipe has no Host header' },
  { code: 'ERR_HEADER_INVALID', transports: ['stdio'], reason: 'a pipe has no headers' },
  {
    code: 'ERR_HEADER_MISMATCH',
    transports: ['http-legacy', 'stdio'],
    reason: 'only 2026-07-28 HTTP requests carry Mcp-Method, Mcp-Name and Mcp-Param-* headers to disagree with the body',
  },
  { code: 'ERR_UNSUPPORTED_MEDIA_TYPE', transports: ['stdio'], reason: 'a pipe has no Content-Type' },
  { code: 'ERR_NOT_ACCEPTABLE', transports: ['stdio'], reason: 'a pipe has no Accept header' },
  { code: 'ERR_METHOD_NOT_ALLOWED', transports: ['stdio'], reason: 'a pipe has no HTTP method' },
  { code: 'ERR_NOT_FOUND', transports: ['stdio'], reason: 'a pipe has no URL path to miss' },
]

export function notReachable(code: SecurityErrorCode, transport: Transport): string | undefined {
  return NOT_REACHABLE.find((n) => n.code === code && n.transports.includes(transport))?.reason
}

/**
 * For each transport of a test file, every row is driven or declared unreachable, never both.
 * Returns the gaps and the contradictions (empty when the table is covered).
 */
export function coverageGaps(transports: readonly Transport[], driven: readonly { code: SecurityErrorCode; transport: Transport }[]): string[] {
  const gaps: string[] = []
  for (const code of Object.keys(WIRE) as SecurityErrorCode[]) {
    for (const t of transports) {
      const has = driven.some((d) => d.code === code && d.transport === t)
      const excused = notReachable(code, t) !== undefined
      if (!has && !excused) gaps.push(`${code} on ${t}: no driver and no reason`)
      if (has && excused) gaps.push(`${code} on ${t}: driven, yet listed as not reachable`)
    }
  }
  return gaps
}

export type AuditLine = Record<string, unknown>
export type RpcMessage = Record<string, unknown>

/** What one refusal put on the wire and in the audit trail. */
export interface Seen {
  readonly transport: Transport
  /** HTTP: the status and headers; undefined when no response was received (a cancelled request). */
  readonly status?: number
  readonly headers?: Headers
  /** Every byte the client read for this request (body, SSE stream, or stdout lines). */
  readonly text: string
  /** The JSON-RPC answer to the request; undefined when none was sent. */
  readonly message: RpcMessage | undefined
  /** The request id: the x-request-id header (HTTP), the answer's (stdio), or the one the client chose. */
  readonly requestId: string
  /** Audit lines stored while the request ran (and a little after). */
  readonly audit: readonly AuditLine[]
  /** A 2025-11-25 call that asked the client for input: one line per round, the refusal on the last. */
  readonly rounds?: number
  /** Lines the audit sink refused to store (when the test can see them). */
  readonly refused?: readonly AuditLine[]
  /**
   * Raised while the SDK dispatched (a concurrency cap, a failing handler, an SDK refusal on an
   * open 2025-11-25 stream): the refusal travels in the JSON-RPC answer of a 200, as README says.
   */
  readonly duringDispatch?: boolean
}

// Texts the MCP SDK (and zod, Node) write in their own errors: none may reach a client.
const ZOD_ISSUE = /Invalid input/
const LIBRARY_TEXTS = [
  ZOD_ISSUE,
  /ZodError/,
  /Method not found/,
  /Resource .* not found/,
  /Prompt .* not found/,
  /Unsupported protocol version/,
  /Invalid _meta envelope/,
  /Bad Request/,
  /MCP error/,
  /Invalid or expired requestState/,
  /Cannot request input/,
  /client capabilities do not declare/,
  /ECONNREFUSED/,
  /EIO/,
  /SQLSTATE|no_such_table/i,
  /node_modules/,
  / {4}at /,
  /\\n\s+at /,
  /\bat .+:\d+:\d+/,
]

/** Nothing internal on the wire: no stack, no host path, no library message, no secret. */
export function expectNoLeak(text: string, forbidden: readonly string[], allowed: readonly RegExp[] = []): void {
  for (const pattern of LIBRARY_TEXTS) if (!allowed.includes(pattern)) expect.soft(text, `wire text matches ${pattern}`).not.toMatch(pattern)
  for (const s of [process.cwd(), ...forbidden]) if (s.length > 0) expect.soft(text, 'wire text holds a host path or secret').not.toContain(s)
}

function textOf(message: RpcMessage | undefined): { error?: { code: number; message: string; data?: Record<string, unknown> }; result?: Record<string, unknown> } {
  return (message ?? {}) as never
}

/**
 * The one assertion of every row: the carrier's shape (status, JSON-RPC error or in-band result),
 * the stable code and request id, the public text, the challenge and retry hints, nothing leaked,
 * and exactly one audit line saying the same.
 */
export function expectRow(code: SecurityErrorCode, seen: Seen, forbidden: readonly string[] = []): void {
  const row = WIRE[code]
  const id = seen.requestId
  expect.soft(id, 'request id').toMatch(/^[A-Za-z0-9._-]{8,128}$/)
  if (seen.transport !== 'stdio' && seen.status !== undefined) {
    const headers = seen.headers ?? new Headers()
    const status = row.carrier === 'http' && seen.duringDispatch !== true ? row.http : 200
    expect.soft(seen.status, 'HTTP status').toBe(status)
    expect.soft(headers.get('x-request-id'), 'x-request-id').toBe(id)
    const challenge = headers.get('www-authenticate')
    expect.soft(challenge !== null, `WWW-Authenticate ${challenge ?? '(none)'}`).toBe(row.challenge !== undefined)
    // RFC 6750 §3: the error attribute names the row's challenge; a bare `bearer` challenge has none.
    if (challenge !== null && row.challenge !== undefined) {
      expect.soft(challenge, 'a Bearer challenge').toMatch(/^Bearer /)
      if (row.challenge === 'bearer') expect.soft(challenge, 'no error attribute').not.toContain('error=')
      else expect.soft(challenge, 'the error attribute').toContain(`error="${row.challenge}"`)
    }
    if (status === 429) expect.soft(headers.get('retry-after') ?? '(none)', 'Retry-After').toMatch(/^[1-9]\d*$/)
    else expect.soft(headers.get('retry-after'), 'Retry-After').toBeNull()
  }
  if (code === 'ERR_CANCELLED') {
    // MCP cancellation: the request gets no answer at all.
    expect.soft(seen.message, 'a cancelled request is not answered').toBeUndefined()
  } else if (row.carrier === 'tool') {
    const result = textOf(seen.message).result as { isError?: boolean; content?: { type: string; text?: string }[]; _meta?: Record<string, unknown> } | undefined
    expect.soft(result?.isError, 'in-band isError').toBe(true)
    expect.soft(result?._meta?.['bastion/error'], '_meta bastion/error').toStrictEqual({ code, requestId: id })
    const shown = result?.content?.[0]?.text ?? ''
    expect.soft(result?.content, 'one text block').toHaveLength(1)
    const suffix = ` (request id ${id})`
    expect.soft(shown.endsWith(suffix), `text ${JSON.stringify(shown)} ends with the request id`).toBe(true)
    const publicText = shown.slice(0, -suffix.length)
    expect.soft(publicText === row.text || publicText.startsWith(`${row.text}: `), `text ${JSON.stringify(publicText)} is the row's`).toBe(true)
  } else {
    const error = textOf(seen.message).error
    expect.soft(error, `a JSON-RPC error, got ${JSON.stringify(seen.message)?.slice(0, 300)}`).toBeDefined()
    expect.soft(error?.code, 'JSON-RPC code').toBe(row.rpc)
    expect.soft(error?.data?.code, 'data.code').toBe(code)
    expect.soft(error?.data?.requestId, 'data.requestId').toBe(id)
    const message = error?.message ?? ''
    expect.soft(message === row.text || message.startsWith(`${row.text}: `), `message ${JSON.stringify(message)} is the row's`).toBe(true)
    const retry = error?.data?.retryAfterMs
    if (row.http === 429) expect.soft(typeof retry === 'number' && retry > 0, `data.retryAfterMs ${String(retry)}`).toBe(true)
  }
  // ERR_VALIDATION shows which argument failed and how, in zod's words (they name the schema, never
  // echo the value: pipeline/call-stages.ts validateArgs); no other row may carry them.
  expectNoLeak(seen.text, forbidden)
  const lines = seen.audit.filter((l) => l.requestId === id)
  if (code === 'ERR_AUDIT_UNAVAILABLE') {
    // The line that would record this refusal is the one that could not be written.
    expect.soft(lines, 'nothing stored for a request whose audit line failed').toHaveLength(0)
    if (seen.refused !== undefined) {
      // The first line the sink refused: this request's own, or, when the sink was already refusing,
      // the audit.repaired line that must precede it (the sink writes one line at a time).
      const attempted = seen.refused[0]
      expect.soft(attempted?.requestId === id || attempted?.event === 'audit.repaired', 'this request attempted a line').toBe(true)
      expect.soft(seen.refused.filter((l) => l.requestId === id).length, 'at most one line of its own').toBeLessThanOrEqual(1)
    }
    return
  }
  expect
    .soft(
      lines.map((l) => ({ event: l.event, decision: l.decision, reason: l.reason })),
      'exactly one audit line per request (one per round)',
    )
    .toHaveLength(seen.rounds ?? 1)
  expect.soft(lines.at(-1), 'the audit line').toMatchObject({ event: row.event, decision: row.outcome, reason: code })
  // Earlier rounds of a call that asked the client were allowed; only the last one refused.
  for (const earlier of lines.slice(0, -1)) expect.soft(earlier, 'an earlier round').toMatchObject({ event: 'tool.call', decision: 'allow', reason: 'OK' })
}
