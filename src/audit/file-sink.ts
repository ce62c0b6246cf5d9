import { createHash } from 'node:crypto'
import { closeSync, fstatSync, fsync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, renameSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'

/** When the file sink asks the disk to keep what it wrote (`fsync(2)`). */
export type FsyncPolicy = 'always' | 'interval' | 'rotate'

/**
 * Bytes cut from the end of the audit file so that the next line starts on a line boundary.
 * Each becomes an `audit.repaired` line, so the cut is recorded, never silent.
 */
export type AuditRepair =
  /** A fragment after the last newline, found before writing: a crash, or a failed write that could not be cut back. */
  | { readonly cause: 'torn tail'; readonly from: number; readonly to: number; readonly bytes: number; readonly sha256: string }
  /** A write that failed part-way, cut back at once: the file is as it was before it. */
  | { readonly cause: 'write failed'; readonly from: number; readonly to: number; readonly bytes: number; readonly sha256: string; readonly error: string }

export interface FileAuditSinkOptions {
  /** Past this size the file is renamed to `<file>.<timestamp>.<n>` and a new one started. */
  readonly maxBytes?: number
  /** Default `interval`: fsync every `fsyncIntervalMs` when lines were written since the last one. */
  readonly fsync?: FsyncPolicy
  readonly fsyncIntervalMs?: number
}

const NEWLINE = 0x0a
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex')
const errorCode = (error: unknown): string => (error as NodeJS.ErrnoException).code ?? 'error'

function readAt(fd: number, from: number, to: number): Buffer {
  const buffer = Buffer.alloc(to - from)
  let done = 0
  while (done < buffer.length) {
    const n = readSync(fd, buffer, done, buffer.length - done, from + done)
    if (n === 0) break
    done += n
  }
  return buffer.subarray(0, done)
}

/** Byte offset just past the last newline before `size` (0 when there is none), reading backwards. */
function lineBoundary(fd: number, size: number): number {
  let end = size
  while (end > 0) {
    const start = Math.max(0, end - 65_536)
    const at = readAt(fd, start, end).lastIndexOf(NEWLINE)
    if (at >= 0) return start + at + 1
    end = start
  }
  return 0
}

/** The last newline-terminated line before `boundary` (the file's whole lines end there). */
function lastWholeLine(fd: number, boundary: number): string | undefined {
  if (boundary === 0) return undefined
  const open = lineBoundary(fd, boundary - 1)
  return readAt(fd, open, boundary - 1).toString('utf8')
}

// A synchronous pause (the sink is synchronous): lets another process's write(2) in progress finish.
const pause = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/**
 * Append-only JSON Lines file. Each write is one `write(2)` on an `O_APPEND` descriptor, so
 * concurrent writers never interleave inside a line, and it lands whole or not at all: a write
 * that fails part-way (a full disk) is cut back with `ftruncate(2)` to where it started, so the
 * file is as it was, and is reported by {@link takeRepairs}. A fragment after the last newline
 * (a crash mid-write, a cut that failed) is never appended to: before the next line it is cut
 * and reported, so the writer seals it as an `audit.repaired` line naming its byte range and hash.
 * Opening reads only; the file is changed on the first write.
 * Past `maxBytes` the file is renamed to `<file>.<timestamp>.<n>` and a new one started; hash
 * chains continue across the two.
 * Does not check: disk space ahead of time; another process that appends between a failed write
 * and its cut-back (the fragment then stays, glued to that line, and `audit verify` reports it),
 * or whose single write(2) runs for longer than 25 ms while this one judges the tail torn.
 */
export class FileAuditSink {
  #fd: number
  /** File size after this sink's last good write (rotation is judged on it). */
  #size: number
  readonly #last: string | undefined
  readonly #maxBytes: number
  readonly #fsync: FsyncPolicy
  #rotations = 0
  /** The tail must be looked at before the next write: at open, and after a cut that failed. */
  #suspect = true
  /** A torn tail found and reported, to be cut just before the next write. */
  #torn: { from: number; to: number } | undefined
  #repairs: AuditRepair[] = []
  #dirty = false
  #syncError: unknown
  #syncing = false
  #closed = false
  readonly #timer: NodeJS.Timeout | undefined

  constructor(
    readonly path: string,
    options: FileAuditSinkOptions = {},
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    this.#maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
    this.#fsync = options.fsync ?? 'interval'
    this.#fd = openSync(path, 'a+', 0o600)
    this.#size = fstatSync(this.#fd).size
    this.#last = lastWholeLine(this.#fd, lineBoundary(this.#fd, this.#size))
    if (this.#fsync === 'interval') {
      this.#timer = setInterval(() => this.#syncLater(), options.fsyncIntervalMs ?? 1000)
      this.#timer.unref()
    }
  }

  /** The last whole line already stored (a torn fragment after it is not a line). */
  lastLine(): string | undefined {
    return this.#last
  }

  /**
   * What was cut, or will be cut before the next write, to keep every line whole; each repair is
   * returned once. The writer records them (`audit.repaired`) in its next write.
   */
  takeRepairs(): AuditRepair[] {
    if (this.#suspect && this.#torn === undefined) this.#findTornTail()
    const repairs = this.#repairs
    this.#repairs = []
    return repairs
  }

  #findTornTail(): void {
    let size = fstatSync(this.#fd).size
    for (let attempt = 0; attempt < 40; attempt++) {
      const from = lineBoundary(this.#fd, size)
      if (from === size) {
        this.#suspect = false
        return
      }
      pause(25)
      const now = fstatSync(this.#fd).size
      if (now !== size) {
        size = now // another writer is appending: look again
        continue
      }
      const bytes = readAt(this.#fd, from, size)
      this.#torn = { from, to: size }
      this.#repairs.push({ cause: 'torn tail', from, to: size, bytes: bytes.length, sha256: sha256(bytes) })
      return
    }
    throw new Error('the audit file keeps growing mid-line')
  }

  /** Append whole lines. @throws when they could not be stored whole; the file is then as it was, or a fragment is left for the next write to cut and report. */
  write(line: string): void {
    if (this.#syncError !== undefined) throw new Error(`audit fsync failed (${errorCode(this.#syncError)})`, { cause: this.#syncError })
    if (this.#suspect) {
      if (this.#torn === undefined) this.#findTornTail()
      const torn = this.#torn
      // Never append to a fragment: one found now is cut only after the writer has reported it.
      if (torn !== undefined && !this.#cutTorn(torn)) throw new Error('the audit file ends mid-line; it is cut and recorded before the next line')
    }
    const bytes = Buffer.from(line, 'utf8')
    if (this.#size > 0 && this.#size + bytes.length > this.#maxBytes) this.#rotate()
    let written = 0
    try {
      written = writeSync(this.#fd, bytes)
      if (written !== bytes.length) throw new Error(`short audit write: ${written} of ${bytes.length} bytes`)
      if (this.#fsync === 'always') fsyncSync(this.#fd)
    } catch (error) {
      if (written > 0) this.#cutBack(bytes.subarray(0, written), error)
      throw error
    }
    this.#size += written
    this.#dirty = true
  }

  /** Cut the reported torn tail if the file still ends with it. */
  /** Several whole lines, in one write: stored whole or not at all, like one. */
  writeLines(text: string): void {
    this.write(text)
  }

  #cutTorn(torn: { from: number; to: number }): boolean {
    if (this.#repairs.length > 0) return false // reported, not yet taken by the writer
    const size = fstatSync(this.#fd).size
    this.#torn = undefined
    if (size !== torn.to) return false // changed since: look again before the next write
    ftruncateSync(this.#fd, torn.from)
    this.#size = torn.from
    this.#suspect = false
    return true
  }

  /** Undo the bytes of a write that failed part-way; if that is not possible, the next write finds them as a torn tail. */
  #cutBack(landed: Buffer, error: unknown): void {
    try {
      const size = fstatSync(this.#fd).size
      const from = size - landed.length
      if (from >= 0 && readAt(this.#fd, from, size).equals(landed)) {
        ftruncateSync(this.#fd, from)
        this.#repairs.push({ cause: 'write failed', from, to: size, bytes: landed.length, sha256: sha256(landed), error: errorCode(error) })
        return
      }
    } catch {
      // Reported below as a torn tail, or as a glued line if another writer came first.
    }
    this.#suspect = true
  }

  #syncLater(): void {
    if (!this.#dirty || this.#syncing) return
    this.#dirty = false
    this.#syncing = true
    const generation = this.#rotations
    fsync(this.#fd, (error) => {
      this.#syncing = false
      // Rotated or closed meanwhile: that descriptor had a synchronous fsync of its own.
      if (generation !== this.#rotations || this.#closed) return
      // Fail closed until an fsync succeeds again: what the disk lost cannot be known.
      this.#syncError = error ?? undefined
      if (error !== null) this.#dirty = true
    })
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
    this.#closed = true
    clearInterval(this.#timer)
    try {
      fsyncSync(this.#fd)
    } finally {
      closeSync(this.#fd)
    }
  }
}
