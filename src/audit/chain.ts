import { createHash, createHmac, randomBytes } from 'node:crypto'
import { auditKeyId, macNextProblem, macProblem, sealHandOver, sealsOf } from './key-id.js'

/** `prev` of a writer's first line when the file was empty. */
export const GENESIS = '0'.repeat(64)

export const lineHash = (line: string): string => createHash('sha256').update(line).digest('hex')
const mac = (key: Buffer, text: string): string => createHmac('sha256', key).update(text).digest('hex')

/**
 * The hash chain of one writer (one AuditLog: the server, or a CLI command). Every line gets the
 * writer id, a sequence number, the hash of this writer's previous line (the first line: of the
 * file's last line when the writer started) and an HMAC-SHA256 over all of that under the audit
 * key. Editing, deleting, inserting or reordering a line breaks a MAC, a sequence or a link.
 * Does not check: anything at write time; `verifyAudit` reads it back.
 */
export class AuditChain {
  readonly writer = randomBytes(4).toString('hex')
  #key: Buffer
  #seq = 0
  #prev: string

  /** @param anchor the last whole line already in the file, if any */
  constructor(key: Buffer, anchor: string | undefined) {
    if (key.length < 32) throw new Error('the audit key must be at least 32 bytes')
    this.#key = key
    this.#prev = anchor === undefined ? GENESIS : lineHash(anchor)
  }

  get seq(): number {
    return this.#seq
  }

