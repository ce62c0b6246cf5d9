import { type FileHandle, open, stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { trailFiles } from '../audit/audit-key.js'
import { ChainVerifier } from '../audit/chain-verifier.js'
import { scanForward } from './file-scan.js'
import { LastSeenIndex, StatsIndex } from './trail-stats.js'

/** A sparse index mark: where line `line` starts, and its `ts` (the last one seen before it when it has none). */
export interface Mark {
  readonly offset: number
  readonly line: number
  readonly ts: string | undefined
}

/** One file of the trail as read so far. */
export interface TrailFile {
  /** `<dev>.<ino>.<generation>`: stable across a rename; a new generation when the file shrank. */
  readonly id: string
  readonly dev: number
  readonly ino: number
  readonly gen: number
  path: string
  /** Bytes of whole lines read (the start of what follows the last newline). */
  size: number
  lines: number
  /** The last whole line's start, and its ts. */
  lastOffset: number
  lastTs: string | undefined
  firstTs: string | undefined
  readonly marks: Mark[]
  /** Rotated away and read to its end. */
  done: boolean
  /** Appeared older than files already read: searchable, but not fed to the verifier. */
  unverified: boolean
}

export interface IndexOptions {
  readonly file: string
  readonly keys: readonly Buffer[]
  readonly chunk: number
  readonly markEvery: number
  readonly maxSeen: number
  readonly maxProblems: number
  readonly maxPrincipals: number
  readonly maxKeysPerHour: number
}

/** Open a trail file, checking it is still the one indexed (not a new file under its name). Undefined when gone. */
export async function openTrailFile(f: TrailFile): Promise<FileHandle | undefined> {
  let fh: FileHandle
  try {
    fh = await open(f.path, 'r')
  } catch {
    return undefined
  }
  const s = await fh.stat()
  if (s.dev === f.dev && s.ino === f.ino) return fh
  await fh.close()
  return undefined
}

/**
 * The incremental index of a file trail (the live file and its rotated siblings): each `refresh`
 * reads only what was appended since the last, follows renames by inode, and feeds every new line
 * to the chain verifier, the statistics and the last-seen index. Memory is bounded: a mark every
 * `markEvery` lines, fixed statistics buckets, capped counters and a bounded verifier.
 * Does not check: a file replaced by another with the same inode and a larger size; files that
 * appear older than files already read (restored from a backup) are searched but not verified.
 */
export class TrailIndex {
  readonly verifier: ChainVerifier
  readonly stats: StatsIndex
  readonly lastSeen: LastSeenIndex
  /** Oldest first. */
  files: TrailFile[] = []
  /** Names of files once read (also of files gone since), by id, for problems' `where`. */
  readonly #names = new Map<string, string>()
  #verifierFile: TrailFile | undefined
  #running: Promise<void> | undefined

  constructor(private readonly o: IndexOptions) {
    this.verifier = new ChainVerifier(o.keys, { maxSeen: o.maxSeen, maxProblems: o.maxProblems, maxGaps: o.maxProblems, maxTrusted: o.maxProblems })
    this.stats = new StatsIndex(o.maxKeysPerHour)
    this.lastSeen = new LastSeenIndex(o.maxPrincipals)
  }

  nameOf(id: string): string {
    return this.#names.get(id) ?? id
  }

  /** Read what was appended since the last call (one refresh at a time; callers share it). */
  refresh(): Promise<void> {
    this.#running ??= this.#refresh().finally(() => {
      this.#running = undefined
    })
    return this.#running
  }

  async #refresh(): Promise<void> {
    const known = new Map(this.files.map((f) => [`${f.dev}.${f.ino}`, f]))
    const next: TrailFile[] = []
    const fresh = new Set<TrailFile>()
    for (const path of trailFiles(this.o.file).reverse()) {
      let s: { dev: number; ino: number; size: number }
      try {
        s = await stat(path)
      } catch {
        continue // rotated or removed meanwhile: found under its new name next time
      }
      let f = known.get(`${s.dev}.${s.ino}`)
      if (f !== undefined && s.size < f.size) {
        // Cut below what was read: its lines are not the ones indexed; read it again as a new file.
        f = this.#newFile(s, path, f.gen + 1)
        fresh.add(f)
      } else if (f === undefined) {
        f = this.#newFile(s, path, 0)
        fresh.add(f)
      }
      f.path = path
      this.#names.set(f.id, basename(path))
      next.push(f)
    }
    // A new file older than one already fed to the verifier cannot be verified in order.
    let fedLater = false
    for (let i = next.length - 1; i >= 0; i--) {
      const f = next[i]
      if (f === undefined) continue
      if (fresh.has(f)) f.unverified = fedLater
      else if (!f.unverified) fedLater = true
    }
    this.files = next
    for (const f of next) {
      if (f.done) continue
      await this.#read(f, f.path !== this.o.file)
    }
  }

  #newFile(s: { dev: number; ino: number }, path: string, gen: number): TrailFile {
    return {
      id: `${s.dev}.${s.ino}.${gen}`,
      dev: s.dev,
      ino: s.ino,
      gen,
      path,
      size: 0,
      lines: 0,
      lastOffset: 0,
      lastTs: undefined,
      firstTs: undefined,
      marks: [],
      done: false,
      unverified: false,
    }
  }

  /** Index `f` from where it was left; `rotated`: it will not grow again, so it is ended. */
  async #read(f: TrailFile, rotated: boolean): Promise<void> {
    const fh = await openTrailFile(f)
    if (fh === undefined) return
    const verify = !f.unverified
    if (verify && this.#verifierFile !== f) {
      this.#verifierFile = f
      this.verifier.beginFile(f.id)
    }
    try {
      const end = (await fh.stat()).size
      const every = this.o.markEvery
      const result = await scanForward(fh, { offset: f.size, line: f.lines + 1 }, end, { chunk: this.o.chunk, budget: Number.POSITIVE_INFINITY }, (buf, s, e, at) => {
        const text = buf.toString('utf8', s, e)
        const r = verify ? this.verifier.line(text, at.line) : parseObject(text)
        const ts = typeof r?.ts === 'string' ? r.ts : undefined
        if (ts !== undefined) {
          f.firstTs ??= ts
          f.lastTs = ts
        }
        if (at.line % every === 1 || every === 1) f.marks.push({ offset: at.offset, line: at.line, ts: ts ?? f.lastTs })
        f.lastOffset = at.offset
        f.lines = at.line
        if (r !== undefined) {
          this.stats.add(r)
          if (typeof r.principal === 'string' && typeof r.requestId === 'string' && ts !== undefined) this.lastSeen.add(r.principal, ts)
        }
        return false
      })
      f.size = result.next.offset
      if (rotated) {
        f.done = true
        if (verify) this.verifier.endFile(result.partial.toString('utf8'))
      }
    } finally {
      await fh.close()
    }
  }
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}
