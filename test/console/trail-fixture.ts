import type { AuditLog } from '../../src/audit/audit-log.js'
import type { TrailEntry, TrailQuery, TrailReader } from '../../src/console/trail.js'

/** A 32-byte audit key (hex text, as `<stateDir>/audit.key` holds it). */
export const KEY = Buffer.from('0123456789abcdef'.repeat(4))
/** Lines are written one second apart, ending a little before this instant. */
export const NOW = new Date('2026-03-01T12:30:00.000Z')
export const START = NOW.getTime() - 40 * 60_000

/** A clock that advances one second per call from `from`. */
export function steppingClock(from = START): () => Date {
  let t = from
  return () => {
    const d = new Date(t)
    t += 1000
    return d
  }
}

const DECISIONS = ['allow', 'deny', 'allow', 'error', 'allow'] as const
const REASON = { allow: 'OK', deny: 'ERR_FORBIDDEN', error: 'ERR_TOOL_FAILED' } as const

/** A scripted mix: request lines (allow, deny, error; five principals, three tools), a server line every 10th. */
export function writeMix(log: AuditLog, n: number, tag = 'a'): void {
  for (let i = 0; i < n; i++) {
    if (i % 10 === 9) {
      log.record({ event: 'server.note', decision: 'allow', reason: 'OK', note: `Note ${tag}${i}` })
      continue
    }
    const decision = DECISIONS[i % DECISIONS.length] ?? 'allow'
    log.record({
      event: 'tool.call',
      requestId: `${tag}-req-${i}`,
      principal: `p${i % 5}`,
      tool: `t${i % 3}`,
      decision,
      reason: REASON[decision],
      durationMs: (i % 40) + 0.5,
      pad: 'x'.repeat(60),
    })
  }
}

export type Rec = Record<string, unknown>

/** Request lines' counts, computed from the records directly. */
export function countsOf(records: readonly Rec[]): { allow: number; deny: number; error: number } {
  const req = records.filter((r) => typeof r.requestId === 'string')
  return {
    allow: req.filter((r) => r.decision === 'allow').length,
    deny: req.filter((r) => r.decision === 'deny').length,
    error: req.filter((r) => r.decision === 'error').length,
  }
}

/** Top names, most first then by name. */
export function topOf(values: readonly unknown[]): { name: string; count: number }[] {
  const m = new Map<string, number>()
  for (const v of values) if (typeof v === 'string') m.set(v, (m.get(v) ?? 0) + 1)
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, 10)
    .map(([name, count]) => ({ name, count }))
}

/** The nearest-rank quantile. */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN
}

/** Page back with `before` until the end; every page's entries. */
export async function pageAll(r: TrailReader, q: Omit<TrailQuery, 'limit'>, limit: number): Promise<TrailEntry[]> {
  const all: TrailEntry[] = []
  let before: string | undefined
  for (let pages = 0; pages < 1000; pages++) {
    const page = await r.query({ ...q, limit, ...(before === undefined ? {} : { before }) })
    all.push(...page.entries)
    if (page.next === undefined) return all
    before = page.next
  }
  throw new Error('paging did not end')
}

/** A filter and what it must match, by the record and by its stored text. */
export type FilterCase = [Omit<TrailQuery, 'limit'>, (x: Rec, raw: string) => boolean]

/** The filters both readers must apply exactly as the predicate says, over {@link writeMix}'s lines. */
export const FILTER_CASES: readonly FilterCase[] = [
  [{}, () => true],
  [{ principal: 'p3' }, (x) => x.principal === 'p3'],
  [{ tool: 't1' }, (x) => x.tool === 't1'],
  [{ decision: 'deny' }, (x) => x.decision === 'deny'],
  [{ reason: 'ERR_TOOL_FAILED' }, (x) => x.reason === 'ERR_TOOL_FAILED'],
  [{ requestId: 'a-req-123' }, (x) => x.requestId === 'a-req-123'],
  [{ event: 'server.note' }, (x) => x.event === 'server.note'],
  [{ text: 'NOTE A1' }, (_x, raw) => raw.toLowerCase().includes('note a1')],
]
