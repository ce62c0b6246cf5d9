import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { SecurityError } from '../errors.js'
import { redact as defaultRedact } from '../protect/redact.js'
import { AuditChain } from './chain.js'

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

/** The last newline-terminated line of an open file, reading backwards in 64 KiB steps. */
function lastWholeLine(fd: number, size: number): string | undefined {
  let end = size
  let tail = Buffer.alloc(0)
  while (end > 0) {
    const start = Math.max(0, end - 65_536)
    const chunk = Buffer.alloc(end - start)
    readSync(fd, chunk, 0, chunk.length, start)
    tail = Buffer.concat([chunk, tail])
    end = start
    const text = tail.toString('utf8')
    const close = text.lastIndexOf('\n')
    if (close < 0) continue
    const open = text.lastIndexOf('\n', close - 1)
    if (open >= 0 || end === 0) return text.slice(open + 1, close)
  }
  return undefined
}

/**
 * Append-only JSON Lines file. Each line is one `write(2)` on an `O_APPEND` descriptor, so
 * concurrent writers never interleave inside a line. Past `maxBytes` the file is renamed to
 * `<file>.<timestamp>` and a new one started; hash chains continue across the two.
 * A file that ends mid-line (a crash or a full disk) gets a newline first, so the torn fragment
 * stays a line of its own that `audit verify` reports, and new lines are whole.
 * Does not check: disk space ahead of time.
 */
export class FileAuditSink implements AuditSink {
  #fd: number
  #size: number
  #last: string | undefined
  readonly #maxBytes: number
  #rotations = 0

  constructor(
    readonly path: string,
    options: { maxBytes?: number } = {},
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    this.#maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
    this.#fd = openSync(path, 'a+', 0o600)
    this.#size = fstatSync(this.#fd).size
    if (this.#size > 0) {
      const lastByte = Buffer.alloc(1)
      readSync(this.#fd, lastByte, 0, 1, this.#size - 1)
      this.#last = lastWholeLine(this.#fd, this.#size)
      if (lastByte[0] !== 0x0a) this.#size += writeSync(this.#fd, '\n')
    }
  }

  lastLine(): string | undefined {
    return this.#last
  }

  write(line: string): void {
    const bytes = Buffer.from(line, 'utf8')
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.#rotate()
    const written = writeSync(this.#fd, bytes)
    // A short write leaves a torn line; treat it as a failure so the request fails closed.
    if (written !== bytes.length) throw new Error(`short audit write: ${written} of ${bytes.length} bytes`)
    this.#size += written
  }

  #rotate(): void {
    fsyncSync(this.#fd)
    closeSync(this.#fd)
    // Timestamp, then a counter: names sort in writing order, even within one millisecond.
    this.#rotations += 1
    renameSync(this.path, `${this.path}.${new Date().toISOString().replace(/[:.]/g, '-')}.${String(this.#rotations).padStart(6, '0')}`)
    this.#fd = openSync(this.path, 'a+', 0o600)
    this.#size = 0
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

  #write(fields: Record<string, unknown>): void {
    // Redacted before serialisation, so no secret-shaped value reaches the sink in any field.
    const line = toJsonLine({ ts: this.clock().toISOString(), ...(this.#redact(fields) as Record<string, unknown>) } as AuditRecord)
    if (this.#chain === undefined) {
      this.sink.write(line)
      return
    }
    const sealed = this.#chain.seal(line)
    this.sink.write(sealed.line)
    sealed.commit()
  }

  /** @throws SecurityError ERR_AUDIT_UNAVAILABLE when the line cannot be written whole. */
  record(fields: AuditFields): void {
    // `ts` first for readers; a field named `ts` never replaces the clock's.
    const { ts: _ignored, ...rest } = fields as AuditFields & { ts?: unknown }
    try {
      if (this.#chain !== undefined && !this.#opened) {
        this.#write({ event: 'audit.opened', decision: 'allow', reason: 'OK', pid: process.pid, kid: this.#chain.kid })
        this.#opened = true
      }
      this.#write(rest)
      // Periodic checkpoints: a sealed line stating how far this writer's chain has come.
      if (this.#chain !== undefined && this.#checkpointEvery > 0 && (this.#chain.seq + 1) % this.#checkpointEvery === 0) {
        this.#write({ event: 'audit.checkpoint', decision: 'allow', reason: 'OK', lines: this.#chain.seq + 1 })
      }
    } catch (error) {
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
      if (this.#chain !== undefined && this.#opened) this.#write({ event: 'audit.closed', decision: 'allow', reason: 'OK', lines: this.#chain.seq + 1 })
    } finally {
      this.sink.close()
    }
  }
}
