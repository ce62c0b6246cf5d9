import { createHash } from 'node:crypto'
import { auditKeyId, macNextProblem, macProblem, sealsOf } from './key-id.js'

/** `prev` of a writer's first line when the file was empty. */
export const GENESIS = '0'.repeat(64)

export const lineHash = (line: string): string => createHash('sha256').update(line).digest('hex')

/** What kind of damage a problem is: a torn line is a crash or a failed write, the rest are edits. */
export type ProblemKind = 'torn tail' | 'torn' | 'glued' | 'forged' | 'deleted' | 'duplicated' | 'after close' | 'relinked' | 'malformed'

export interface VerifyProblem {
  readonly file: string
  readonly line: number
  readonly kind: ProblemKind
  readonly reason: string
}

/** An `audit.repaired` line: bytes a writer cut to keep lines whole, or lines it could not store. Reported, not a problem. */
export interface VerifyGap {
  readonly file: string
  readonly line: number
  readonly writer: string
  readonly detail: string
}

/** Lines `from`–`to` (1-based, inclusive) of `file` verify: each line's MAC and its links. */
export interface TrustedRange {
  readonly file: string
  readonly from: number
  readonly to: number
}

export interface VerifyReport {
  readonly ok: boolean
  /** Lines that verify. */
  readonly lines: number
  readonly writers: number
  /** Writers whose last line is not `audit.closed`: still running, crashed, or the tail was cut. */
  readonly open: readonly string[]
  /** Every problem, in file order. */
  readonly problems: readonly VerifyProblem[]
  /** The first of them. */
  readonly problem?: VerifyProblem
  readonly gaps: readonly VerifyGap[]
  readonly trusted: readonly TrustedRange[]
}

/** Bounds for a long-running verifier (the operator console); every bound defaults to none (`audit verify`). */
export interface ChainVerifierOptions {
  /**
   * Keep the hashes of only the most recent this-many verified lines, for the check that a new
   * writer is anchored to a line that is here. Once one was dropped, that check is skipped.
   */
  readonly maxSeen?: number
  /** Keep the first this-many problems, gaps and trusted ranges; the rest are counted ({@link ChainVerifier.omitted}). */
  readonly maxProblems?: number
  readonly maxGaps?: number
  readonly maxTrusted?: number
}

/** What a bounded verifier counted but did not keep, and where the first of each was. */
export interface VerifierOmissions {
  readonly problems: number
  readonly gaps: number
  readonly trusted: number
  /** The position of the first problem, gap or trusted range not kept: reports from there on are incomplete. */
  readonly from?: { readonly file: string; readonly line: number }
}

type Chained = { wid?: unknown; seq?: unknown; prev?: unknown; event?: unknown; [field: string]: unknown }
type WriterState = { seq: number; hash: string; closed: boolean; bad: number; kid: string | undefined }

/** The text of a gap an `audit.repaired` line records. */
function gapDetail(r: Chained): string {
  const hash = typeof r.sha256 === 'string' ? `, sha256 ${r.sha256.slice(0, 16)}…` : ''
  if (r.cause === 'torn tail') return `torn tail of ${String(r.bytes)} bytes (bytes ${String(r.from)}–${String(r.to)}${hash}) cut and sealed: not a line, never accepted`
  const cuts = Array.isArray(r.cuts) ? r.cuts.length + (typeof r.cutsOmitted === 'number' ? r.cutsOmitted : 0) : 0
  return `${String(r.refused)} line(s) not stored from ${String(r.since)} to ${String(r.ts)} (${String(r.error)}): their requests were refused; ${cuts} partial write(s) cut back`
}

/** JSON.parse, or undefined when the text is not JSON. */
function tryParse(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown
  } catch {
    return undefined
  }
}

const isObject = (v: unknown): v is Chained => typeof v === 'object' && v !== null

