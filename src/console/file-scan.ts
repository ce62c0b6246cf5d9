import type { FileHandle } from 'node:fs/promises'

/** A line's place in a file: its first byte and its 1-based number. */
export interface LinePos {
  readonly offset: number
  readonly line: number
}

/** Called with a whole line `buf[start, end)` (without its newline); return true to stop. */
export type LineVisitor = (buf: Buffer, start: number, end: number, pos: LinePos) => boolean | undefined

/** Longer lines are cut to this (they are not audit lines; the verifier reports them). */
export const MAX_LINE = 16 * 1024 * 1024
const NEWLINE = 0x0a

async function readRange(fh: FileHandle, from: number, to: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(to - from)
  let done = 0
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, from + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return buf.subarray(0, done)
}

/** Sorted offsets of `needle` in `buf` (every line that could match holds one). */
function occurrences(buf: Buffer, needle: Buffer | undefined): number[] | undefined {
  if (needle === undefined) return undefined
  const at: number[] = []
  for (let i = buf.indexOf(needle); i >= 0; i = buf.indexOf(needle, i + 1)) at.push(i)
  return at
}

export interface ScanOptions {
  readonly chunk: number
  /** Stop after reading about this many bytes (whole chunks). */
  readonly budget: number
  /** Only lines holding these bytes are visited (a pre-check: the visitor still decides). */
  readonly needle?: Buffer | undefined
}

export interface ForwardResult {
  /** The next line not visited (where to continue), or where the whole lines end. */
  readonly next: LinePos
  /** The last whole line read (visited or passed). */
  readonly last: LinePos | undefined
  readonly bytes: number
  /** Stopped by the visitor or the budget before `to`. */
  readonly stopped: boolean
  /** What followed the last newline before `to` (only when the scan reached `to`). */
  readonly partial: Buffer
}

/**
 * Visit the whole lines of `[from.offset, to)` in order, `from` being the start of a line; reads
 * `chunk` bytes at a time. A line longer than {@link MAX_LINE} is visited cut to that length.
 */
export async function scanForward(fh: FileHandle, from: LinePos, to: number, opts: ScanOptions, visit: LineVisitor): Promise<ForwardResult> {
  let pos = from.offset
  let line = from.line
  let carry: Buffer = Buffer.alloc(0)
  let carryAt = pos // file offset of carry[0]
  let skipping = false // inside a line longer than MAX_LINE, already visited
  let bytes = 0
  let last: LinePos | undefined
  while (pos < to) {
    const chunk = await readRange(fh, pos, Math.min(to, pos + opts.chunk))
    if (chunk.length === 0) break
    pos += chunk.length
    bytes += chunk.length
    const buf = carry.length === 0 ? chunk : Buffer.concat([carry, chunk])
    const base = carryAt
    const hits = occurrences(buf, opts.needle)
    let h = 0
    let s = 0
    for (let nl = buf.indexOf(NEWLINE); nl >= 0; nl = buf.indexOf(NEWLINE, s)) {
      const at = { offset: base + s, line }
      last = at
      line += 1
      const start = s
      s = nl + 1
      if (skipping) {
        skipping = false
        continue
      }
      if (hits !== undefined) {
        while (h < hits.length && (hits[h] ?? 0) < start) h += 1
        const hit = hits[h]
        if (hit === undefined || hit + (opts.needle?.length ?? 0) > nl) continue
      }
      if (visit(buf, start, nl, at) === true) return { next: { offset: base + s, line }, last, bytes, stopped: true, partial: Buffer.alloc(0) }
    }
    carry = buf.subarray(s)
    carryAt = base + s
    if (carry.length > MAX_LINE && !skipping) {
      visit(carry, 0, MAX_LINE, { offset: carryAt, line })
      skipping = true
    }
    if (skipping) carry = Buffer.alloc(0)
    if (bytes >= opts.budget && pos < to) return { next: { offset: carryAt, line }, last, bytes, stopped: true, partial: Buffer.alloc(0) }
  }
  return { next: { offset: carryAt, line }, last, bytes, stopped: false, partial: carry }
}

export interface BackwardResult {
  /** The oldest line reached (visited or passed), with its `ts` when it starts with one. */
  readonly oldest: (LinePos & { readonly ts: string | undefined }) | undefined
  readonly bytes: number
  /** Stopped by the visitor or the budget before `floor`. */
  readonly stopped: boolean
}

const tsAt = (buf: Buffer, start: number): string | undefined =>
  buf[start] === 0x7b && buf.toString('latin1', start, start + 7) === '{"ts":"' ? buf.toString('latin1', start + 7, start + 31) : undefined

/**
 * Visit the whole lines of `[floor, end)` newest first: `end` is just past a newline and `last`
 * the number of the line ending there; `floor` is the start of a line.
 */
export async function scanBackward(fh: FileHandle, floor: number, end: number, last: number, opts: ScanOptions, visit: LineVisitor): Promise<BackwardResult> {
  let pos = end
  let line = last
  let carry: Buffer = Buffer.alloc(0)
  let bytes = 0
  let oldest: BackwardResult['oldest']
  while (pos > floor) {
    const cstart = Math.max(floor, pos - opts.chunk)
    const chunk = await readRange(fh, cstart, pos)
    bytes += chunk.length
    pos = cstart
    // The buffer ends with a newline: the end of the newest line not yet visited.
    const buf = carry.length === 0 ? chunk : Buffer.concat([chunk, carry])
    const hits = occurrences(buf, opts.needle)
    let h = (hits?.length ?? 0) - 1
    let e = buf.length - 1
    while (e >= 0) {
      const nl = e === 0 ? -1 : buf.lastIndexOf(NEWLINE, e - 1)
      if (nl < 0 && cstart > floor) break // the line starts in an earlier chunk
      const start = nl + 1
      const at = { offset: cstart + start, line }
      line -= 1
      oldest = { ...at, ts: tsAt(buf, start) }
      let candidate = true
      if (hits !== undefined) {
        while (h >= 0 && (hits[h] ?? 0) + (opts.needle?.length ?? 0) > e) h -= 1
        candidate = h >= 0 && (hits[h] ?? 0) >= start
      }
      if (candidate && visit(buf, start, Math.min(e, start + MAX_LINE), at) === true) return { oldest, bytes, stopped: true }
      e = nl
    }
    if (e < 0) carry = Buffer.alloc(0)
    else carry = buf.subarray(0, e + 1)
    if (bytes >= opts.budget && pos > floor) return { oldest, bytes, stopped: true }
  }
  return { oldest, bytes, stopped: false }
}
