import type { FileHandle } from 'node:fs/promises'
import { resolve } from 'node:path'
import { SecurityError } from '../errors.js'
import { CursorCodec } from './cursor.js'
import { type LinePos, scanBackward, scanForward } from './file-scan.js'
import { openTrailFile, type TrailFile, TrailIndex } from './file-trail-index.js'
import { rangeFindings, rangeResult, type TrailPosition } from './range-verify.js'
import type { RangeVerification, TrailEntry, TrailPage, TrailQuery, TrailReader, TrailStats } from './trail.js'
import { inRange, matchesRecord, matchesText, needleOf, type TrailFilter, trailFilter, trailLimit } from './trail-filter.js'

export interface FileTrailReaderOptions {
  /** The live audit file; its rotated siblings (`<file>.<time>.<n>`) are read too. */
  readonly file: string
  /** The current audit key and the kept old ones. */
  readonly keys: readonly Buffer[]
  /** Bytes one query may read before it returns what it found (`searchedBackTo`). Default 64 MiB. */
  readonly scanBytes?: number
  /** Read size. Default 1 MiB. */
  readonly chunkBytes?: number
  /** A sparse index mark every this many lines. Default 1024. */
  readonly markEvery?: number
  /** Line hashes the verifier keeps for its anchor check. Default 100,000. */
  readonly maxSeen?: number
  /** Problems, gaps and trusted ranges the verifier keeps (the rest are counted). Default 1000. */
  readonly maxProblems?: number
  /** Principals whose last request is kept. Default 10,000. */
  readonly maxPrincipals?: number
  /** Distinct principals, tools and reasons counted per hour, each. Default 2000. */
  readonly maxKeysPerHour?: number
}

const MIB = 1024 * 1024
const CURSOR = { f: 'string', o: 'number', l: 'number' } as const

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`FileTrailReader: ${name} must be a whole number above 0 (got ${String(value)})`)
  return value
}

