// npm run bench:audit: what each audit.fsync policy costs per line, against no fsync at all, in one
// run. Sealed lines (HMAC chain, as serve writes them) through the file sink, 64 lines per turn of
// the event loop so that the interval timer and its thread-pool fsync run as they do under load.
// BENCH_DIR picks the folder (default: the OS temp folder; a tmpfs makes every fsync free).
// Writes bench/results/audit-fsync.md.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AuditLog, FileAuditSink } from '../dist/audit/audit-log.js'
import { machine, publish } from './lib.mjs'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1)
const REPS = Number(process.env.BENCH_REPS ?? 9)
const BATCH = 64
const KEY = Buffer.from('k'.repeat(64))

/** [label, sink options]; the first is the baseline. `rotate` never rotates within a run of this size unless maxBytes says so. */
const POLICIES = [
  ['no fsync (baseline)', { fsync: 'rotate' }],
  ['rotate (64 MiB files)', { fsync: 'rotate', maxBytes: 64 * 1024 * 1024 }],
  ['interval 1000 ms (default)', { fsync: 'interval', fsyncIntervalMs: 1000 }],
  ['interval 100 ms', { fsync: 'interval', fsyncIntervalMs: 100 }],
  ['always', { fsync: 'always' }],
]

let bytesPerLine = 0
const turn = () => new Promise((resolve) => setImmediate(resolve))

/** Lines per second and µs per line for `SECONDS` of writing under one policy. */
async function run(options, seconds = SECONDS) {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'bastion-bench-audit-'))
  const log = new AuditLog(new FileAuditSink(join(dir, 'audit.jsonl'), options), undefined, KEY)
  log.checkpointEvery(1000)
  const fields = { event: 'tool.call', decision: 'allow', reason: 'OK', requestId: 'req-0123456789abcdef', principal: 'key:0123456789abcdef', tool: 'read_file', durationMs: 3 }
  let lines = 0
  const cpu = process.cpuUsage()
  const start = performance.now()
  const end = start + seconds * 1000
  while (performance.now() < end) {
    for (let i = 0; i < BATCH; i++) log.record(fields)
    lines += BATCH
    await turn()
  }
  const ms = performance.now() - start
  const used = process.cpuUsage(cpu)
  log.close()
  bytesPerLine = Math.round(statSync(join(dir, 'audit.jsonl')).size / (lines + 2))
  rmSync(dir, { recursive: true, force: true })
  return { perSecond: (lines * 1000) / ms, usPerLine: (ms * 1000) / lines, cpuPerLine: (used.user + used.system) / lines }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
await run(POLICIES[0][1], 1) // warm-up: the JIT and the page cache, so the first policy measured pays no more than the rest
const results = POLICIES.map(() => [])
for (let rep = 0; rep < REPS; rep++) for (const [i, [, options]] of POLICIES.entries()) results[i].push(await run(options))

const fsType = (() => {
  try {
    return execFileSync('stat', ['-f', '-c', '%T', process.env.BENCH_DIR ?? tmpdir()], { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
})()
const rows = POLICIES.map(([label], i) => {
  const runs = results[i]
  const ratios = runs.map((r, rep) => r.perSecond / results[0][rep].perSecond)
  const perSecond = runs.map((r) => r.perSecond)
  return [
    label,
    `${Math.round(median(perSecond))} (${Math.round(Math.min(...perSecond))}–${Math.round(Math.max(...perSecond))})`,
    median(runs.map((r) => r.usPerLine)).toFixed(2),
    median(runs.map((r) => r.cpuPerLine)).toFixed(2),
    `${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
  ]
})
/** A Markdown table with padded columns (as the formatter writes them). */
function markdown(header, body) {
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((r) => r[c].length)))
  const line = (cells) => `| ${cells.map((cell, c) => cell.padEnd(widths[c])).join(' | ')} |`
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)]
}
publish('audit-fsync.md', [
  '# Audit file fsync policies',
  '',
  `Machine: ${machine()}. Folder: ${process.env.BENCH_DIR ?? tmpdir()} (${fsType}). ${REPS} repetitions × ${SECONDS} s per policy, policies alternated; sealed lines of ${bytesPerLine} bytes through AuditLog and FileAuditSink, ${BATCH} per event-loop turn; median (min–max). CPU is this process's (user + system; thread-pool fsyncs included). Ratios are to "no fsync", pair by pair within a repetition.`,
  '',
  ...markdown(['audit.fsync', 'lines/s', 'µs per line', 'CPU µs per line', 'ratio to no fsync'], rows),
])
