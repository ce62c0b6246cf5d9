import { ShownError } from '../../console/shown-error.js'
import type { TrailQuery } from '../../console/trail.js'

export { ShownError } from '../../console/shown-error.js'

/** The console's parsing of what a person or script typed: each field checked, with what is wrong said plainly. */

const TEXT_FIELDS = ['principal', 'tool', 'reason', 'requestId', 'event', 'text'] as const

/** A time a person typed: ISO 8601 with a zone, or `YYYY-MM-DD[THH:MM[:SS]]` taken as UTC. */
export function parseTime(field: string, value: string | null): string | undefined {
  if (value === null || value.trim() === '') return undefined
  const v = value.trim()
  const m = /^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,3})?)?)?(Z|[+-]\d\d:\d\d)?$/.exec(v)
  const wrong = shown(`${field}: not a time such as 2026-12-01T10:00:00Z`)
  if (m === null) throw wrong
  const [, y = '', mo = '', d = '', h = '0', mi = '0', sec = '0', zone] = m
  // Date.parse rolls 30 February over into March: every field is checked against its range first.
  const days = new Date(Date.UTC(Number(y), Number(mo), 0)).getUTCDate()
  if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > days || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) throw wrong
  if (zone !== undefined && m[4] === undefined) throw wrong
  const ms = Date.parse(`${v.replace(' ', 'T')}${m[4] === undefined ? 'T00:00:00' : ''}${zone === undefined ? 'Z' : ''}`)
  if (!Number.isFinite(ms)) throw wrong
  return new Date(ms).toISOString()
}

const shown = (m: string): ShownError => new ShownError(m)

/** The audit filter from query parameters. @throws ShownError */
export function trailQueryOf(params: URLSearchParams, defaultLimit = 100): TrailQuery {
  const q: { -readonly [K in keyof TrailQuery]: TrailQuery[K] } = { limit: defaultLimit }
  for (const name of params.keys()) if (params.getAll(name).length > 1) throw shown(`${name.slice(0, 40)}: given more than once`)
  const from = parseTime('from', params.get('from'))
  const to = parseTime('to', params.get('to'))
  if (from !== undefined) q.from = from
  if (to !== undefined) q.to = to
  for (const f of TEXT_FIELDS) {
    const v = params.get(f)
    if (v === null || v === '') continue
    if (v.length > 500) throw shown(`${f}: at most 500 characters`)
    q[f] = v
  }
  const decision = params.get('decision')
  if (decision !== null && decision !== '') {
    if (decision !== 'allow' && decision !== 'deny' && decision !== 'error') throw shown('decision: allow, deny or error')
    q.decision = decision
  }
  const limit = params.get('limit')
  if (limit !== null && limit !== '') {
    const n = Number(limit)
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw shown('limit: a whole number, 1–1000')
    q.limit = n
  }
  for (const c of ['before', 'after'] as const) {
    const v = params.get(c)
    if (v === null || v === '') continue
    if (v.length > 512 || !/^[A-Za-z0-9_.:=-]+$/.test(v)) throw shown(`${c}: not a cursor from an earlier page`)
    q[c] = v
  }
  return q
}

/** Roles from a comma- or space-separated list. */
export const listOf = (text: string | null | undefined): string[] =>
  (text ?? '')
    .split(/[\s,]+/)
    .map((r) => r.trim())
    .filter((r) => r !== '')
    .slice(0, 64)

/** Arguments a person typed as JSON. @throws ShownError */
export function argumentsOf(text: string | null | undefined): unknown {
  if (text === null || text === undefined || text.trim() === '') return {}
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw shown('arguments: not JSON')
  }
}

/** A time range a person or script gave (either end optional). @throws ShownError */
export function rangeOf(from: unknown, to: unknown): { from?: string; to?: string } {
  const f = parseTime('from', typeof from === 'string' ? from : null)
  const t = parseTime('to', typeof to === 'string' ? to : null)
  return { ...(f === undefined ? {} : { from: f }), ...(t === undefined ? {} : { to: t }) }
}
