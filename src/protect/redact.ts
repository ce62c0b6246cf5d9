/**
 * Redaction of values bound for the audit trail: by key name at any depth, and by value shape for
 * credentials bastion knows (its API keys, JWTs, bearer strings, PEM private keys).
 * Does not check: personal data in free text (masking is a separate layer), secrets of shapes it
 * does not know.
 */

export const REDACTED = '[REDACTED]'

const SECRET_KEY = /pass(word|wd|phrase)?|secret|token|api[_-]?key|authorization|cookie|credential|private[_-]?key|session[_-]?id|ssn|credit[_-]?card|card[_-]?number|cvv/i

const SECRET_VALUES: readonly RegExp[] = [
  /bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/,
  /eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/,
  /\bBearer\s+[A-Za-z0-9._~+/-]{16,}/i,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
]

/** A redacted deep copy: secret-named keys and secret-shaped strings replaced by `[REDACTED]`. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return SECRET_VALUES.some((re) => re.test(value)) ? REDACTED : value
  if (value === null || typeof value !== 'object') return value
  if (depth > 32) return REDACTED
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? REDACTED : redact(v, depth + 1)
  return out
}

/**
 * Arguments for an audit line: redacted, and omitted when their JSON is over `maxBytes` (the line
 * then says so instead of growing without bound).
 */
export function auditArgs(args: unknown, maxBytes = 8192): { args: unknown } | { argsOmitted: string } {
  const redacted = redact(args)
  const json = JSON.stringify(redacted) ?? 'null'
  if (Buffer.byteLength(json) > maxBytes) return { argsOmitted: `over ${maxBytes} bytes` }
  return { args: redacted }
}