  /** The id of the key this writer seals under (key-id.ts), for its `audit.opened` line. */
  get kid(): string {
    return auditKeyId(this.#key)
  }

  /**
   * Seal one JSON object line (with its newline): the chain fields, then the MAC last. The chain
   * advances only on `commit()`, after the line is safely written: a failed write leaves no gap.
   * With `next` (an `audit.key-rotated` line) the line is MACed by both keys (key-id.ts) and the
   * writer seals under `next` from the following line on.
   */
  seal(jsonLine: string, next?: Buffer): { line: string; commit: () => void } {
    const sealed = this.sealAll([jsonLine], next)
    return { line: sealed.text, commit: sealed.commit }
  }

  /**
   * Seal lines that are written together (one write), each linked to the one before it; with
   * `next`, the last of them is the hand-over (see {@link seal}).
   */
  sealAll(jsonLines: readonly string[], next?: Buffer): { text: string; commit: () => void } {
    let seq = this.#seq
    let prev = this.#prev
    let text = ''
    jsonLines.forEach((jsonLine, i) => {
      const body = jsonLine.slice(0, jsonLine.lastIndexOf('}'))
      seq += 1
      const chained = `${body},"wid":"${this.writer}","seq":${seq},"prev":"${prev}"`
      const handOver = next !== undefined && i === jsonLines.length - 1
      const line = handOver ? sealHandOver(chained, this.#key, next) : `${chained},"mac":"${mac(this.#key, `${chained}}`)}"}`
      text += `${line}\n`
      prev = lineHash(line)
    })
    return {
      text,
      commit: () => {
        this.#seq = seq
        this.#prev = prev
        if (next !== undefined) this.#key = next
      },
    }
  }
}

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

type Chained = { wid?: unknown; seq?: unknown; prev?: unknown; event?: unknown; [field: string]: unknown }

/** The text of a gap an `audit.repaired` line records. */
function gapDetail(r: Chained): string {
  const hash = typeof r.sha256 === 'string' ? `, sha256 ${r.sha256.slice(0, 16)}…` : ''
  if (r.cause === 'torn tail') return `torn tail of ${String(r.bytes)} bytes (bytes ${String(r.from)}–${String(r.to)}${hash}) cut and sealed: not a line, never accepted`
  const cuts = Array.isArray(r.cuts) ? r.cuts.length + (typeof r.cutsOmitted === 'number' ? r.cutsOmitted : 0) : 0
  return `${String(r.refused)} line(s) not stored from ${String(r.since)} to ${String(r.ts)} (${String(r.error)}): their requests were refused; ${cuts} partial write(s) cut back`
}

/**
 * Verify audit files in order (rotation continues chains across files). Reports every line that
 * was edited or forged (MAC), deleted (a sequence gap), inserted or duplicated, reordered, or
 * relinked, and every torn line (a crash or a failed write mid-line), and keeps going: after a
 * bad line it resynchronises on the next line whose MAC verifies (a writer's next line may then
 * skip as many sequence numbers as there were bad lines, since those may have been its own).
 * `audit.repaired` lines are reported as gaps, not problems: sealed records of what was cut.
 * Each writer's lines are checked under the key its `audit.opened` line names by id (`kid`), and
 * after an `audit.key-rotated` hand-over under the new one: a key id not among `key` is "wrong
 * key", a MAC that fails under a key held is forged. Writers that declare no key id (lines from
 * before key ids) are tried under every key given.
 * Does not check: lines cut from the very end at a line boundary (the writer then shows as open),
 * whole writers removed together with every line that came after them, nor which writer a torn
 * or forged line belonged to (so a deletion right beside one is taken for it).
 */
export function verifyAudit(files: readonly { name: string; text: string }[], key: Buffer | readonly Buffer[]): VerifyReport {
  // Each writer declares the key it seals under (key-id.ts): the current key and kept old ones.
  const keys = new Map((Buffer.isBuffer(key) ? [key] : key).map((k) => [auditKeyId(k), k]))
  const writers = new Map<string, { seq: number; hash: string; closed: boolean; bad: number; kid: string | undefined }>()
  const seen = new Set<string>([GENESIS])
  const problems: VerifyProblem[] = []
  const gaps: VerifyGap[] = []
  const trusted: TrustedRange[] = []
  let count = 0
  let bad = 0 // lines that did not verify so far
  // The key id each writer declared, kept even when its opening line did not verify (a wrong key).
  const declared = new Map<string, string>()
  /** The key a line's writer seals under: its last hand-over's, else the one it declared. */
  const kidOf = (raw: string): string | undefined => {
    try {
      const r = JSON.parse(raw) as { wid?: unknown; kid?: unknown }
      if (typeof r.wid !== 'string') return undefined
      if (typeof r.kid === 'string' && !declared.has(r.wid)) declared.set(r.wid, r.kid)
      const known = writers.get(r.wid)
      return known !== undefined ? known.kid : declared.get(r.wid)
    } catch {
      return undefined
    }
  }
  /** Why a line does not verify under the keys held, or undefined when it does. */
  const macOf = (raw: string): string | undefined => (sealsOf(raw) === undefined ? 'not sealed' : macProblem(keys, kidOf(raw), raw))
  const verifies = (raw: string): boolean => macOf(raw) === undefined
  for (const { name, text } of files) {
    const lines = text.split('\n')
    const last = lines.pop() ?? ''
    let run: { from: number; to: number } | undefined
    const endRun = (): void => {
      if (run !== undefined) trusted.push({ file: name, ...run })
      run = undefined
    }
    const problem = (line: number, kind: ProblemKind, reason: string, lineTrusted = false): void => {
      problems.push({ file: name, line, kind, reason })
      endRun()
      if (!lineTrusted) bad += 1
    }
    for (let i = 0; i < lines.length; i++) {
      let raw = lines[i] ?? ''
      const at = i + 1
      if (!verifies(raw)) {
        // A write that failed part-way, then the next line appended to it: the end verifies alone.
        const glued = raw.indexOf('{"ts":"', 1) < 0 ? undefined : [...raw.matchAll(/\{"ts":"/g)].map((m) => m.index).find((k) => k > 0 && verifies(raw.slice(k)))
        if (glued !== undefined) {
          problem(
            at,
            'glued',
            `a torn line of ${Buffer.byteLength(raw.slice(0, glued))} bytes (a write that failed part-way) with the next line appended to it; that next line verifies`,
          )
          raw = raw.slice(glued)
        } else if (sealsOf(raw) !== undefined) {
          problem(at, 'forged', macOf(raw) ?? 'MAC does not match')
          continue
        } else {
          problem(at, 'torn', `not a sealed audit line (${Buffer.byteLength(raw)} bytes, no MAC): torn by a crash or a failed write, or written by something else`)
          continue
        }
      }
      let record: Chained
      try {
        record = JSON.parse(raw) as Chained
      } catch {
        problem(at, 'malformed', 'not valid JSON')
        continue
      }
      const { wid, seq, prev } = record
      if (typeof wid !== 'string' || typeof seq !== 'number' || typeof prev !== 'string') {
        problem(at, 'malformed', 'chain fields missing')
        continue
      }
      // A hand-over (MACed by both keys): the writer seals under the new key from the next line on.
      let nextKid = writers.get(wid)?.kid ?? (typeof record.kid === 'string' ? record.kid : undefined)
      if (record.event === 'audit.key-rotated' && raw.includes(',"macNext":"')) {
        const { newKid } = record
        const badNext = typeof newKid !== 'string' ? 'a key hand-over without newKid' : macNextProblem(keys, newKid, raw)
        if (badNext !== undefined || typeof newKid !== 'string') {
          problem(at, 'forged', badNext ?? 'a key hand-over without newKid')
          continue
        }
        nextKid = newKid
      }
      const state = writers.get(wid)
      // Sequence numbers the bad lines since this writer's last good line may account for.
      const allowance = bad - (state?.bad ?? 0)
      if (state === undefined) {
        if (seq - 1 > allowance)
          problem(at, 'deleted', `writer ${wid} starts at seq ${seq}: its first ${seq - 1} line(s) are missing (deleted, or an earlier file was not given)`, true)
        else if (!seen.has(prev) && bad === 0) problem(at, 'deleted', `writer ${wid} is anchored to a line that is not here (lines deleted before it)`, true)
      } else if (state.closed) {
        problem(at, 'after close', `writer ${wid} wrote after closing: an inserted or replayed line`)
        continue
      } else if (seq <= state.seq) {
        problem(at, 'duplicated', `seq ${seq} after ${state.seq} for writer ${wid}: lines reordered or duplicated`)
        continue
      } else if (seq - state.seq - 1 > allowance) {
        problem(at, 'deleted', `seq ${seq} after ${state.seq} for writer ${wid}: ${seq - state.seq - 1} line(s) deleted before this one`, true)
      } else if (seq === state.seq + 1 && prev !== state.hash) {
        problem(at, 'relinked', `the link to writer ${wid}'s previous line is broken: a line before this one was replaced`)
        continue
      }
      const hash = lineHash(raw)
      writers.set(wid, { seq, hash, closed: record.event === 'audit.closed', bad, kid: nextKid })
      seen.add(hash)
      count += 1
      if (run === undefined) run = { from: at, to: at }
      else run.to = at
      if (record.event === 'audit.repaired') gaps.push({ file: name, line: at, writer: wid, detail: gapDetail(record) })
    }
    endRun()
    if (last !== '')
      problems.push({
        file: name,
        line: lines.length + 1,
        kind: 'torn tail',
        reason: `torn tail: ${Buffer.byteLength(last)} bytes after line ${lines.length}, not sealed (a crash or a failed write mid-line; the next writer cuts it and records an audit.repaired line)`,
      })
  }
  const open = [...writers.entries()].filter(([, s]) => !s.closed).map(([w]) => w)
  // No MAC matches at all: one problem, not one per line (a wrong key, or nothing is genuine).
  const head = problems[0]
  if (count === 0 && head !== undefined && problems.length > 1 && problems.every((p) => p.kind === 'forged')) {
    const reason = head.reason.startsWith('wrong key')
      ? `${head.reason}; so are all ${problems.length} lines`
      : `MAC does not match on any of the ${problems.length} lines: this is not the audit key, or every line was forged`
    problems.splice(0, problems.length, { ...head, reason })
  }
  const first = problems[0]
  return { ok: first === undefined, lines: count, writers: writers.size, open, problems, ...(first === undefined ? {} : { problem: first }), gaps, trusted }
}
