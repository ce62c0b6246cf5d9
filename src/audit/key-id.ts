import { createHmac, timingSafeEqual } from 'node:crypto'

/** The fixed label whose HMAC names a key: the id reveals nothing of the key, not even its hash. */
const KEY_ID_LABEL = 'mcp-bastion audit key id v1'

/**
 * The audit key's id: `ak_` and the first 16 hex digits of HMAC-SHA256(key, KEY_ID_LABEL). Never
 * the key or a plain hash of it. The `ak_` prefix keeps the id whole under redaction (a run of
 * digits at a word boundary could look like a card number).
 */
export function auditKeyId(key: Buffer): string {
  return `ak_${createHmac('sha256', key).update(KEY_ID_LABEL).digest('hex').slice(0, 16)}`
}

export const KEY_ID = /^ak_[0-9a-f]{16}$/

const hmac = (key: Buffer, text: string): string => createHmac('sha256', key).update(text).digest('hex')
const same = (a: string, b: string): boolean => timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'))

/** A sealed line: everything before the MAC, and the MAC (the last field). */
const SEALED = /^(.*),"mac":"([0-9a-f]{64})"\}$/s
/** A hand-over line's `macNext`, the last field before `mac`. */
const NEXT = /^(.*),"macNext":"([0-9a-f]{64})"$/s

/**
 * The MACs of a sealed line, split out: `mac` over the line up to it (`unsealed` + `}`), and for a
 * hand-over line (`audit.key-rotated`) `macNext` over the line up to *it*. Undefined when the
 * line is not sealed.
 */
export function sealsOf(line: string): { unsealed: string; mac: string; next?: { covered: string; mac: string } } | undefined {
  const sealed = SEALED.exec(line)
  if (sealed === null) return undefined
  const [, unsealed = '', mac = ''] = sealed
  const next = NEXT.exec(unsealed)
  return next === null ? { unsealed, mac } : { unsealed, mac, next: { covered: next[1] ?? '', mac: next[2] ?? '' } }
}

/** Does `mac` (or, on a hand-over line, `macNext`) verify under this key? Reads nothing else. */
export function sealedUnder(line: string, key: Buffer): boolean {
  const seals = sealsOf(line)
  if (seals === undefined) return false
  if (same(seals.mac, hmac(key, `${seals.unsealed}}`))) return true
  return seals.next !== undefined && same(seals.next.mac, hmac(key, `${seals.next.covered}}`))
}

/**
 * Seal a hand-over line (`chained` has every field but the MACs, without the closing brace):
 * `macNext` = HMAC(next, chained + "}") is appended, then `mac` = HMAC(current, everything
 * before it + "}"), as on every line. A verifier with only the old key checks the line as
 * usual; one with the new key checks `macNext`.
 */
export function sealHandOver(chained: string, current: Buffer, next: Buffer): string {
  const withNext = `${chained},"macNext":"${hmac(next, `${chained}}`)}"`
  return `${withNext},"mac":"${hmac(current, `${withNext}}`)}"}`
}

/**
 * Why a sealed line does not verify under the keys held (by id), or undefined when it does.
 * `kid` is the key its writer declared (its `audit.opened` line, or the last hand-over); a writer
 * that declared none (lines written before key ids) is tried under every key held.
 */
export function macProblem(keys: ReadonlyMap<string, Buffer>, kid: string | undefined, line: string): string | undefined {
  const seals = sealsOf(line)
  if (seals === undefined) return 'not a sealed audit line (torn, or written by something else)'
  const check = (key: Buffer): boolean => same(seals.mac, hmac(key, `${seals.unsealed}}`))
  if (kid === undefined) {
    if ([...keys.values()].some(check)) return undefined
    return 'MAC does not match under any audit key given: the line was edited or forged, or it is sealed under another key (its writer declares no key id)'
  }
  const key = keys.get(kid)
  if (key === undefined)
    return `wrong key: the line is sealed under audit key ${kid}, which is not among the keys given (${[...keys.keys()].join(', ')}); pass that key (a rotation keeps it as audit.key.${kid}.old)`
  if (!check(key)) return `MAC does not match under audit key ${kid}: the line was edited or forged`
  return undefined
}

/** Why a hand-over line's `macNext` does not verify under its new key, or undefined when it does. */
export function macNextProblem(keys: ReadonlyMap<string, Buffer>, nextKid: string, line: string): string | undefined {
  const next = sealsOf(line)?.next
  if (next === undefined) return 'a key hand-over without macNext'
  const key = keys.get(nextKid)
  if (key === undefined) return `wrong key: the hand-over names the new audit key ${nextKid}, which is not among the keys given (${[...keys.keys()].join(', ')})`
  if (!same(next.mac, hmac(key, `${next.covered}}`))) return `macNext does not match under audit key ${nextKid}: the hand-over was edited or forged`
  return undefined
}
