import { isIPv6 } from 'node:net'

/**
 * Personal data in text, found by pattern and then confirmed by a check where one exists (Luhn for
 * cards, ISO 7064 mod 97 for IBANs, value ranges for SSNs and IPv4, the address parser for IPv6)
 * so that order numbers, dates, versions and timestamps are not mistaken for it.
 * Does not check: names, postal addresses, dates of birth, or data in images and binary content.
 */
export type PiiKind = 'email' | 'phone' | 'ssn' | 'card' | 'iban' | 'ip'

export const PII_KINDS: readonly PiiKind[] = ['email', 'ssn', 'card', 'iban', 'ip', 'phone']

export interface PiiMatch {
  readonly kind: PiiKind
  readonly start: number
  readonly end: number
  readonly value: string
}

/** The Luhn check digit holds (card numbers). */
export function luhn(digits: string): boolean {
  let sum = 0
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48
    if (i % 2 === 1) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return sum % 10 === 0
}

function ibanValid(raw: string): boolean {
  const iban = raw.replace(/ /g, '')
  if (iban.length < 15 || iban.length > 34) return false
  const moved = `${iban.slice(4)}${iban.slice(0, 4)}`
  let remainder = 0
  for (const ch of moved) {
    const code = ch.charCodeAt(0)
    const value = code >= 65 ? String(code - 55) : ch
    for (const digit of value) remainder = (remainder * 10 + Number(digit)) % 97
  }
  return remainder === 1
}

const DATE = /^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$/

const MAYBE_PII = /[@:\d]/

/** What a text holds, counted in one pass, so that a detector runs only where it could match. */
export interface Shape {
  readonly at: boolean
  readonly digits: number
  readonly colons: number
  readonly dots: number
  readonly dashes: number
  readonly upper: number
}

export function shapeOf(text: string): Shape {
  let at = false
  let digits = 0
  let colons = 0
  let dots = 0
  let dashes = 0
  let upper = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 48 && c <= 57) digits++
    else if (c >= 65 && c <= 90) upper++
    else if (c === 64) at = true
    else if (c === 58) colons++
    else if (c === 46) dots++
    else if (c === 45) dashes++
  }
  return { at, digits, colons, dots, dashes, upper }
}

export interface Detector {
  readonly kind: PiiKind
  readonly pattern: RegExp
  readonly accept: (value: string) => boolean
  /** Could the pattern match a text of this shape at all? (What every match of it must contain.) */
  readonly maybe: (s: Shape) => boolean
}

/** The detectors, in precedence order (exported for the test of their shape pre-checks). */
export const PII_DETECTORS: readonly Detector[] = [
  {
    kind: 'email',
    pattern: /(?<![\w.%+'-])[A-Za-z0-9][A-Za-z0-9._%+'-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])/g,
    accept: () => true,
    maybe: (s) => s.at && s.dots >= 1,
  },
  // US SSN with dashes; never issued: area 000, 666, 9xx; group 00; serial 0000.
  { kind: 'ssn', pattern: /(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])/g, accept: (v) => !/^(000|666|9\d\d)-|-00-|-0000$/.test(v), maybe: (s) => s.digits >= 9 && s.dashes >= 2 },
  {
    kind: 'card',
    pattern: /(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])/g,
    accept: (v) => {
      const digits = v.replace(/[ -]/g, '')
      // Grouped only the way cards are printed: 4-4-4-4, 4-6-5 (Amex), 4-4-4-4-3; or not at all.
      const grouped = /^\d+$/.test(v) || /^(\d{4}[ -]){3}\d{4}$|^\d{4}[ -]\d{6}[ -]\d{5}$|^(\d{4}[ -]){4}\d{3}$/.test(v)
      return grouped && /^[2-6]/.test(digits) && !/^(\d)\1+$/.test(digits) && luhn(digits)
    },
    maybe: (s) => s.digits >= 13,
  },
  {
    kind: 'iban',
    pattern: /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])/g,
    accept: ibanValid,
    maybe: (s) => s.upper >= 2 && s.digits >= 2,
  },
  {
    kind: 'ip',
    pattern: /(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])/g,
    accept: () => true,
    maybe: (s) => s.dots >= 3 && s.digits >= 4,
  },
  {
    kind: 'ip',
    pattern: /(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])/g,
    accept: (v) => v.replace(/[^:]/g, '').length >= 2 && isIPv6(v) && /[0-9a-fA-F]/.test(v),
    maybe: (s) => s.colons >= 2,
  },
  {
    kind: 'phone',
    // International (+country …) or North American shapes; digits only in a sane count.
    pattern: /(?<![\w+.-])(?:\+\d{10,15}|\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w.-]*\d)/g,
    accept: (v) => {
      const digits = v.replace(/\D/g, '').length
      return digits >= 10 && digits <= 15 && !DATE.test(v)
    },
    maybe: (s) => s.digits >= 10,
  },
]

/** Every piece of personal data in a text, earliest first; overlaps keep the earlier detector's match. */
export function findPii(text: string, kinds: readonly PiiKind[] = PII_KINDS): PiiMatch[] {
  const found: PiiMatch[] = []
  // Every detector needs an `@`, a digit or a `:` (IPv6): most strings skip them all.
  if (!MAYBE_PII.test(text)) return found
  const shape = shapeOf(text)
  const taken: [number, number][] = []
  for (const d of PII_DETECTORS) {
    if (!kinds.includes(d.kind) || !d.maybe(shape)) continue
    for (const m of text.matchAll(d.pattern)) {
      const start = m.index
      const end = start + m[0].length
      if (!d.accept(m[0])) continue
      if (taken.some(([s, e]) => start < e && end > s)) continue
      taken.push([start, end])
      found.push({ kind: d.kind, start, end, value: m[0] })
    }
  }
  return found.sort((a, b) => a.start - b.start)
}

const LABEL: Record<PiiKind, string> = { email: '[EMAIL]', phone: '[PHONE]', ssn: '[SSN]', card: '[CARD]', iban: '[IBAN]', ip: '[IP]' }

/** The text with every match replaced by its label, and the matches found. */
export function maskPii(text: string, kinds?: readonly PiiKind[]): { text: string; found: PiiMatch[] } {
  const found = findPii(text, kinds)
  let out = ''
  let at = 0
  for (const m of found) {
    out += text.slice(at, m.start) + LABEL[m.kind]
    at = m.end
  }
  return { text: out + text.slice(at), found }
}

/** Mask every string in a value (tool results: text content and structured content), counting by kind. */
export function maskValue(value: unknown, counts: Map<PiiKind, number> = new Map()): { value: unknown; counts: Map<PiiKind, number> } {
  const mask = (text: string): string => {
    const { text: masked, found } = maskPii(text)
    for (const f of found) counts.set(f.kind, (counts.get(f.kind) ?? 0) + 1)
    return masked
  }
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') return mask(v)
    // Deeper than any honest result: masked as its JSON text rather than passed through unread.
    if (v !== null && typeof v === 'object' && depth > 64) return mask(JSON.stringify(v) ?? '')
    if (v === null || typeof v !== 'object') return v
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1))
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) Object.defineProperty(out, k, { value: walk(x, depth + 1), enumerable: true, writable: true, configurable: true })
    return out
  }
  return { value: walk(value, 0), counts }
}
