import type { VerifierOmissions, VerifyReport } from '../audit/chain-verifier.js'
import type { RangeVerification } from './trail.js'

/** A place in the trail, comparable: a file's order (oldest first; -1 for files gone) and a line (or row id). */
export interface TrailPosition {
  readonly file: number
  readonly line: number
}

const cmp = (a: TrailPosition, b: TrailPosition): number => a.file - b.file || a.line - b.line

/** The verifier's findings between two positions (inclusive), and the trusted line ranges there to count. */
export interface RangeFindings {
  readonly problems: RangeVerification['problems']
  readonly gaps: RangeVerification['gaps']
  /** Trusted lines within the range, by the verifier's file name, `lo`–`hi` inclusive. */
  readonly trusted: readonly { readonly file: string; readonly lo: number; readonly hi: number }[]
}

/**
 * What a verifier found between `from` and `to`. A bounded verifier that dropped problems or
 * trusted ranges at or before `to` makes the range unverifiable here: one problem says so (fail
 * closed: an intact range past that point reads as forged, and `audit verify` has the full report).
 * Does not check: anything itself; it selects from the verifier's report.
 */
export function rangeFindings(
  report: VerifyReport,
  omitted: VerifierOmissions,
  from: TrailPosition,
  to: TrailPosition,
  pos: (file: string, line: number) => TrailPosition,
  where: (file: string, line: number) => string,
): RangeFindings {
  const inside = (file: string, line: number): boolean => {
    const p = pos(file, line)
    return cmp(p, from) >= 0 && cmp(p, to) <= 0
  }
  const problems: { where: string; kind: string; reason: string }[] = report.problems
    .filter((p) => inside(p.file, p.line))
    .map((p) => ({ where: where(p.file, p.line), kind: p.kind, reason: p.reason }))
  const gaps: { where: string; detail: string }[] = report.gaps.filter((g) => inside(g.file, g.line)).map((g) => ({ where: where(g.file, g.line), detail: g.detail }))
  const dropped = omitted.from
  if (dropped !== undefined && cmp(pos(dropped.file, dropped.line), to) <= 0) {
    if (omitted.problems > 0 || omitted.trusted > 0)
      problems.push({
        where: where(dropped.file, dropped.line),
        kind: 'unverifiable',
        reason: `the trail has more problems than the console keeps (${omitted.problems} more counted from here on): run mcp-bastion audit verify for the full report`,
      })
    if (omitted.gaps > 0)
      gaps.push({ where: where(dropped.file, dropped.line), detail: `${omitted.gaps} more gap(s) counted from here on, not kept: run mcp-bastion audit verify` })
  }
  const trusted: { file: string; lo: number; hi: number }[] = []
  for (const t of report.trusted) {
    const p = pos(t.file, t.from)
    if (p.file < from.file || p.file > to.file) continue
    const lo = p.file === from.file ? Math.max(t.from, from.line) : t.from
    const hi = p.file === to.file ? Math.min(t.to, to.line) : t.to
    if (hi >= lo) trusted.push({ file: t.file, lo, hi })
  }
  return { problems, gaps, trusted }
}

/** The status of a range from its findings. */
export function rangeResult(f: RangeFindings, lines: number): RangeVerification {
  const status = f.problems.length > 0 ? 'forged' : f.gaps.length > 0 ? 'gap' : 'verified'
  return { status, lines, problems: f.problems, gaps: f.gaps }
}
