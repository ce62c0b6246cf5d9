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
    const body = jsonLine.slice(0, jsonLine.lastIndexOf('}'))
    const seq = this.#seq + 1
    const chained = `${body},"wid":"${this.writer}","seq":${seq},"prev":"${this.#prev}"`
    const line = next === undefined ? `${chained},"mac":"${mac(this.#key, `${chained}}`)}"}` : sealHandOver(chained, this.#key, next)
    return {
      line: `${line}\n`,
      commit: () => {
        this.#seq = seq
        this.#prev = lineHash(line)
        if (next !== undefined) this.#key = next
      },
    }
  }
}

export interface VerifyProblem {
  readonly file: string
  readonly line: number
  readonly reason: string
}

export interface VerifyReport {
  readonly ok: boolean
  readonly lines: number
  readonly writers: number
  /** Writers whose last line is not `audit.closed`: still running, crashed, or the tail was cut. */
  readonly open: readonly string[]
  readonly problem?: VerifyProblem
}

/**
 * Verify audit files in order (rotation continues chains across files). Reports the first line
 * that was edited or forged (MAC), deleted (a sequence gap), inserted or duplicated, reordered, or
 * relinked, and a torn line (a crash or truncation mid-line); whole lines before it verify.
 * Each writer's lines are checked under the key its `audit.opened` line names by id (`kid`), and
 * after an `audit.key-rotated` hand-over under the new one: a key id not among `key` is "wrong
 * key", a MAC that fails under a key held is forged. Writers that declare no key id (lines from
 * before key ids) are tried under every key given.
 * Does not check: lines cut from the very end at a line boundary (the writer then shows as open),
 * nor whole writers removed together with every line that came after them.
 */
export function verifyAudit(files: readonly { name: string; text: string }[], key: Buffer | readonly Buffer[]): VerifyReport {
  // Each writer declares the key it seals under (key-id.ts): the current key and kept old ones.
  const keys = new Map((Buffer.isBuffer(key) ? [key] : key).map((k) => [auditKeyId(k), k]))
  const writers = new Map<string, { seq: number; hash: string; closed: boolean; kid: string | undefined }>()
  const seen = new Set<string>([GENESIS])
  let count = 0
  const fail = (file: string, line: number, reason: string): VerifyReport => ({ ok: false, lines: count, writers: writers.size, open: [], problem: { file, line, reason } })
  for (const { name, text } of files) {
    const lines = text.split('\n')
    const last = lines.pop()
    for (let i = 0; i < lines.length; i++) {
      const raw = lines[i] ?? ''
      const at = i + 1
      if (sealsOf(raw) === undefined) return fail(name, at, 'not a sealed audit line (torn, or written by something else)')
      let record: { wid?: unknown; seq?: unknown; prev?: unknown; event?: unknown; kid?: unknown; newKid?: unknown }
      try {
        record = JSON.parse(raw) as typeof record
      } catch {
        return fail(name, at, 'not valid JSON')
      }
      const { wid } = record
      const declared = typeof record.kid === 'string' ? record.kid : undefined
      const kid = typeof wid === 'string' && writers.has(wid) ? writers.get(wid)?.kid : declared
      const bad = macProblem(keys, kid, raw)
      if (bad !== undefined) return fail(name, at, bad)
      const { seq, prev } = record
      if (typeof wid !== 'string' || typeof seq !== 'number' || typeof prev !== 'string') return fail(name, at, 'chain fields missing')
      // A hand-over (MACed by both keys): the writer seals under the new key from the next line on.
      let nextKid = kid
      if (record.event === 'audit.key-rotated' && raw.includes(',"macNext":"')) {
        if (typeof record.newKid !== 'string') return fail(name, at, 'a key hand-over without newKid')
        const badNext = macNextProblem(keys, record.newKid, raw)
        if (badNext !== undefined) return fail(name, at, badNext)
        nextKid = record.newKid
      }
      const state = writers.get(wid)
      if (state === undefined) {
        if (seq !== 1) return fail(name, at, `writer ${wid} starts at seq ${seq}: its first ${seq - 1} line(s) are missing (deleted, or an earlier file was not given)`)
        if (!seen.has(prev)) return fail(name, at, `writer ${wid} is anchored to a line that is not here (lines deleted before it)`)
      } else {
        if (state.closed) return fail(name, at, `writer ${wid} wrote after closing: an inserted or replayed line`)
        if (seq <= state.seq) return fail(name, at, `seq ${seq} after ${state.seq} for writer ${wid}: lines reordered or duplicated`)
        if (seq !== state.seq + 1) return fail(name, at, `seq ${seq} after ${state.seq} for writer ${wid}: ${seq - state.seq - 1} line(s) deleted before this one`)
        if (prev !== state.hash) return fail(name, at, `the link to writer ${wid}'s previous line is broken: a line before this one was replaced`)
      }
      const hash = lineHash(raw)
      writers.set(wid, { seq, hash, closed: record.event === 'audit.closed', kid: nextKid })
      seen.add(hash)
      count += 1
    }
    if (last !== undefined && last !== '') return fail(name, lines.length + 1, 'torn line at the end of the file (a crash or truncation mid-write); whole lines before it verify')
  }
  const open = [...writers.entries()].filter(([, s]) => !s.closed).map(([w]) => w)
  return { ok: true, lines: count, writers: writers.size, open }
}
