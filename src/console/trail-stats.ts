import type { Bucket, Count, Totals, TrailStats } from './trail.js'

const MINUTE = 60_000
const HOUR = 60 * MINUTE
/** Minutes kept: the 25 hours `perHour` shows. */
const MINUTES = 25 * 60 + 1
/** Minutes with latency histograms: the 61 `perMinute` shows. */
const HIST_MINUTES = 64
/** Latency bins: below 0.1 ms, then 8 a doubling from 0.1 ms (about 4% wide) up to about 28 hours. */
const BINS_PER_DOUBLING = 8
const BINS = 1 + 30 * BINS_PER_DOUBLING
const HOURS = 26
const DECISIONS = ['allow', 'deny', 'error'] as const
type Decision = (typeof DECISIONS)[number]
export const OTHER = '(other)'

const decisionIndex = (d: unknown): number => DECISIONS.indexOf(d as Decision)

function bin(ms: number): number {
  if (!(ms >= 0.1)) return 0
  return Math.min(BINS - 1, 1 + Math.floor(Math.log2(ms / 0.1) * BINS_PER_DOUBLING))
}
/** The middle of a bin (geometric), in ms. */
const binValue = (i: number): number => (i === 0 ? 0.05 : 0.1 * 2 ** ((i - 0.5) / BINS_PER_DOUBLING))

/** Counts by name, at most `cap` distinct names; past it, new names count as {@link OTHER}. */
class CappedCounter {
  readonly counts = new Map<string, number>()
  constructor(private readonly cap: number) {}
  add(name: string): void {
    const key = this.counts.has(name) || this.counts.size < this.cap ? name : OTHER
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1)
  }
}

type Hour = { hour: number; principals: CappedCounter; tools: CappedCounter; denials: CappedCounter }

/** A record's fields the statistics read. */
export interface StatLine {
  readonly ts?: unknown
  readonly requestId?: unknown
  readonly decision?: unknown
  readonly principal?: unknown
  readonly tool?: unknown
  readonly reason?: unknown
  readonly durationMs?: unknown
  readonly method?: unknown
}

/** Top `n` of merged counters, most first, then by name. */
export function topOf(maps: readonly ReadonlyMap<string, number>[], n: number): Count[] {
  const all = new Map<string, number>()
  for (const m of maps) for (const [k, v] of m) all.set(k, (all.get(k) ?? 0) + v)
  return [...all.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, n)
    .map(([name, count]) => ({ name, count }))
}

export const sumTotals = (buckets: readonly Totals[]): Totals => ({
  allow: buckets.reduce((s, b) => s + b.allow, 0),
  deny: buckets.reduce((s, b) => s + b.deny, 0),
  error: buckets.reduce((s, b) => s + b.error, 0),
})

/**
 * Overview counts of request lines (lines with a string `requestId`, but for the console's own
 * lines, whose `method` starts with `console/`), bucketed by each line's own
 * `ts`, in fixed memory: per-minute counts for 25 hours, latency histograms (log-scale bins, about
 * 4% wide) for the last 64 minutes, and per-hour counters of principals, tools and denial reasons
 * capped at `maxKeysPerHour` names each (the rest count as `(other)`).
 * Does not check: lines older than the buckets kept when they arrive (they are not counted), nor
 * exact percentiles (a bin's middle is reported).
 */
export class StatsIndex {
  readonly #minuteOf = new Float64Array(MINUTES).fill(-1)
  readonly #counts = new Uint32Array(MINUTES * 3)
  readonly #histMinuteOf = new Float64Array(HIST_MINUTES).fill(-1)
  readonly #hist = new Uint32Array(HIST_MINUTES * BINS)
  readonly #hours: (Hour | undefined)[] = new Array<Hour | undefined>(HOURS).fill(undefined)

  constructor(private readonly maxKeysPerHour = 2000) {}

  add(r: StatLine): void {
    if (typeof r.requestId !== 'string' || typeof r.ts !== 'string') return
    // The console's own pages are not requests to the server it watches (it would count itself).
    if (typeof r.method === 'string' && r.method.startsWith('console/')) return
    const d = decisionIndex(r.decision)
    const t = Date.parse(r.ts)
    if (d < 0 || Number.isNaN(t)) return
    const minute = Math.floor(t / MINUTE)
    const slot = minute % MINUTES
    const had = this.#minuteOf[slot] ?? -1
    if (had > minute) return // older than what the ring holds now
    if (had < minute) {
      this.#minuteOf[slot] = minute
      this.#counts.fill(0, slot * 3, slot * 3 + 3)
    }
    this.#counts[slot * 3 + d] = (this.#counts[slot * 3 + d] ?? 0) + 1
    if (typeof r.durationMs === 'number') this.#latency(minute, r.durationMs)
    const hour = this.#hour(Math.floor(t / HOUR))
    if (hour === undefined) return
    if (typeof r.principal === 'string') hour.principals.add(r.principal)
    if (typeof r.tool === 'string') hour.tools.add(r.tool)
    if (d > 0 && typeof r.reason === 'string') hour.denials.add(r.reason)
  }

