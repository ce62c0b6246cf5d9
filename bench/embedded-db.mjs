// node bench/embedded-db.mjs (after npm run build): what the embedded demo database (PGlite) costs
// the server on its first `query`, per PGlite configuration, in one run. Each measurement is a
// child process of its own, so that one configuration's WebAssembly memory never counts for the
// next: RSS before the database opens, the time to the first query's result (on a new folder that
// is initdb, the demo seed and the query, as `mcp-bastion serve` does on its first `query`), RSS
// after it and after 100 further queries, and the peak (VmHWM). "reopen" is the next start of
// the server on the folder a first start created. BENCH_REPS runs per row (median, range).
// Writes bench/results/embedded-db.md.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { machine, median, publish } from './lib.mjs'

const REPS = Number(process.env.BENCH_REPS ?? 3)
const FURTHER = 100
const QUERY = 'SELECT id, name, email, country FROM customers WHERE account_manager = $1 ORDER BY id LIMIT 20'

// PGlite 0.5's own start parameters, which `startParams` replaces rather than extends.
const PGLITE_DEFAULT_START = [
  '--single',
  '-F',
  '-O',
  '-j',
  '-c',
  'search_path=public',
  '-c',
  'exit_on_error=false',
  '-c',
  'log_checkpoints=false',
  '-c',
  'max_worker_processes=0',
  '-c',
  'max_parallel_workers=0',
  '-c',
  'max_parallel_workers_per_gather=0',
  '-c',
  'io_method=sync',
  '-c',
  'max_parallel_maintenance_workers=0',
]

/**
 * [label, how]. `options` rows open PGlite with those options through the same transaction
 * wrapper as EmbeddedDatabase (the first, `PGlite.create(dir)`, is the code before this change and
 * the baseline); the `dist` row is this checkout's EmbeddedDatabase, exactly what serve runs.
 */
// Not a row: `initialMemory` below 128 MiB, which pglite.wasm refuses to link ("memory import 0 is
// smaller than initial 2048").
const CONFIGS = [
  ['PGlite.create(dir) (before, baseline)', { options: {} }],
  ['shared_buffers 16MB only', { options: { startParams: [...PGLITE_DEFAULT_START, '-c', 'shared_buffers=16MB'] } }],
  ['EmbeddedDatabase (this checkout: shared_buffers 16MB, initdb in a child process)', { dist: true }],
]

const rss = () => process.memoryUsage().rss
const peak = () => Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? Number.NaN) * 1024

/** A SqlDatabase over PGlite opened with `options`, the way EmbeddedDatabase wraps it (read-only transaction, statement timeout). */
function rawDatabase(dir, options, seed) {
  let db
  const session = (tx) => ({
    async query(text, values) {
      const result = await tx.query(text, [...values])
      return { fields: result.fields.map((f) => f.name), rows: result.rows, rowCount: result.rows.length }
    },
  })
  return {
    async transaction(mode, work) {
      if (db === undefined) {
        const { PGlite } = await import('@electric-sql/pglite')
        db = await PGlite.create(dir, options)
        await db.transaction((tx) => seed(session(tx)))
      }
      return db.transaction(async (tx) => {
        if (mode === 'read') await tx.query('SET TRANSACTION READ ONLY')
        await tx.query('SET LOCAL statement_timeout = 5000')
        return work(session(tx))
      })
    },
    close: () => db?.close(),
  }
}

async function child(index, dir) {
  const [, how] = CONFIGS[index]
  const { EmbeddedDatabase } = await import('../dist/tools/sql/database.js')
  const { seedDemo } = await import('../dist/tools/sql/demo.js')
  const db = how.dist ? new EmbeddedDatabase(dir, { statementTimeoutMs: 5000, seed: seedDemo }) : rawDatabase(dir, how.options, seedDemo)
  const out = { rssBefore: rss() }
  const start = performance.now()
  const first = await db.transaction('read', (s) => s.query(QUERY, ['alice']))
  out.firstMs = performance.now() - start
  if (first.rows.length !== 20) throw new Error(`first query answered ${first.rows.length} rows, not 20`)
  out.rssFirst = rss()
  out.peakFirst = peak()
  for (let i = 0; i < FURTHER; i++) {
    const r = await db.transaction('read', (s) => s.query(QUERY, [i % 2 === 0 ? 'bob' : 'alice']))
    if (r.rows.length !== 20) throw new Error(`query ${i} answered ${r.rows.length} rows, not 20`)
  }
  out.rssFurther = rss()
  out.peak = peak()
  // Read-only must still be refused by PostgreSQL itself.
  out.readOnly = await db
    .transaction('read', (s) => s.query('DELETE FROM secrets', []))
    .then(
      () => 'write went through',
      (e) => (/read-only/.test(String(e?.message)) ? 'refused' : `other error: ${e?.message}`),
    )
  await db.close()
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

async function measureOne(index, dir) {
  const { stdout } = await promisify(execFile)(process.execPath, [new URL(import.meta.url).pathname, '--child', String(index), dir], { maxBuffer: 1 << 20 })
  return JSON.parse(stdout.trim().split('\n').at(-1))
}

if (process.argv[2] === '--child') {
  await child(Number(process.argv[3]), process.argv[4])
} else {
  // results[scenario][config] = [run, …]; configurations interleaved within each repetition.
  const results = { new: CONFIGS.map(() => []), reopen: CONFIGS.map(() => []) }
  for (let rep = 0; rep < REPS; rep++) {
    for (let i = 0; i < CONFIGS.length; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'bastion-bench-pglite-'))
      try {
        results.new[i].push(await measureOne(i, join(dir, 'pgdata')))
        results.reopen[i].push(await measureOne(i, join(dir, 'pgdata')))
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
      process.stderr.write('.')
    }
  }
  process.stderr.write('\n')
  const mib = (xs) => (median(xs) / 1048576).toFixed(0)
  const lines = [
    '# Embedded database (PGlite): memory and time of the first query',
    '',
    `Machine: ${machine()}. PGlite ${JSON.parse(readFileSync(new URL('../node_modules/@electric-sql/pglite/package.json', import.meta.url), 'utf8')).version}.`,
    `One child process per measurement; medians of ${REPS} runs, configurations interleaved. RSS in MiB. "new": a new folder (initdb, demo seed, query:`,
    'what `serve` does on its first `query`); "reopen": the next process on that folder. Ratios are against the baseline row of the same run.',
    '',
  ]
  for (const scenario of ['new', 'reopen']) {
    const base = results[scenario][0]
    lines.push(
      `## ${scenario}`,
      '',
      `| configuration | RSS before open | first result (ms) | RSS after first | ×baseline | RSS after +${FURTHER} | peak RSS | read-only write |`,
      '|---|--:|--:|--:|--:|--:|--:|---|',
    )
    CONFIGS.forEach(([label], i) => {
      const r = results[scenario][i]
      const ratio = (median(r.map((x) => x.rssFirst)) / median(base.map((x) => x.rssFirst))).toFixed(2)
      const ms = r.map((x) => x.firstMs)
      lines.push(
        `| ${label} | ${mib(r.map((x) => x.rssBefore))} | ${median(ms).toFixed(0)} (${Math.min(...ms).toFixed(0)}–${Math.max(...ms).toFixed(0)}) | ${mib(r.map((x) => x.rssFirst))} | ${ratio} | ${mib(r.map((x) => x.rssFurther))} | ${mib(r.map((x) => x.peak))} | ${[...new Set(r.map((x) => x.readOnly))].join(', ')} |`,
      )
    })
    lines.push('')
  }
  publish('embedded-db.md', lines)
}