const parse = (text: string): Record<string, unknown> | undefined => {
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/**
 * The console's reader of a file trail: the live file and its rotated siblings, indexed as they
 * grow (see {@link TrailIndex}): each call first reads what was appended, noticing rotation by
 * inode. Queries scan backwards in chunks from the newest line (or a cursor, or the mark before
 * `to`), skip lines without the first filter value's bytes before parsing, and stop at `limit`
 * matches or after `scanBytes` read. Lines that are not JSON objects (torn) never match.
 * Read-only: never writes, locks or repairs the trail.
 * Does not check: lines whose `ts` is out of order by more than one mark (`markEvery` lines) when
 * a time range narrows a scan; the first call reads the whole trail before it answers.
 */
export class FileTrailReader implements TrailReader {
  readonly kind = 'file'
  readonly #index: TrailIndex
  readonly #cursors = new CursorCodec()
  readonly #scanBytes: number
  readonly #chunk: number
  #closed = false

  /** @throws Error on options that are not valid (no key, a short key, a bound below 1) */
  constructor(options: FileTrailReaderOptions) {
    if (options.keys.length === 0 || options.keys.some((k) => k.length < 32)) throw new Error('FileTrailReader: keys: at least one audit key of at least 32 bytes')
    this.#scanBytes = positive('scanBytes', options.scanBytes, 64 * MIB)
    this.#chunk = positive('chunkBytes', options.chunkBytes, MIB)
    this.#index = new TrailIndex({
      file: resolve(options.file),
      keys: [...options.keys],
      chunk: this.#chunk,
      markEvery: positive('markEvery', options.markEvery, 1024),
      maxSeen: positive('maxSeen', options.maxSeen, 100_000),
      maxProblems: positive('maxProblems', options.maxProblems, 1000),
      maxPrincipals: positive('maxPrincipals', options.maxPrincipals, 10_000),
      maxKeysPerHour: positive('maxKeysPerHour', options.maxKeysPerHour, 2000),
    })
  }

  async #fresh(): Promise<readonly TrailFile[]> {
    if (this.#closed) throw new SecurityError('ERR_INTERNAL', 'trail reader closed')
    await this.#index.refresh()
    return this.#index.files
  }

  #cursor(f: TrailFile, at: LinePos): string {
    return this.#cursors.encode({ f: f.id, o: at.offset, l: at.line })
  }

  /** A cursor's file (its index, oldest first) and line. @throws SecurityError ERR_INVALID_REQUEST */
  #position(files: readonly TrailFile[], cursor: unknown): { i: number; file: TrailFile; at: LinePos } {
    const c = this.#cursors.decode(cursor, CURSOR)
    const i = files.findIndex((f) => f.id === c.f)
    const file = files[i]
    if (file === undefined) throw new SecurityError('ERR_INVALID_REQUEST', 'invalid trail cursor: its file is no longer in the trail')
    if (c.l < 1 || c.l > file.lines || c.o >= file.size) throw new SecurityError('ERR_INVALID_REQUEST', 'invalid trail cursor: beyond the file')
    return { i, file, at: { offset: c.o, line: c.l } }
  }

  #entry(f: TrailFile, at: LinePos, record: Record<string, unknown>): TrailEntry {
    return { cursor: this.#cursor(f, at), where: `${this.#index.nameOf(f.id)}:${at.line}`, record: record as unknown as TrailEntry['record'] }
  }

  #newest(files: readonly TrailFile[]): string | undefined {
    const f = files.findLast((x) => x.lines > 0)
    return f === undefined ? undefined : this.#cursor(f, { offset: f.lastOffset, line: f.lines })
  }

  /** Parse a candidate line and keep it when it matches. */
  #match(filter: TrailFilter, buf: Buffer, s: number, e: number): Record<string, unknown> | undefined {
    if (filter.from !== undefined || filter.to !== undefined) {
      const ts = buf.toString('latin1', s + 7, s + 31)
      if (buf.toString('latin1', s, s + 7) === '{"ts":"' && !inRange(filter, ts)) return undefined
    }
    const raw = buf.toString('utf8', s, e)
    if (!matchesText(filter, raw)) return undefined
    const record = parse(raw)
    return record !== undefined && matchesRecord(filter, record) ? record : undefined
  }

  async query(q: TrailQuery): Promise<TrailPage> {
    const limit = trailLimit(q.limit)
    const filter = trailFilter(q)
    const files = await this.#fresh()
    const newest = this.#newest(files)
    if (q.after !== undefined) return this.#tail(files, filter, limit, this.#position(files, q.after), newest)
    const entries: TrailEntry[] = []
    // Where to start: before the cursor, else the end; a `to` moves it back to the mark past it.
    let start =
      q.before === undefined
        ? { i: files.length - 1, end: undefined as LinePos | undefined }
        : (() => {
            const p = this.#position(files, q.before)
            return { i: p.i, end: p.at as LinePos | undefined }
          })()
    const needle = needleOf(filter)
    let budget = this.#scanBytes
    let reached: { file: TrailFile; at: LinePos; ts: string | undefined } | undefined
    for (let i = start.i; i >= 0; i--) {
      const f = files[i]
      if (f === undefined || f.lines === 0) continue
      if (filter.from !== undefined && f.lastTs !== undefined && f.lastTs < filter.from) break
      let end: LinePos = i === start.i && start.end !== undefined ? start.end : { offset: f.size, line: f.lines + 1 }
      if (filter.to !== undefined) {
        const past = f.marks.findIndex((m) => m.ts !== undefined && m.ts >= (filter.to ?? ''))
        const mark = past < 0 ? undefined : f.marks[past + 1]
        if (past === 0 && f.firstTs !== undefined && f.firstTs >= filter.to) continue
        if (mark !== undefined && mark.offset < end.offset) end = mark
      }
      let floor = 0
      if (filter.from !== undefined) {
        const before = f.marks.findLastIndex((m) => m.ts !== undefined && m.ts < (filter.from ?? ''))
        floor = f.marks[before - 1]?.offset ?? 0
      }
      if (end.offset <= floor) continue
      const fh = await openTrailFile(f)
      if (fh === undefined) continue
      try {
        const r = await scanBackward(fh, floor, end.offset, end.line - 1, { chunk: this.#chunk, budget, needle }, (buf, s, e, at) => {
          const record = this.#match(filter, buf, s, e)
          if (record !== undefined) entries.push(this.#entry(f, at, record))
          return entries.length >= limit
        })
        budget -= r.bytes
        if (r.oldest !== undefined) reached = { file: f, at: r.oldest, ts: r.oldest.ts }
        if (entries.length >= limit) break
        if (r.stopped || budget <= 0) {
          if (reached === undefined || (reached.at.line === 1 && i === 0)) break
          return {
            entries,
            next: this.#cursor(reached.file, reached.at),
            ...(newest === undefined ? {} : { newest }),
            ...(reached.ts === undefined ? {} : { searchedBackTo: reached.ts }),
          }
        }
      } finally {
        await fh.close()
      }
      start = { i: i - 1, end: undefined }
    }
    const last = entries.at(-1)
    return { entries, ...(entries.length >= limit && last !== undefined ? { next: last.cursor } : {}), ...(newest === undefined ? {} : { newest }) }
  }

  /** Lines newer than a position, oldest first, up to `limit` or the scan budget. */
  async #tail(files: readonly TrailFile[], filter: TrailFilter, limit: number, from: { i: number; file: TrailFile; at: LinePos }, newest: string | undefined): Promise<TrailPage> {
    const entries: TrailEntry[] = []
    let budget = this.#scanBytes
    let stoppedAt: string | undefined
    for (let i = from.i; i < files.length && stoppedAt === undefined; i++) {
      const f = files[i]
      if (f === undefined) continue
      const fh = await openTrailFile(f)
      if (fh === undefined) continue
      try {
        const start = i === from.i ? from.at : { offset: 0, line: 1 }
        let last: LinePos | undefined
        const r = await scanForward(fh, start, f.size, { chunk: this.#chunk, budget, needle: needleOf(filter) }, (buf, s, e, at) => {
          if (i === from.i && at.offset === from.at.offset) return false // the cursor's own line
          const record = this.#match(filter, buf, s, e)
          if (record !== undefined) {
            entries.push(this.#entry(f, at, record))
            last = at
          }
          return entries.length >= limit
        })
        budget -= r.bytes
        // Continue after the last entry (limit), or after the last line read (budget).
        if (entries.length >= limit && last !== undefined) stoppedAt = this.#cursor(f, last)
        else if (r.stopped && r.last !== undefined) stoppedAt = this.#cursor(f, r.last)
      } finally {
        await fh.close()
      }
    }
    return { entries, ...(stoppedAt === undefined ? {} : { next: stoppedAt }), ...(newest === undefined ? {} : { newest }) }
  }

  async *export(q: Omit<TrailQuery, 'limit' | 'before' | 'after'>): AsyncIterable<string> {
    const filter = trailFilter(q)
    const files = [...(await this.#fresh())]
    const needle = needleOf(filter)
    for (const f of files) {
      if (filter.from !== undefined && f.lastTs !== undefined && f.lastTs < filter.from) continue
      if (filter.to !== undefined && f.firstTs !== undefined && f.firstTs >= filter.to) break
      const fh: FileHandle | undefined = await openTrailFile(f)
      if (fh === undefined) continue
      try {
        let at: LinePos = { offset: 0, line: 1 }
        if (filter.from !== undefined) {
          const before = f.marks.findLastIndex((m) => m.ts !== undefined && m.ts < (filter.from ?? ''))
          at = f.marks[before - 1] ?? at
        }
        for (;;) {
          const out: string[] = []
          const r = await scanForward(fh, at, f.size, { chunk: this.#chunk, budget: 4 * this.#chunk, needle }, (buf, s, e) => {
            if (this.#match(filter, buf, s, e) !== undefined) out.push(`${buf.toString('utf8', s, e)}\n`)
            return false
          })
          yield* out
          if (!r.stopped) break
          at = r.next
        }
      } finally {
        await fh.close()
      }
    }
  }

  async verify(from: string, to: string): Promise<RangeVerification> {
    const files = await this.#fresh()
    const a = this.#position(files, from)
    const b = this.#position(files, to)
    const order = new Map(files.map((f, i) => [f.id, i]))
    const pos = (file: string, line: number): TrailPosition => ({ file: order.get(file) ?? -1, line })
    if (a.i > b.i || (a.i === b.i && a.at.line > b.at.line)) throw new SecurityError('ERR_INVALID_REQUEST', 'verify: from is after to')
    if (files.slice(a.i, b.i + 1).some((f) => f.unverified)) return { status: 'pending', lines: 0, problems: [], gaps: [] }
    const v = this.#index.verifier
    const found = rangeFindings(v.report(), v.omitted, { file: a.i, line: a.at.line }, { file: b.i, line: b.at.line }, pos, (file, line) => `${this.#index.nameOf(file)}:${line}`)
    return rangeResult(
      found,
      found.trusted.reduce((n, t) => n + t.hi - t.lo + 1, 0),
    )
  }

  async stats(now: Date): Promise<TrailStats> {
    await this.#fresh()
    return this.#index.stats.stats(now)
  }

  async lastSeen(principals: readonly string[]): Promise<ReadonlyMap<string, string>> {
    await this.#fresh()
    return this.#index.lastSeen.get(principals)
  }

  async close(): Promise<void> {
    this.#closed = true
  }
}