/**
 * The audit verifier, fed one line at a time: `beginFile`, then `line` for each whole line, then
 * `endFile` with what followed the last newline. Files in writing order (rotation continues chains
 * across files). Reports every line that was edited or forged (MAC), deleted (a sequence gap),
 * inserted or duplicated, reordered, or relinked, and every torn line (a crash or a failed write
 * mid-line), and keeps going: after a bad line it resynchronises on the next line whose MAC
 * verifies (a writer's next line may then skip as many sequence numbers as there were bad lines,
 * since those may have been its own). `audit.repaired` lines are reported as gaps, not problems:
 * sealed records of what was cut. Each writer's lines are checked under the key its `audit.opened`
 * line names by id (`kid`), and after an `audit.key-rotated` hand-over under the new one: a key id
 * not among the keys is "wrong key", a MAC that fails under a key held is forged. Writers that
 * declare no key id (lines from before key ids) are tried under every key given.
 * Memory grows with the writers, and with the line hashes, problems, gaps and trusted ranges
 * unless bounded ({@link ChainVerifierOptions}).
 * Does not check: lines cut from the very end at a line boundary (the writer then shows as open),
 * whole writers removed together with every line that came after them, nor which writer a torn
 * or forged line belonged to (so a deletion right beside one is taken for it). With `maxSeen`,
 * once a hash was dropped: that a new writer's first line is anchored to a line that is here
 * (a deletion just before a new writer then goes unreported).
 */
export class ChainVerifier {
  readonly #keys: ReadonlyMap<string, Buffer>
  readonly #maxSeen: number
  readonly #maxProblems: number
  readonly #maxGaps: number
  readonly #maxTrusted: number
  readonly #writers = new Map<string, WriterState>()
  /** Hashes of verified lines (how many times each is held); with `maxSeen`, the most recent in a ring. */
  readonly #seen = new Map<string, number>([[GENESIS, 1]])
  readonly #ring: string[] = []
  #ringAt = 0
  #seenDropped = false
  readonly #problems: VerifyProblem[] = []
  readonly #gaps: VerifyGap[] = []
  readonly #trusted: TrustedRange[] = []
  #omitted: { problems: number; gaps: number; trusted: number; from?: { file: string; line: number } } = { problems: 0, gaps: 0, trusted: 0 }
  #count = 0
  /** Lines that did not verify so far. */
  #bad = 0
  /** The key id each writer declared, kept even when its opening line did not verify (a wrong key). */
  readonly #declared = new Map<string, string>()
  #file = ''
  #lastLine = 0
  #run: { from: number; to: number } | undefined

  constructor(key: Buffer | readonly Buffer[], options: ChainVerifierOptions = {}) {
    // Each writer declares the key it seals under (key-id.ts): the current key and kept old ones.
    this.#keys = new Map((Buffer.isBuffer(key) ? [key] : key).map((k) => [auditKeyId(k), k]))
    this.#maxSeen = options.maxSeen ?? Number.POSITIVE_INFINITY
    this.#maxProblems = options.maxProblems ?? Number.POSITIVE_INFINITY
    this.#maxGaps = options.maxGaps ?? Number.POSITIVE_INFINITY
    this.#maxTrusted = options.maxTrusted ?? Number.POSITIVE_INFINITY
  }

  /** Lines that verify so far. */
  get lines(): number {
    return this.#count
  }

