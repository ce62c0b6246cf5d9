/**
 * Redaction of everything bound for a log or the audit trail: values under secret-looking key
 * names at any depth, and substrings shaped like credentials bastion knows (its API keys and
 * refresh tokens, JWTs, bearer strings, PEM private keys, cloud access keys, card numbers that
 * pass the Luhn check), wherever they appear.
 * Does not check: personal data in free text (masking outputs is a separate layer), secrets of
 * shapes it does not know (a random password in a field called `note` survives).
 */

import { luhn } from './pii.js'

export const REDACTED = '[REDACTED]'

/** Key names whose values are never logged, matched anywhere in the key, case-insensitively. */
export const DEFAULT_SECRET_KEYS: readonly string[] = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'token',
  'api_key',
  'apikey',
  'api-key',
  'authorization',
  'cookie',
  'credential',
  'private_key',
  'privatekey',
  'session_id',
  'credit_card',
  'creditcard',
  'card_number',
  'cvv',
  'ssn',
]

interface Detector {
  readonly name: string
  readonly pattern: RegExp
  readonly accept?: (match: string) => boolean
}

// Global regexes, each anchored on something rare enough that ordinary text does not match.
const DETECTORS: readonly Detector[] = [
  { name: 'pem', pattern: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g },
  { name: 'bastion-key', pattern: /bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/g },
  { name: 'refresh-token', pattern: /bstr_[A-Za-z0-9_-]{43}/g },
  { name: 'jwt', pattern: /eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g },
  { name: 'bearer', pattern: /\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi },
  { name: 'aws-key', pattern: /\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b/g },
  { name: 'github-token', pattern: /\bgh[pousr]_[A-Za-z0-9]{36,}\b/g },
  { name: 'slack-token', pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g },
  { name: 'google-key', pattern: /\bAIza[0-9A-Za-z_-]{35}\b/g },
  // The user-info part of a URL (`postgres://user:password@host`): connection strings in driver errors.
  { name: 'url-credentials', pattern: /(?<=\b[a-z][a-z0-9+.-]*:\/\/)[^\s/@]+(?=@)/gi },
  // 13 to 19 digits, optionally grouped by spaces or dashes, and only if the Luhn check passes.
  { name: 'card', pattern: /\b\d(?:[ -]?\d){12,18}\b/g, accept: (m) => luhn(m.replace(/[ -]/g, '')) },
]

// Every detector needs one of these to match at all: most strings skip the detectors entirely.
const MAYBE_SECRET =
  /:\/\/[^\s/@]+@|eyJ|bst|earer|asic|BEGIN|AKIA|ASIA|AGPA|AIDA|AROA|gh[pousr]_|xox|AIza|\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d/i

// RFC 9562 UUIDs: 32 hex digits in fixed groups hold no credential, but their digit-only groups
// can pass the card detector's Luhn check (about one random UUID in 10⁴), so they are left whole.
const UUID = /([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})/

function detect(text: string): string {
  let out = text
  for (const d of DETECTORS) {
    out = out.replace(d.pattern, (m) => (d.accept === undefined || d.accept(m) ? `[REDACTED:${d.name}]` : m))
  }
  return out
}

/** Replace every credential-shaped substring. Does not check: UUIDs (left as they are). */
export function redactText(text: string): string {
  if (!MAYBE_SECRET.test(text)) return text
  if (!UUID.test(text)) return detect(text)
  // split() with a capturing group keeps the UUIDs at the odd indexes.
  return text
    .split(UUID)
    .map((part, i) => (i % 2 === 1 ? part : detect(part)))
    .join('')
}

/** A redactor for a set of secret key names (matched case-insensitively, anywhere in the key). */
export function redactor(secretKeys: readonly string[] = DEFAULT_SECRET_KEYS): (value: unknown) => unknown {
  const names = secretKeys.map((k) =>
    k
      .toLowerCase()
      .replace(/[-_]/g, '')
      .replace(/[^a-z0-9]/g, '\\$&'),
  )
  const pattern = new RegExp(names.join('|'))
  // Key names repeat endlessly (the audit fields): each one's verdict and redacted text are
  // remembered, within a bound.
  const keys = new Map<string, { readonly secret: boolean; readonly text: string }>()
  const keyOf = (key: string): { readonly secret: boolean; readonly text: string } => {
    let known = keys.get(key)
    if (known === undefined) {
      known = { secret: pattern.test(key.toLowerCase().replace(/[-_]/g, '')), text: redactText(key) }
      if (keys.size < 10_000) keys.set(key, known)
    }
    return known
  }
  // Copy on write: a value with nothing to redact is returned as it is, so a record without a
  // secret costs one test per key and per string and no copy. Callers that keep what they pass
  // (and may see it change) snapshot it first.
  const walk = (value: unknown, depth: number): unknown => {
    if (typeof value === 'string') return redactText(value)
    if (value === null || typeof value !== 'object') return value
    if (depth > 32) return REDACTED
    // Anything but a plain object or array is copied as its own enumerable data (as JSON would
    // see it through a copy), never passed on: a class's toJSON or getters would run unredacted.
    const proto: unknown = Object.getPrototypeOf(value)
    const copy = proto !== Object.prototype && proto !== Array.prototype && proto !== null
    if (Array.isArray(value)) {
      let out: unknown[] | undefined = copy ? [] : undefined
      for (let i = 0; i < value.length; i++) {
        const v: unknown = value[i]
        const w = walk(v, depth + 1)
        if (w !== v && out === undefined) out = value.slice(0, i)
        out?.push(w)
      }
      return out ?? value
    }
    let out: Record<string, unknown> | undefined = copy ? {} : undefined
    const entries = Object.entries(value)
    for (let i = 0; i < entries.length; i++) {
      const [k, v] = entries[i] as [string, unknown]
      const key = keyOf(k)
      const w = key.secret ? REDACTED : walk(v, depth + 1)
      if (out === undefined && (w !== v || key.text !== k)) {
        out = {}
        for (const [pk, pv] of entries.slice(0, i)) put(out, pk, pv)
      }
      if (out !== undefined) put(out, key.text, w)
    }
    return out ?? value
  }
  return (value) => walk(value, 0)
}

// A key named `__proto__` stays data (defineProperty); every other key is a plain assignment.
function put(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  else out[key] = value
}

/** Redaction with the default key names. */
export const redact = redactor()

/**
 * Arguments for an audit line: a snapshot of them (the tool may change the value it was given before
 * the line is written), or, when their JSON is over `maxBytes`, a note that they were omitted (the
 * line does not grow without bound, and an omitted argument costs no redaction). Redaction is the
 * audit log's, applied to the whole line as it is written (audit/audit-log.ts).
 */
export function auditArgs(args: unknown, maxBytes = 8192): { args: unknown } | { argsOmitted: string } {
  const json = JSON.stringify(args) ?? 'null'
  // A UTF-16 code unit is at most 3 bytes of UTF-8: only a string over a third of the limit needs counting.
  if (json.length > maxBytes / 3 && Buffer.byteLength(json) > maxBytes) return { argsOmitted: `over ${maxBytes} bytes` }
  return { args: JSON.parse(json) as unknown }
}
