import { SecurityError } from '../errors.js'
import type { TrailQuery } from './trail.js'

/** The exact-match fields of a query, most selective first (the first one given is the byte pre-check). */
export const FIELDS = ['requestId', 'principal', 'tool', 'reason', 'event', 'decision'] as const
export type FilterField = (typeof FIELDS)[number]

/** A validated query filter. */
export interface TrailFilter {
  readonly from: string | undefined
  readonly to: string | undefined
  readonly fields: readonly (readonly [FilterField, string])[]
  /** Lower-cased. */
  readonly text: string | undefined
}

const MAX_VALUE = 1000
const invalid = (why: string): SecurityError => new SecurityError('ERR_INVALID_REQUEST', `trail query: ${why}`)

/** A time bound as `toISOString` writes it (how every line's `ts` is written), so strings compare in time order. */
function instant(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length > 64) throw invalid(`${name} is not a time`)
  const t = Date.parse(value)
  if (Number.isNaN(t)) throw invalid(`${name} is not a time`)
  return new Date(t).toISOString()
}

/**
 * Check a query from a client and return its filter.
 * @throws SecurityError ERR_INVALID_REQUEST naming the bad field
 * Does not check: cursors (the reader decodes them).
 */
export function trailFilter(q: Omit<TrailQuery, 'limit' | 'before' | 'after'>): TrailFilter {
  const fields: [FilterField, string][] = []
  for (const name of FIELDS) {
    const value: unknown = q[name]
    if (value === undefined) continue
    if (typeof value !== 'string' || value.length > MAX_VALUE) throw invalid(`${name} must be a string of at most ${MAX_VALUE} characters`)
    if (name === 'decision' && value !== 'allow' && value !== 'deny' && value !== 'error') throw invalid('decision must be allow, deny or error')
    fields.push([name, value])
  }
  const text: unknown = q.text
  if (text !== undefined && (typeof text !== 'string' || text.length > MAX_VALUE)) throw invalid(`text must be a string of at most ${MAX_VALUE} characters`)
  return { from: instant('from', q.from), to: instant('to', q.to), fields, text: text === undefined || text === '' ? undefined : text.toLowerCase() }
}

/** The page size of a query. @throws SecurityError ERR_INVALID_REQUEST unless a whole number 1–1000 */
export function trailLimit(limit: unknown): number {
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 1000) throw invalid('limit must be a whole number from 1 to 1000')
  return limit
}

/** Is `ts` within the filter's time range (`from` inclusive, `to` exclusive)? A line without one is outside any range. */
export function inRange(f: TrailFilter, ts: unknown): boolean {
  if (f.from === undefined && f.to === undefined) return true
  if (typeof ts !== 'string') return false
  return (f.from === undefined || ts >= f.from) && (f.to === undefined || ts < f.to)
}

/** Does a parsed line match every field and the time range? (`text` is checked on the raw line.) */
export function matchesRecord(f: TrailFilter, record: Readonly<Record<string, unknown>>): boolean {
  for (const [name, value] of f.fields) if (!Object.hasOwn(record, name) || record[name] !== value) return false
  return inRange(f, record.ts)
}

/** Does the stored text contain the query's text (case-insensitive)? */
export const matchesText = (f: TrailFilter, raw: string): boolean => f.text === undefined || raw.toLowerCase().includes(f.text)

/**
 * Bytes every matching line contains: the first field's value as the writer serialises it (JSON,
 * and U+0085/U+2028/U+2029 escaped as `toJsonLine` does). Undefined without fields.
 */
export function needleOf(f: TrailFilter): Buffer | undefined {
  const first = f.fields[0]
  if (first === undefined) return undefined
  const json = JSON.stringify(first[1]).replace(/[\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  return Buffer.from(json, 'utf8')
}

/** The `ts` a line starts with (every audit line does: `{"ts":"…"`), read without parsing it. */
export function leadingTs(raw: string): string | undefined {
  if (!raw.startsWith('{"ts":"')) return undefined
  const end = raw.indexOf('"', 7)
  return end < 0 ? undefined : raw.slice(7, end)
}