  /** What was counted but not kept (all zero when unbounded). */
  get omitted(): VerifierOmissions {
    return { ...this.#omitted }
  }

  /** Start the next file; `name` is what problems, gaps and ranges name it by. */
  beginFile(name: string): void {
    this.#endRun()
    this.#file = name
    this.#lastLine = 0
  }

  /**
   * One whole line (without its newline) at line number `at` of the current file.
   * @returns the line parsed, when it is a JSON object (whether it verifies or not)
   */
  line(text: string, at: number): Chained | undefined {
    this.#lastLine = at
    let raw = text
    let parsed: unknown
    let parsedDone = false
    const parsedRaw = (): unknown => {
      if (!parsedDone) {
        parsed = tryParse(text)
        parsedDone = true
      }
      return parsed
    }
    const result = (): Chained | undefined => {
      const v = parsedRaw()
      return isObject(v) ? v : undefined
    }
    const macOf = (line: string): string | undefined =>
      sealsOf(line) === undefined ? 'not sealed' : macProblem(this.#keys, this.#kidOf(line === text ? parsedRaw() : tryParse(line)), line)
    if (macOf(raw) !== undefined) {
      // A write that failed part-way, then the next line appended to it: the end verifies alone.
      const glued = raw.indexOf('{"ts":"', 1) < 0 ? undefined : [...raw.matchAll(/\{"ts":"/g)].map((m) => m.index).find((k) => k > 0 && macOf(raw.slice(k)) === undefined)
      if (glued !== undefined) {
        this.#problem(
          at,
          'glued',
          `a torn line of ${Buffer.byteLength(raw.slice(0, glued))} bytes (a write that failed part-way) with the next line appended to it; that next line verifies`,
        )
        raw = raw.slice(glued)
      } else if (sealsOf(raw) !== undefined) {
        this.#problem(at, 'forged', macOf(raw) ?? 'MAC does not match')
        return result()
      } else {
        this.#problem(at, 'torn', `not a sealed audit line (${Buffer.byteLength(raw)} bytes, no MAC): torn by a crash or a failed write, or written by something else`)
        return result()
      }
    }
    const value = raw === text ? parsedRaw() : tryParse(raw)
    if (value === undefined) {
      this.#problem(at, 'malformed', 'not valid JSON')
      return result()
    }
    const record: Chained = isObject(value) ? value : {}
    const { wid, seq, prev } = record
    if (typeof wid !== 'string' || typeof seq !== 'number' || typeof prev !== 'string') {
      this.#problem(at, 'malformed', 'chain fields missing')
      return result()
    }
    const writers = this.#writers
    // A hand-over (MACed by both keys): the writer seals under the new key from the next line on.
    let nextKid = writers.get(wid)?.kid ?? (typeof record.kid === 'string' ? record.kid : undefined)
    if (record.event === 'audit.key-rotated' && raw.includes(',"macNext":"')) {
      const { newKid } = record
      const badNext = typeof newKid !== 'string' ? 'a key hand-over without newKid' : macNextProblem(this.#keys, newKid, raw)
      if (badNext !== undefined || typeof newKid !== 'string') {
        this.#problem(at, 'forged', badNext ?? 'a key hand-over without newKid')
        return result()
      }
      nextKid = newKid
    }
    const state = writers.get(wid)
    // Sequence numbers the bad lines since this writer's last good line may account for.
    const allowance = this.#bad - (state?.bad ?? 0)
    if (state === undefined) {
      if (seq - 1 > allowance)
        this.#problem(at, 'deleted', `writer ${wid} starts at seq ${seq}: its first ${seq - 1} line(s) are missing (deleted, or an earlier file was not given)`, true)
      else if (!this.#seenDropped && !this.#seen.has(prev) && this.#bad === 0)
        this.#problem(at, 'deleted', `writer ${wid} is anchored to a line that is not here (lines deleted before it)`, true)
    } else if (state.closed) {
      this.#problem(at, 'after close', `writer ${wid} wrote after closing: an inserted or replayed line`)
      return result()
    } else if (seq <= state.seq) {
      this.#problem(at, 'duplicated', `seq ${seq} after ${state.seq} for writer ${wid}: lines reordered or duplicated`)
      return result()
    } else if (seq - state.seq - 1 > allowance) {
      this.#problem(at, 'deleted', `seq ${seq} after ${state.seq} for writer ${wid}: ${seq - state.seq - 1} line(s) deleted before this one`, true)
    } else if (seq === state.seq + 1 && prev !== state.hash) {
      this.#problem(at, 'relinked', `the link to writer ${wid}'s previous line is broken: a line before this one was replaced`)
      return result()
    }
    const hash = lineHash(raw)
    writers.set(wid, { seq, hash, closed: record.event === 'audit.closed', bad: this.#bad, kid: nextKid })
    this.#see(hash)
    this.#count += 1
    if (this.#run === undefined) this.#run = { from: at, to: at }
    else this.#run.to = at
    if (record.event === 'audit.repaired') {
      if (this.#gaps.length < this.#maxGaps) this.#gaps.push({ file: this.#file, line: at, writer: wid, detail: gapDetail(record) })
      else this.#omit('gaps', at)
    }
    return result()
  }

  /** The current file ends; `trailingPartial` is what followed its last newline (a torn tail unless empty). */
  endFile(trailingPartial: string): void {
    this.#endRun()
    if (trailingPartial !== '')
      this.#keep({
        file: this.#file,
        line: this.#lastLine + 1,
        kind: 'torn tail',
        reason: `torn tail: ${Buffer.byteLength(trailingPartial)} bytes after line ${this.#lastLine}, not sealed (a crash or a failed write mid-line; the next writer cuts it and records an audit.repaired line)`,
      })
  }

  /** The report so far (a file not yet ended counts with its lines so far). */
  report(): VerifyReport {
    const trusted = this.#run === undefined ? [...this.#trusted] : [...this.#trusted, { file: this.#file, ...this.#run }]
    const open = [...this.#writers.entries()].filter(([, s]) => !s.closed).map(([w]) => w)
    const problems = [...this.#problems]
    // No MAC matches at all: one problem, not one per line (a wrong key, or nothing is genuine).
    const head = problems[0]
    if (this.#count === 0 && head !== undefined && problems.length > 1 && problems.every((p) => p.kind === 'forged')) {
      const reason = head.reason.startsWith('wrong key')
        ? `${head.reason}; so are all ${problems.length} lines`
        : `MAC does not match on any of the ${problems.length} lines: this is not the audit key, or every line was forged`
      problems.splice(0, problems.length, { ...head, reason })
    }
    const first = problems[0]
    return {
      ok: first === undefined,
      lines: this.#count,
      writers: this.#writers.size,
      open,
      problems,
      ...(first === undefined ? {} : { problem: first }),
      gaps: [...this.#gaps],
      trusted,
    }
  }

  /** The key a line's writer seals under: its last hand-over's, else the one it declared. */
  #kidOf(parsed: unknown): string | undefined {
    if (!isObject(parsed) || typeof parsed.wid !== 'string') return undefined
    if (typeof parsed.kid === 'string' && !this.#declared.has(parsed.wid)) this.#declared.set(parsed.wid, parsed.kid)
    const known = this.#writers.get(parsed.wid)
    return known !== undefined ? known.kid : this.#declared.get(parsed.wid)
  }

  #see(hash: string): void {
    this.#seen.set(hash, (this.#seen.get(hash) ?? 0) + 1)
    if (this.#maxSeen === Number.POSITIVE_INFINITY) return
    // A ring, not the Map's insertion order: taking a Map's first key after many deletions walks them all.
    if (this.#ring.length < this.#maxSeen) {
      this.#ring.push(hash)
      return
    }
    const oldest = this.#ring[this.#ringAt] ?? GENESIS
    this.#ring[this.#ringAt] = hash
    this.#ringAt = (this.#ringAt + 1) % this.#maxSeen
    const held = (this.#seen.get(oldest) ?? 1) - 1
    if (held > 0) this.#seen.set(oldest, held)
    else this.#seen.delete(oldest)
    this.#seenDropped = true
  }

  #problem(line: number, kind: ProblemKind, reason: string, lineTrusted = false): void {
    this.#keep({ file: this.#file, line, kind, reason })
    this.#endRun()
    if (!lineTrusted) this.#bad += 1
  }

  #keep(problem: VerifyProblem): void {
    if (this.#problems.length < this.#maxProblems) this.#problems.push(problem)
    else this.#omit('problems', problem.line)
  }

  #endRun(): void {
    const run = this.#run
    this.#run = undefined
    if (run === undefined) return
    if (this.#trusted.length < this.#maxTrusted) this.#trusted.push({ file: this.#file, ...run })
    else this.#omit('trusted', run.from)
  }

  #omit(what: 'problems' | 'gaps' | 'trusted', line: number): void {
    this.#omitted[what] += 1
    this.#omitted.from ??= { file: this.#file, line }
  }
}
