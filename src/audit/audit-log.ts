import { SecurityError } from '../errors.js'
import { redact as defaultRedact } from '../protect/redact.js'
import { AuditChain } from './chain.js'
import type { AuditRepair } from './file-sink.js'

export { type AuditRepair, FileAuditSink, type FileAuditSinkOptions, type FsyncPolicy } from './file-sink.js'

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
  /** The last whole line already stored, which a new hash chain is anchored to. */
  lastLine?(): string | undefined
  /** Asynchronous sinks: resolves once every line written so far is stored; rejects if that failed. */
  flush?(): Promise<void>
  /** Asynchronous sinks: resolves once closing has finished. */
  whenClosed?(): Promise<void>
  /** Asynchronous sinks: false while a line could not be stored now (reconnecting, queue full). */
  available?(): boolean
  /** Store several whole lines in one write, all or none (file sink). Without it, lines are written one by one. */
  writeLines?(text: string): void
  /** Bytes cut to keep every line whole (file sink), each returned once, for `audit.repaired` lines. */
  takeRepairs?(): readonly AuditRepair[]
}

/** A line to write, and what writing it settles. */
type Pending = { readonly line: string; readonly done?: () => void }

/**
 * Serialise a record as one line of JSON Lines. JSON.stringify already escapes CR, LF, quotes
 * and lone surrogates; NEL (U+0085) and U+2028/U+2029 are legal in JSON strings but split lines
 * for many log readers (Unicode line breaks), so they are escaped too. The result never contains
 * a raw line break.
 */
