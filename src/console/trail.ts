import type { AuditRecord } from '../audit/audit-log.js'

/**
 * What the operator console reads of the audit trail, whichever sink stores it (the file and its
 * rotated siblings, or the PostgreSQL table). Readers are read-only: they never write, lock or
 * repair the trail; the writer (AuditLog) owns it.
 */

/** A filter over audit lines. Every field given must match; absent fields match everything. */
export interface TrailQuery {
  /** ISO timestamps, inclusive `from`, exclusive `to`, compared with each line's `ts`. */
  readonly from?: string
  readonly to?: string
  /** Exact match on the line's field of that name. */
  readonly principal?: string
  readonly tool?: string
  readonly decision?: 'allow' | 'deny' | 'error'
  readonly reason?: string
  readonly requestId?: string
  readonly event?: string
  /** Case-insensitive substring of the stored line's text (which is redacted as written). */
  readonly text?: string
  /** At most this many entries (1–1000). */
  readonly limit: number
  /** Older than this entry (paging back), from a previous page's `next`. */
  readonly before?: string
  /** Newer than this entry (live tail), from a previous page's `newest`, oldest first then. */
  readonly after?: string
}

export interface TrailEntry {
  /** Opaque, stable position of the line in the trail (for `before`/`after` and verification). */
  readonly cursor: string
  /** Where a person finds the line: `audit.jsonl:1234`, `audit.jsonl.2026-…:12`, `table#5678`. */
  readonly where: string
  /** The line as stored, parsed (chain fields included). */
  readonly record: AuditRecord
}

export interface TrailPage {
  /** Newest first; with `after`: oldest first (lines newer than the cursor). */
  readonly entries: readonly TrailEntry[]
  /**
   * Cursor to pass as `before` for the next (older) page; absent when the scan reached the oldest
   * line. With `after`: the cursor to pass as `after` to continue (the page was cut by `limit` or
   * by the scan budget); absent when caught up.
   */
  readonly next?: string
  /** The newest line's cursor in the whole trail now (for a live tail to start `after`). */
  readonly newest?: string
  /**
   * Set when the reader stopped before the limit because it read as much as one request may
   * (bounded work on a large trail): the lines older than this were not searched yet; `next` continues.
   */
  readonly searchedBackTo?: string
}

/** The chain's verification of the lines between two cursors, computed with the audit verifier. */
export interface RangeVerification {
  /**
   * `verified`: every line in the range verifies; `gap`: they do, but an `audit.repaired` line records
   * lines that were never stored (or bytes cut); `forged`: some line was edited, forged, deleted,
   * torn or reordered; `pending`: the range is newer than what the verifier has read so far.
   */
  readonly status: 'verified' | 'gap' | 'forged' | 'pending'
  /** Lines in the range that verify. */
  readonly lines: number
  /** `kind`: the verifier's (`forged`, `torn`, `deleted`, …), or `unverifiable` when a bounded reader kept too few problems to answer. */
  readonly problems: readonly { readonly where: string; readonly kind: string; readonly reason: string }[]
  readonly gaps: readonly { readonly where: string; readonly detail: string }[]
}

/** Counts for the overview. A "request" is a line with a `requestId`. */
export interface TrailStats {
  /** Last 60 whole minutes plus the current one, oldest first: `t` is the minute's start (ISO). */
  readonly perMinute: readonly Bucket[]
  /** Last 24 hours plus the current one, oldest first. */
  readonly perHour: readonly Bucket[]
  /** The sum of `perMinute`. */
  readonly lastHour: Totals
  /** The sum of `perHour`. */
  readonly lastDay: Totals
  /** Over the minutes of `perMinute`, from `durationMs`; undefined without requests. The file reader's are approximate (bins about 4% wide). */
  readonly p50Ms: number | undefined
  readonly p99Ms: number | undefined
  /** Over the hours of `perHour`, most first (then by name), at most 10 each; the file reader counts names past its per-hour cap as `(other)`. */
  readonly topPrincipals: readonly Count[]
  readonly topTools: readonly Count[]
  /** Reasons of deny and error lines. */
  readonly topDenials: readonly Count[]
}
export interface Bucket extends Totals {
  readonly t: string
}
export interface Totals {
  readonly allow: number
  readonly deny: number
  readonly error: number
}
export interface Count {
  readonly name: string
  readonly count: number
}

export interface TrailReader {
  /** Which sink: shown on the pages. */
  readonly kind: 'file' | 'postgres'
  query(q: TrailQuery): Promise<TrailPage>
  /** Every line matching the filter (`limit`, `before`, `after` ignored), oldest first, as stored (each ends with `\n`). */
  export(q: Omit<TrailQuery, 'limit' | 'before' | 'after'>): AsyncIterable<string>
  /** Verification of the lines from `from` to `to` (cursors, inclusive). */
  verify(from: string, to: string): Promise<RangeVerification>
  /** Overview counts at `now`. */
  stats(now: Date): Promise<TrailStats>
  /** When each principal was last seen on a request line (ISO), for those seen. */
  lastSeen(principals: readonly string[]): Promise<ReadonlyMap<string, string>>
  close(): Promise<void>
}
