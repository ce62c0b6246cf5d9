/** What `doctor` found about one thing: a verdict, why, and what to do about it. */
export type Verdict = 'pass' | 'warn' | 'fail'

export interface Finding {
  /** Which check (stable, for scripts): `tls`, `secrets`, `live.origin`, … */
  readonly check: string
  readonly verdict: Verdict
  /** What was found, naming the config key or file; never a secret's value. */
  readonly reason: string
  /** What to do, for a warning or a failure. */
  readonly fix?: string
}

export const pass = (check: string, reason: string): Finding => ({ check, verdict: 'pass', reason })
export const warn = (check: string, reason: string, fix: string): Finding => ({ check, verdict: 'warn', reason, fix })
export const fail = (check: string, reason: string, fix: string): Finding => ({ check, verdict: 'fail', reason, fix })

/** The findings as a table for people: one line each, the fix indented below a warning or failure. */
export function formatFindings(findings: readonly Finding[]): string {
  const width = Math.max(...findings.map((f) => f.check.length), 5)
  const lines = findings.map((f) => {
    const head = `${f.verdict.toUpperCase().padEnd(4)}  ${f.check.padEnd(width)}  ${f.reason}`
    return f.fix === undefined ? head : `${head}\n${' '.repeat(width + 8)}fix: ${f.fix}`
  })
  const count = (v: Verdict) => findings.filter((f) => f.verdict === v).length
  return `${lines.join('\n')}\n\n${count('pass')} pass, ${count('warn')} warn, ${count('fail')} fail\n`
}