  #latency(minute: number, ms: number): void {
    const slot = minute % HIST_MINUTES
    const had = this.#histMinuteOf[slot] ?? -1
    if (had > minute) return
    if (had < minute) {
      this.#histMinuteOf[slot] = minute
      this.#hist.fill(0, slot * BINS, (slot + 1) * BINS)
    }
    const i = slot * BINS + bin(ms)
    this.#hist[i] = (this.#hist[i] ?? 0) + 1
  }

  #hour(hour: number): Hour | undefined {
    const slot = hour % HOURS
    const had = this.#hours[slot]
    if (had !== undefined && had.hour > hour) return undefined
    if (had !== undefined && had.hour === hour) return had
    const cap = this.maxKeysPerHour
    const fresh = { hour, principals: new CappedCounter(cap), tools: new CappedCounter(cap), denials: new CappedCounter(cap) }
    this.#hours[slot] = fresh
    return fresh
  }

  #minute(minute: number): Totals {
    const slot = minute % MINUTES
    if (this.#minuteOf[slot] !== minute) return { allow: 0, deny: 0, error: 0 }
    return { allow: this.#counts[slot * 3] ?? 0, deny: this.#counts[slot * 3 + 1] ?? 0, error: this.#counts[slot * 3 + 2] ?? 0 }
  }

  /** The overview at `now` (see {@link TrailStats} for the windows). */
  stats(now: Date): TrailStats {
    const nowMinute = Math.floor(now.getTime() / MINUTE)
    const nowHour = Math.floor(now.getTime() / HOUR)
    const perMinute: Bucket[] = []
    for (let m = nowMinute - 60; m <= nowMinute; m++) perMinute.push({ t: new Date(m * MINUTE).toISOString(), ...this.#minute(m) })
    const perHour: Bucket[] = []
    for (let h = nowHour - 24; h <= nowHour; h++) {
      const minutes: Totals[] = []
      for (let m = h * 60; m < (h + 1) * 60 && m <= nowMinute; m++) minutes.push(this.#minute(m))
      perHour.push({ t: new Date(h * HOUR).toISOString(), ...sumTotals(minutes) })
    }
    const hist = new Float64Array(BINS)
    for (let m = nowMinute - 60; m <= nowMinute; m++) {
      const slot = m % HIST_MINUTES
      if (this.#histMinuteOf[slot] !== m) continue
      for (let i = 0; i < BINS; i++) hist[i] = (hist[i] ?? 0) + (this.#hist[slot * BINS + i] ?? 0)
    }
    const hours = this.#hours.filter((h): h is Hour => h !== undefined && h.hour >= nowHour - 24 && h.hour <= nowHour)
    return {
      perMinute,
      perHour,
      lastHour: sumTotals(perMinute),
      lastDay: sumTotals(perHour),
      p50Ms: quantile(hist, 0.5),
      p99Ms: quantile(hist, 0.99),
      topPrincipals: topOf(
        hours.map((h) => h.principals.counts),
        10,
      ),
      topTools: topOf(
        hours.map((h) => h.tools.counts),
        10,
      ),
      topDenials: topOf(
        hours.map((h) => h.denials.counts),
        10,
      ),
    }
  }
}

/** The nearest-rank quantile of a histogram, as its bin's middle; undefined when empty. */
function quantile(hist: Float64Array, q: number): number | undefined {
  const total = hist.reduce((s, n) => s + n, 0)
  if (total === 0) return undefined
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i] ?? 0
    if (seen >= rank) return Math.round(binValue(i) * 100) / 100
  }
  return undefined
}

/**
 * When each principal was last seen, for at most `cap` principals: past twice that, those seen
 * least recently are dropped down to `cap` (and then read as never seen).
 */
export class LastSeenIndex {
  readonly #last = new Map<string, string>()
  constructor(private readonly cap = 10_000) {}

  add(principal: string, ts: string): void {
    const had = this.#last.get(principal)
    if (had !== undefined && had >= ts) return
    this.#last.set(principal, ts)
    if (this.#last.size <= 2 * this.cap) return
    // Pruned in one pass now and then: amortised O(1) a line, without walking a Map's deleted slots.
    const kept = [...this.#last.entries()].sort((a, b) => (a[1] < b[1] ? 1 : a[1] > b[1] ? -1 : 0)).slice(0, this.cap)
    this.#last.clear()
    for (const [p, t] of kept) this.#last.set(p, t)
  }

  get(principals: readonly string[]): ReadonlyMap<string, string> {
    const out = new Map<string, string>()
    for (const p of principals) {
      const ts = this.#last.get(p)
      if (ts !== undefined) out.set(p, ts)
    }
    return out
  }
}
