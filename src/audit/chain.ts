import { createHmac, randomBytes } from 'node:crypto'
import { ChainVerifier, GENESIS, lineHash, type VerifyReport } from './chain-verifier.js'
import { auditKeyId, sealHandOver } from './key-id.js'

export {
  ChainVerifier,
  type ChainVerifierOptions,
  GENESIS,
  lineHash,
  type ProblemKind,
  type TrustedRange,
  type VerifierOmissions,
  type VerifyGap,
  type VerifyProblem,
  type VerifyReport,
} from './chain-verifier.js'

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

/**
 * Verify audit files in order (rotation continues chains across files): {@link ChainVerifier} over
 * every line of each, unbounded. Every problem, gap and trusted range, in file order.
 * Does not check: what {@link ChainVerifier} does not.
 */
export function verifyAudit(files: readonly { name: string; text: string }[], key: Buffer | readonly Buffer[]): VerifyReport {
  const verifier = new ChainVerifier(key)
  for (const { name, text } of files) {
    verifier.beginFile(name)
    const lines = text.split('\n')
    const last = lines.pop() ?? ''
    for (let i = 0; i < lines.length; i++) verifier.line(lines[i] ?? '', i + 1)
    verifier.endFile(last)
  }
  return verifier.report()
}