export function toJsonLine(record: AuditRecord): string {
  const json = JSON.stringify(record)
  // One scan in the usual case: a line without any of the three characters is left as it is.
  return `${UNICODE_BREAK.test(json) ? json.replace(UNICODE_BREAKS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : json}\n`
}
const UNICODE_BREAK = /[\u0085\u2028\u2029]/
const UNICODE_BREAKS = /[\u0085\u2028\u2029]/g

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
  readonly #chain: AuditChain | undefined
  #opened = false

  readonly #redact: (value: unknown) => unknown
  #checkpointEvery = 1000

  /** Write an `audit.checkpoint` line after every `n` lines of this writer (0: never). */
  checkpointEvery(n: number): void {
    this.#checkpointEvery = n
  }

  /**
   * @param chainKey the audit key: every line is then hash-chained and MACed (see chain.ts)
   * @param redact applied to every record before it is written (default: protect/redact.ts)
   */
  constructor(
    private readonly sink: AuditSink,
    private readonly clock: () => Date = () => new Date(),
    chainKey?: Buffer,
    redact: (value: unknown) => unknown = defaultRedact,
  ) {
    this.#chain = chainKey === undefined ? undefined : new AuditChain(chainKey, sink.lastLine?.())
    this.#redact = redact
  }

  #observer: ((fields: AuditFields) => void) | undefined

  /** Would this value reach the audit trail unchanged (no redaction rule rewrites it)? */
  survives(value: string): boolean {
    return this.#redact(value) === value
  }

  /** Called with every record after it is written (alert thresholds). An observer's throw is ignored. */
  observe(observer: (fields: AuditFields) => void): void {
    this.#observer = observer
  }

  /** This writer's id in the hash chain, if chained. */
  get writer(): string | undefined {
    return this.#chain?.writer
  }

  /** `audit.repaired` fields not yet written (the sink cut bytes, or lines were refused). */
  #repairs: Record<string, unknown>[] = []
  /** Lines refused since the last line that was written, and the bytes cut back meanwhile. */
  #refused: { lines: number; since: string; error: string; cuts: AuditRepair[] } | undefined

  /** One line: `ts` first, redacted unless `raw` (fields this class makes, which hold no secrets). */
  #line(fields: Record<string, unknown>, raw = false): string {
    // Redacted before serialisation, so no secret-shaped value reaches the sink in any field.
    return toJsonLine({ ts: this.clock().toISOString(), ...((raw ? fields : this.#redact(fields)) as Record<string, unknown>) } as AuditRecord)
  }

  /**
   * Write lines: in one write if the sink can (all of them are stored, or none), else one by one.
   * The chain advances only past lines that were stored.
   */
  #writeAll(pending: readonly Pending[]): void {
    const writeLines = this.sink.writeLines?.bind(this.sink)
    if (writeLines !== undefined) {
      const sealed = this.#chain?.sealAll(pending.map((p) => p.line))
      writeLines(sealed?.text ?? pending.map((p) => p.line).join(''))
      sealed?.commit()
      for (const p of pending) p.done?.()
      return
    }
    for (const p of pending) {
      const sealed = this.#chain?.seal(p.line)
      this.sink.write(sealed?.line ?? p.line)
      sealed?.commit()
      p.done?.()
    }
  }

  #takeRepairs(): void {
    for (const repair of this.sink.takeRepairs?.() ?? []) {
      if (repair.cause === 'write failed') this.#refused?.cuts.push(repair)
      else this.#repairs.push({ event: 'audit.repaired', decision: 'error', reason: 'ERR_AUDIT_UNAVAILABLE', ...repair })
    }
  }

  /** The lines that must precede the next one: the writer's opening, then every repair not yet recorded. */
  #preamble(): Pending[] {
    this.#takeRepairs()
    const pending: Pending[] = []
    if (this.#chain !== undefined && !this.#opened) {
      pending.push({ line: this.#line({ event: 'audit.opened', decision: 'allow', reason: 'OK', pid: process.pid, kid: this.#chain.kid }), done: () => (this.#opened = true) })
    }
    for (const repair of this.#repairs) pending.push({ line: this.#line(repair, true), done: () => this.#repairs.splice(this.#repairs.indexOf(repair), 1) })
    const refused = this.#refused
    if (refused !== undefined) {
      const cuts = refused.cuts.slice(0, 16).map(({ from, to, sha256 }) => ({ from, to, sha256 }))
      const omitted = refused.cuts.length - cuts.length
      const fields = {
        event: 'audit.repaired',
        decision: 'error',
        reason: 'ERR_AUDIT_UNAVAILABLE',
        cause: 'write failed',
        error: refused.error,
        refused: refused.lines,
        since: refused.since,
        cuts,
      }
      pending.push({ line: this.#line(omitted > 0 ? { ...fields, cutsOmitted: omitted } : fields, true), done: () => (this.#refused = undefined) })
    }
    return pending
  }

  #failed(error: unknown): void {
    this.#refused ??= { lines: 0, since: this.clock().toISOString(), error: '', cuts: [] }
    this.#refused.lines += 1
    this.#refused.error = (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : 'error')
    try {
      this.#takeRepairs() // the cut-back of this very write
    } catch {
      // Looked at again before the next write.
    }
  }

  /**
   * @throws SecurityError ERR_AUDIT_UNAVAILABLE when the line cannot be written whole; then nothing
   * of it is stored, and the next line that is written is preceded by an `audit.repaired` line
   * counting the refused lines and the bytes cut back.
   */
  record(fields: AuditFields): void {
    // `ts` first for readers; a field named `ts` never replaces the clock's.
    const { ts: _ignored, ...rest } = fields as AuditFields & { ts?: unknown }
    try {
      const pending = [...this.#preamble(), { line: this.#line(rest) }]
      // Periodic checkpoints: a sealed line stating how far this writer's chain has come.
      const next = (this.#chain?.seq ?? 0) + pending.length + 1
      if (this.#chain !== undefined && this.#checkpointEvery > 0 && next % this.#checkpointEvery === 0) {
        pending.push({ line: this.#line({ event: 'audit.checkpoint', decision: 'allow', reason: 'OK', lines: next }) })
      }
      this.#writeAll(pending)
    } catch (error) {
      this.#failed(error)
      throw new SecurityError('ERR_AUDIT_UNAVAILABLE', 'audit sink write failed', { cause: error })
    }
    try {
      this.#observer?.(fields)
    } catch {
      // Alerting must never turn a written line into a failed request.
    }
  }

  /**
   * Wait until every line recorded so far is stored (no-op for synchronous sinks). Requests await
   * this before answering, so an asynchronous sink fails them closed too.
   * @throws SecurityError ERR_AUDIT_UNAVAILABLE
   */
  async flush(): Promise<void> {
    if (this.sink.flush === undefined) return
    try {
      await this.sink.flush()
    } catch (error) {
      throw new SecurityError('ERR_AUDIT_UNAVAILABLE', 'audit sink flush failed', { cause: error })
    }
  }

  /** False while the sink is known unable to store a line: requests are refused before they run. */
  get available(): boolean {
    return this.sink.available?.() ?? true
  }

  /** Resolves once an asynchronous sink has finished closing. */
  async closed(): Promise<void> {
    await this.sink.whenClosed?.()
  }

  /** Close the writer: a chained log ends with `audit.closed`, so a cut tail shows. */
  close(): void {
    try {
      if (this.#chain !== undefined && this.#opened) {
        const pending = this.#preamble()
        pending.push({ line: this.#line({ event: 'audit.closed', decision: 'allow', reason: 'OK', lines: this.#chain.seq + pending.length + 1 }) })
        this.#writeAll(pending)
      }
    } finally {
      this.sink.close()
    }
  }
}
