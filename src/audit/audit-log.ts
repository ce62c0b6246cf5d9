import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { SecurityError, type SecurityErrorCode } from '../errors.js'
import type { RequestContext } from '../pipeline/context.js'

/** The fields of an audit line, before the timestamp. Values are plain JSON; secrets never enter (callers pass ids, not keys). */
export interface AuditFields {
  readonly event: string
  readonly requestId?: string | undefined
  readonly principal?: string | undefined
  readonly roles?: readonly string[] | undefined
  readonly method?: string | undefined
  readonly tool?: string | undefined
  readonly decision: 'allow' | 'deny' | 'error'
  readonly reason: string
  readonly [field: string]: unknown
}

/** One audit line. */
export interface AuditRecord extends AuditFields {
  readonly ts: string
}

export interface AuditSink {
  /** Append one whole line. Throws if it cannot; the caller fails the request closed. */
  write(line: string): void
  close(): void
}

/**
 * Serialise a record as one line of JSON Lines. JSON.stringify already escapes CR, LF, quotes
 * and lone surrogates; NEL (U+0085) and U+2028/U+2029 are legal in JSON strings but split lines
 * for many log readers (Unicode line breaks), so they are escaped too. The result never contains
 * a raw line break.
 */
export function toJsonLine(record: AuditRecord): string {
  return `${JSON.stringify(record)
    .replace(/\u0085/g, '\\u0085')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029')}\n`
}

/**
 * Append-only JSON Lines file. Each line is one `write(2)` on an `O_APPEND` descriptor, so
 * concurrent writers never interleave inside a line. Does not check: tampering (a later issue
 * chains and signs lines), disk space ahead of time.
 */
export class FileAuditSink implements AuditSink {
  readonly #fd: number
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    this.#fd = openSync(path, 'a', 0o600)
  }
  write(line: string): void {
    const bytes = Buffer.from(line, 'utf8')
    const written = writeSync(this.#fd, bytes)
    // A short write leaves a torn line; treat it as a failure so the request fails closed.
    if (written !== bytes.length) throw new Error(`short audit write: ${written} of ${bytes.length} bytes`)
  }
  close(): void {
    try {
      fsyncSync(this.#fd)
    } finally {
      closeSync(this.#fd)
    }
  }
}

/** In-process sink for library users who collect lines themselves. */
export class MemoryAuditSink implements AuditSink {
  readonly lines: string[] = []
  write(line: string): void {
    this.lines.push(line)
  }
  close(): void {}
}

/** Writes audit records; a failed write becomes `ERR_AUDIT_UNAVAILABLE` so the request fails closed. */
export class AuditLog {
  constructor(
    private readonly sink: AuditSink,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** @throws SecurityError ERR_AUDIT_UNAVAILABLE when the line cannot be written whole. */
  record(fields: AuditFields): void {
    // `ts` first for readers; a field named `ts` never replaces the clock's.
    const { ts: _ignored, ...rest } = fields as AuditFields & { ts?: unknown }
    const line = toJsonLine({ ts: this.clock().toISOString(), ...rest })
    try {
      this.sink.write(line)
    } catch (error) {
      throw new SecurityError('ERR_AUDIT_UNAVAILABLE', 'audit sink write failed', { cause: error })
    }
  }

  /** The one line for a request, from its context. Idempotent: a request is audited once. */
  recordRequest(ctx: RequestContext, extra?: Record<string, unknown>): void {
    if (ctx.audited) return
    const o = ctx.outcome
    // Extra fields first: they can add to a line, never overwrite the decision or who decided.
    this.record({
      ...o.extra,
      ...extra,
      event: o.event,
      requestId: ctx.requestId,
      principal: ctx.principal?.id,
      roles: ctx.principal?.roles,
      tenant: ctx.principal?.tenant,
      scopes: ctx.principal?.scopes,
      method: ctx.method,
      tool: ctx.tool,
      decision: o.decision,
      reason: o.reason,
      transport: ctx.transport,
      era: ctx.era,
      session: ctx.sessionId,
      remote: ctx.remoteAddress,
      durationMs: Math.round((performance.now() - ctx.startedAt) * 100) / 100,
      detail: o.detail,
    })
    ctx.audited = true
  }

  close(): void {
    this.sink.close()
  }
}

/** The audit event name for a refusal code. */
export function eventFor(code: SecurityErrorCode): string {
  switch (code) {
    case 'ERR_AUTH_MISSING':
    case 'ERR_AUTH_INVALID':
    case 'ERR_AUTH_EXPIRED':
    case 'ERR_AUTH_REVOKED':
    case 'ERR_AUTH_UNAVAILABLE':
    case 'ERR_TOKEN_IN_QUERY':
      return 'auth.failure'
    case 'ERR_AUTH_BLOCKED':
      return 'auth.blocked'
    case 'ERR_INSUFFICIENT_SCOPE':
      return 'authz.denied'
    case 'ERR_FORBIDDEN':
    case 'ERR_SESSION_FORBIDDEN':
      return 'authz.denied'
    case 'ERR_BODY_TOO_LARGE':
    case 'ERR_JSON_TOO_DEEP':
    case 'ERR_SESSION_LIMIT':
    case 'ERR_RATE_LIMITED':
    case 'ERR_CONCURRENCY_LIMIT':
      return 'limit.exceeded'
    case 'ERR_ORIGIN_FORBIDDEN':
    case 'ERR_HOST_FORBIDDEN':
      return 'origin.rejected'
    case 'ERR_VALIDATION':
      return 'validation.failed'
    case 'ERR_INTERNAL':
    case 'ERR_AUDIT_UNAVAILABLE':
    case 'ERR_LIMITS_UNAVAILABLE':
      return 'error'
    default:
      return 'request.rejected'
  }
}
