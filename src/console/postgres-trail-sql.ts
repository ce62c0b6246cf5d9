import type { Bucket, Count, TrailStats } from './trail.js'
import type { TrailFilter } from './trail-filter.js'
import { sumTotals } from './trail-stats.js'

/** Returns NULL for a line that is not JSON, so indexes over it never fail an insert. */
export const JSON_FN = 'mcp_bastion_audit_json'
export const J = `${JSON_FN}(line)`
export const TS = `((${J}->>'ts') COLLATE "C")`
const MINUTE = 60_000
const HOUR = 60 * MINUTE
const iso = (ms: number): string => new Date(ms).toISOString()

/** SQL conditions for a filter; its values are appended to `params` and named by their numbers. */
export function conditions(f: TrailFilter, params: unknown[]): string {
  const out: string[] = []
  const p = (v: unknown): string => `$${params.push(v)}`
  for (const [name, value] of f.fields) out.push(`${J}->>'${name}' = ${p(value)}`)
  if (f.text !== undefined) out.push(`strpos(lower(line), ${p(f.text)}) > 0`)
  if (f.from !== undefined) out.push(`${TS} >= ${p(f.from)}`)
  if (f.to !== undefined) out.push(`${TS} < ${p(f.to)}`)
  return out.length === 0 ? 'TRUE' : out.join(' AND ')
}

/**
 * The overview from SQL aggregates over the request lines of the day window (by each line's `ts`):
 * counts by minute, top names, and percentiles (`percentile_cont`) over the minutes `perMinute` shows.
 * `table` is a checked name; `query` runs one parameterised statement.
 */
export async function trailStatsAt(now: Date, query: (sql: string, params: unknown[]) => Promise<StatRow[]>, ready: boolean, table: string): Promise<TrailStats> {
  const nowMinute = Math.floor(now.getTime() / MINUTE)
  const nowHour = Math.floor(now.getTime() / HOUR)
  const firstMinute = nowMinute - 60
  const rows = ready ? await query(STATS_SQL(table), [iso((nowHour - 24) * HOUR), iso((nowMinute + 1) * MINUTE), iso(firstMinute * MINUTE)]) : []
  const minutes = new Map<number, { allow: number; deny: number; error: number }>()
  const tops = { principal: [] as Count[], tool: [] as Count[], denial: [] as Count[] }
  let p50: number | undefined
  let p99: number | undefined
  for (const r of rows) {
    if (r.k === 'minute' && r.name !== null) minutes.set(Date.parse(`${r.name}:00.000Z`) / MINUTE, { allow: Number(r.allow), deny: Number(r.deny), error: Number(r.error) })
    else if (r.k === 'latency') {
      p50 = r.p50 ?? undefined
      p99 = r.p99 ?? undefined
    } else if ((r.k === 'principal' || r.k === 'tool' || r.k === 'denial') && r.name !== null) tops[r.k].push({ name: r.name, count: Number(r.allow) })
  }
  const at = (m: number) => minutes.get(m) ?? { allow: 0, deny: 0, error: 0 }
  const perMinute: Bucket[] = []
  for (let m = firstMinute; m <= nowMinute; m++) perMinute.push({ t: iso(m * MINUTE), ...at(m) })
  const perHour: Bucket[] = []
  for (let h = nowHour - 24; h <= nowHour; h++) {
    const ms: { allow: number; deny: number; error: number }[] = []
    for (let m = h * 60; m < (h + 1) * 60 && m <= nowMinute; m++) ms.push(at(m))
    perHour.push({ t: iso(h * HOUR), ...sumTotals(ms) })
  }
  return {
    perMinute,
    perHour,
    lastHour: sumTotals(perMinute),
    lastDay: sumTotals(perHour),
    p50Ms: p50,
    p99Ms: p99,
    topPrincipals: tops.principal,
    topTools: tops.tool,
    topDenials: tops.denial,
  }
}

export interface StatRow {
  k: string
  name: string | null
  allow: string
  deny: string
  error: string
  p50: number | null
  p99: number | null
}

/** Request lines of the day window ($1–$2, by `ts`), by minute; top names; latency percentiles from $3. */
export const STATS_SQL = (t: string): string => `
WITH r AS MATERIALIZED (SELECT ${J} AS j FROM ${t} WHERE ${TS} >= $1 AND ${TS} < $2),
q AS (SELECT j FROM r WHERE jsonb_typeof(j->'requestId') = 'string' AND j->>'decision' IN ('allow', 'deny', 'error') AND jsonb_typeof(j->'ts') = 'string' AND coalesce(j->>'method', '') NOT LIKE 'console/%')
SELECT 'minute' AS k, substr(j->>'ts', 1, 16) AS name, count(*) FILTER (WHERE j->>'decision' = 'allow') AS allow,
  count(*) FILTER (WHERE j->>'decision' = 'deny') AS deny, count(*) FILTER (WHERE j->>'decision' = 'error') AS error, NULL::float8 AS p50, NULL::float8 AS p99
  FROM q GROUP BY 2
UNION ALL (SELECT 'principal', j->>'principal', count(*), 0, 0, NULL, NULL FROM q WHERE jsonb_typeof(j->'principal') = 'string' GROUP BY 2 ORDER BY 3 DESC, (j->>'principal') COLLATE "C" LIMIT 10)
UNION ALL (SELECT 'tool', j->>'tool', count(*), 0, 0, NULL, NULL FROM q WHERE jsonb_typeof(j->'tool') = 'string' GROUP BY 2 ORDER BY 3 DESC, (j->>'tool') COLLATE "C" LIMIT 10)
UNION ALL (SELECT 'denial', j->>'reason', count(*), 0, 0, NULL, NULL FROM q WHERE j->>'decision' IN ('deny', 'error') AND jsonb_typeof(j->'reason') = 'string' GROUP BY 2 ORDER BY 3 DESC, (j->>'reason') COLLATE "C" LIMIT 10)
UNION ALL SELECT 'latency', NULL, count(*), 0, 0, percentile_cont(0.5) WITHIN GROUP (ORDER BY (j->>'durationMs')::float8), percentile_cont(0.99) WITHIN GROUP (ORDER BY (j->>'durationMs')::float8)
  FROM q WHERE (j->>'ts') COLLATE "C" >= $3 AND jsonb_typeof(j->'durationMs') = 'number'`
