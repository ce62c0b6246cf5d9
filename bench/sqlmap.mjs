// npm run bench:sqlmap: sqlmap against the SQL tools (`query`, `run_query`) over the 2026-07-28
// stateless protocol, on the embedded database and on a real PostgreSQL, every injectable input
// marked. Then: was anything injectable, did the `secrets` canary or database error text ever go
// over the wire, are the demo rows unchanged. A deliberately injectable tool on PostgreSQL is the
// positive control. Writes bench/results/sqlmap.md; exit 1 on any finding or a missed control.
// Needs sqlmap on PATH (Debian: apt-get install sqlmap), PostgreSQL on 127.0.0.1:5432 (trust auth,
// database `test`) and a fresh build (npm run build).
//   SQLMAP_LEVEL (3), SQLMAP_RISK (2), SQLMAP_TECHNIQUES (BEUST), SQLMAP_ONLY (a substring of
//   "<backend>/<run>", to run a subset), SQLMAP_RUN_TIMEOUT_S (900), BENCH_KEEP=1 keeps the logs.
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { pino } from 'pino'
import { z } from 'zod'
import { createBastion } from '../dist/index.js'
import { EmbeddedDatabase, PostgresDatabase } from '../dist/tools/sql/database.js'
import { DEMO_CANARY, DEMO_QUERIES, DEMO_TABLES, seedDemo } from '../dist/tools/sql/demo.js'

const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/test'
const LEVEL = Number(process.env.SQLMAP_LEVEL ?? 3)
const RISK = Number(process.env.SQLMAP_RISK ?? 2)
const TECHNIQUES = process.env.SQLMAP_TECHNIQUES ?? 'BEUST'
const ONLY = process.env.SQLMAP_ONLY ?? ''
const RUN_TIMEOUT_MS = Number(process.env.SQLMAP_RUN_TIMEOUT_S ?? 900) * 1000
const KEEP = process.env.BENCH_KEEP === '1'
const EXPECTED_ROWS = { customers: 40, orders: 120, products: 10, secrets: 1 }
const SQL_ERROR_TEXT = /SQLSTATE|syntax error|relation|pg_|ERROR:/i
const HUGE = { rate: '100000/s' }

const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'sqlmap', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
}

/**
 * The sqlmap targets: tool arguments as JSON text with sqlmap's custom marker `*` after every
 * injectable value. Numbers stay JSON numbers (`10*`): sqlmap quotes its payload there, which is
 * what a client sending a string for a number does. Besides the text filter value, `query` has an
 * integer, a timestamp and a list value: payloads there reach the database and fail its type
 * checks, so the database's own error text has a chance to go over the wire.
 */
const RUNS = [
  {
    id: 'query',
    tool: 'query',
    args: '{"table":"customers*","columns":["id","name*"],"filters":[{"column":"country*","op":"eq*","value":"PT*"},{"column":"id","op":"gte","value":1*},{"column":"created_at","op":"gte","value":"2026-01-01*"},{"column":"account_manager","op":"in","value":["alice*","bob"]}],"orderBy":[{"column":"id*","direction":"asc*"}],"limit":10*,"offset":0*}',
  },
  { id: 'run_query-orders_of_customer', tool: 'run_query', args: '{"name":"orders_of_customer*","params":{"customer_id":1*,"max_rows":10*}}' },
  { id: 'run_query-sales_by_category', tool: 'run_query', args: '{"name":"sales_by_category*","params":{"status":"paid*"}}' },
  // The positive control (PostgreSQL only): a tool of this script that pastes its input into SQL.
  // sqlmap must find it, or the harness (request files, markers, parsing) is what failed.
  { id: 'control', tool: 'control_lookup', args: '{"country":"PT*"}', control: true },
]

const fail = (message) => {
  process.stderr.write(`bench:sqlmap: ${message}\n`)
  process.exit(1)
}

/** sqlmap's version, or exit 1 with how to install it. */
function sqlmapVersion() {
  const r = spawnSync('sqlmap', ['--version'], { encoding: 'utf8' })
  if (r.error !== undefined) fail(`sqlmap is not on PATH (${r.error.code}); install it: apt-get install sqlmap (Debian package)`)
  const version = /\d+\.\d+(\.\d+)*(#\w+)?/.exec(r.stdout)?.[0]
  if (version === undefined) fail(`sqlmap --version printed no version: ${r.stdout}${r.stderr}`)
  return version
}

const bodyOf = (tool, args) => `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"${tool}","arguments":${args},"_meta":${JSON.stringify(META)}}}`
const headersOf = (tool, key) => ({
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': '2026-07-28',
  'mcp-method': 'tools/call',
  'mcp-name': tool,
  authorization: `Bearer ${key}`,
})

/** A raw HTTP request for `sqlmap -r`. */
function requestFile(url, tool, key, args) {
  const u = new URL(url)
  const headers = Object.entries({ host: u.host, ...headersOf(tool, key) }).map(([k, v]) => `${k}: ${v}`)
  return `POST ${u.pathname} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${bodyOf(tool, args)}`
}

/** The unmarked request must succeed with rows, or sqlmap compares its payloads with an error page. */
async function checkBaseline(url, key, run) {
  const args = run.args.replaceAll('*', '')
  JSON.parse(args)
  const res = await fetch(url, { method: 'POST', headers: headersOf(run.tool, key), body: bodyOf(run.tool, args) })
  const text = await res.text()
  const body = JSON.parse(text.startsWith('{') ? text : '{}')
  const result = body.result?.content?.[0]?.text
  const parsed = result === undefined || body.result.isError ? undefined : JSON.parse(result)
  const rows = Array.isArray(parsed) ? parsed.length : parsed?.rowCount
  if (res.status !== 200 || body.error !== undefined || !(rows > 0)) throw new Error(`${run.id}: the plain request fails (${res.status}): ${text.slice(0, 300)}`)
}

/** Row counts and a digest of every demo table (and which tables exist). */
function snapshot(db) {
  return db.transaction('read', async (s) => {
    const out = {}
    for (const t of Object.keys(EXPECTED_ROWS)) {
      const r = await s.query(`SELECT count(*)::int AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) AS digest FROM ${t} x`, [])
      out[t] = r.rows[0]
    }
    out.tables = (await s.query("SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') AS t FROM pg_tables WHERE schemaname = 'public'", [])).rows[0]?.t
    return out
  })
}

function unchanged(before, after) {
  const counts = Object.entries(EXPECTED_ROWS).every(([t, n]) => after[t]?.n === n)
  return counts && JSON.stringify(before) === JSON.stringify(after)
}

/** Split sqlmap's `-t` traffic file into responses: status and text (headers and body). */
function responses(trafficFile) {
  let text = ''
  try {
    text = readFileSync(trafficFile, 'utf8')
  } catch {
    return { requests: 0, list: [] }
  }
  const requests = (text.match(/^HTTP request \[#\d+\]:/gm) ?? []).length
  const list = []
  for (const chunk of text.split(/\r?\n#{76}\r?\n/)) {
    const m = /^HTTP response \[#\d+\] \((\d{3})[^\n]*\n/m.exec(chunk)
    if (m !== null) list.push({ status: Number(m[1]), text: chunk.slice(m.index + m[0].length) })
  }
  return { requests, list }
}

/** What sqlmap's console output says about the marked parameters. */
function verdict(log) {
  const injectable = /sqlmap identified the following injection point|parameter '[^']*' appears to be '[^']*' injectable|parameter '[^']*' is vulnerable/i.test(log)
  const clean = /all tested parameters do not appear to be injectable/i.test(log)
  const tested = (log.match(/parameter '[^']*' does not seem to be injectable/gi) ?? []).length
  // "might not be injectable" is the common case; keep the ones that suspect something.
  const heuristics = [...new Set(log.match(/heuristic \([^)]*\) test shows that [^\n]*/gi) ?? [])].filter((h) => !/might not be injectable/.test(h))
  const criticals = [...new Set(log.match(/\[CRITICAL\] [^\n]*/g) ?? [])]
  const techniques = [...new Set([...log.matchAll(/^\s+Type: ([^\n]+)$/gm)].map((m) => m[1].trim()))]
  return { injectable, clean, tested, heuristics, criticals, techniques }
}

function runSqlmap(file, outDir, logFile, trafficFile) {
  const args = [
    '-r',
    file,
    '--batch',
    '--ignore-stdin',
    '--dbms=PostgreSQL',
    `--level=${LEVEL}`,
    `--risk=${RISK}`,
    `--technique=${TECHNIQUES}`,
    '--threads=2',
    '--flush-session',
    '--skip-waf',
    `--output-dir=${outDir}`,
    '--disable-coloring',
    '-t',
    trafficFile,
    // Keep testing every marked parameter after a finding; never widen the level and risk asked for.
    '--answers=keep testing=Y,extending provided=N,quit=N',
  ]
  return new Promise((resolve) => {
    const log = createWriteStream(logFile)
    let text = ''
    const child = spawn('sqlmap', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TERM: 'dumb' } })
    const timer = setTimeout(() => child.kill('SIGTERM'), RUN_TIMEOUT_MS)
    const take = (c) => {
      text += c
      log.write(c)
    }
    child.stdout.on('data', take)
    child.stderr.on('data', take)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      log.end()
      resolve({ code, signal, text })
    })
  })
}

const auditLines = (path) => {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l))
  } catch {
    return []
  }
}

/** `a×3, b×1`: how often each value occurs, sorted by value. */
const tally = (values) => {
  const n = new Map()
  for (const v of values) n.set(v, (n.get(v) ?? 0) + 1)
  return [...n.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([s, c]) => `${s}×${c}`)
    .join(', ')
}

/** Snapshot through a connection of its own, closed after. */
async function snapshotOnce(db) {
  try {
    return await snapshot(db)
  } finally {
    await db.close()
  }
}

/** One backend: a bastion, the sqlmap runs against it, the checks after. */
async function backend(name, work, prepare) {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), `bastion-sqlmap-${name}-`)))
  const target = await prepare(dir)
  const rows = []
  try {
    // The embedded database allows one process-wide opener at a time: snapshots close before bastion opens it.
    const before = await snapshotOnce(target.open())
    const bastion = await createBastion({
      baseDir: dir,
      logger: pino({ level: 'silent' }),
      config: {
        limits: { principal: HUGE, anonymous: HUGE, global: HUGE, concurrency: { perPrincipal: 64, global: 256 } },
        alerts: { rules: [] },
        ...target.config,
      },
    })
    target.setup?.(bastion)
    let after
    const auditPath = join(dir, '.bastion', 'audit.jsonl')
    try {
      const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
      if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(running.url)) throw new Error(`refusing a target that is not 127.0.0.1: ${running.url}`)
      const key = bastion.keys.create({ name: 'sqlmap', roles: ['admin'], expiresAt: null }).key
      for (const run of RUNS) {
        if (!`${name}/${run.id}`.includes(ONLY) || (run.control && target.setup === undefined)) continue
        rows.push(await attack(name, run, running.url, key, work, auditPath))
      }
    } finally {
      await bastion.close()
      after = await snapshotOnce(target.open()).catch(() => undefined)
    }
    const same = after !== undefined && unchanged(before, after)
    if (!same) process.stderr.write(`${name}: rows changed: before ${JSON.stringify(before)} after ${JSON.stringify(after)}\n`)
    for (const row of rows) row.rowsUnchanged = same
    return rows
  } finally {
    await target.cleanup()
    if (!KEEP) rmSync(dir, { recursive: true, force: true })
  }
}

/** One sqlmap run against one request file, and what its traffic and the audit log show. */
async function attack(name, run, url, key, work, auditPath) {
  await checkBaseline(url, key, run)
  const file = join(work, `${name}-${run.id}.req`)
  writeFileSync(file, requestFile(url, run.tool, key, run.args))
  const trafficFile = join(work, `${name}-${run.id}.traffic`)
  const logFile = join(work, `${name}-${run.id}.log`)
  const auditBefore = auditLines(auditPath).length
  process.stderr.write(`sqlmap ${name}/${run.id} … `)
  const start = performance.now()
  const r = await runSqlmap(file, join(work, `out-${name}-${run.id}`), logFile, trafficFile)
  const seconds = (performance.now() - start) / 1000
  const audit = auditLines(auditPath).slice(auditBefore)
  const traffic = responses(trafficFile)
  const v = verdict(r.text)
  const errorText = traffic.list.filter((x) => SQL_ERROR_TEXT.test(x.text))
  const row = {
    backend: name,
    run: run.id,
    tool: run.tool,
    control: run.control === true,
    marked: (run.args.match(/\*/g) ?? []).length,
    requests: traffic.requests,
    auditReasons: tally(audit.map((l) => `${l.event}/${l.reason}`)),
    statuses: tally(traffic.list.map((x) => x.status)),
    fiveXX: traffic.list.filter((x) => x.status >= 500).length,
    injectable: v.injectable,
    complete: v.clean || v.injectable,
    tested: v.tested,
    heuristics: v.heuristics,
    criticals: v.criticals,
    techniques: v.techniques,
    exit: r.signal ?? r.code,
    leaked: traffic.list.filter((x) => x.text.includes(DEMO_CANARY)).length,
    errorText: errorText.length,
    errorSample: errorText[0]?.text.slice(0, 400),
    seconds,
  }
  process.stderr.write(`${seconds.toFixed(0)} s, ${row.requests} requests, ${row.injectable ? 'INJECTABLE' : row.complete ? 'not injectable' : 'INCOMPLETE'}\n`)
  return row
}

/** The embedded database under bastion's state directory (bastion's default `sql`), seeded by the first opener. */
function embedded(dir) {
  const path = join(dir, '.bastion', 'pgdata')
  return { config: {}, open: () => new EmbeddedDatabase(path, { statementTimeoutMs: 60_000, seed: seedDemo }), cleanup: async () => {} }
}

/** A fresh PostgreSQL database with the demo data, dropped at the end. */
async function postgres() {
  const name = `bastion_sqlmap_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3000 })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  const url = `postgres://postgres@127.0.0.1:5432/${name}`
  const open = () => new PostgresDatabase(url, { poolSize: 1, statementTimeoutMs: 60_000, onError: () => {} })
  const seeding = open()
  try {
    await seeding.transaction('write', seedDemo)
  } finally {
    await seeding.close()
  }
  process.env.BASTION_SQLMAP_URL = url
  // Read-only at the session level: the control is injectable, the database still refuses writes.
  const controlPool = new pg.Pool({ connectionString: url, max: 2, options: '-c default_transaction_read_only=on -c statement_timeout=15000' })
  return {
    config: { sql: { url: { env: 'BASTION_SQLMAP_URL' }, tables: DEMO_TABLES, queries: DEMO_QUERIES } },
    open,
    setup(bastion) {
      bastion.tool({
        name: 'control_lookup',
        description: 'Positive control for bench/sqlmap.mjs: deliberately injectable',
        input: z.strictObject({ country: z.string().max(1024) }),
        permissions: ['bench:control'],
        run: async ({ country }) => {
          const result = await controlPool.query(`SELECT id, name FROM customers WHERE country = '${country}' ORDER BY id`).catch(() => ({ rows: [] }))
          return { content: [{ type: 'text', text: JSON.stringify(result.rows) }] }
        },
      })
    },
    async cleanup() {
      await controlPool.end()
      const c = new pg.Client({ connectionString: PG_ADMIN_URL })
      await c.connect()
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await c.end()
      }
    },
  }
}

const yes = (b) => (b ? '**yes**' : 'no')

const version = sqlmapVersion()
const work = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-sqlmap-run-')))
const started = performance.now()
const rows = []
try {
  rows.push(...(await backend('embedded', work, embedded)))
  rows.push(...(await backend('postgres', work, postgres)))
} catch (error) {
  process.stderr.write(`\nsqlmap logs and traffic: ${work}\n`)
  fail(error instanceof Error ? (error.stack ?? error.message) : String(error))
}
const total = (performance.now() - started) / 1000

const lines = [
  '# sqlmap against the SQL tools',
  '',
  `sqlmap ${version}, \`--level=${LEVEL} --risk=${RISK} --technique=${TECHNIQUES} --dbms=PostgreSQL --threads=2 --batch\`, one request file per tool and query with every injectable value marked \`*\`; 2026-07-28 stateless \`tools/call\` over loopback HTTP as an admin key; ${new Date().toISOString().slice(0, 10)}, Node ${process.version}. Total ${(total / 60).toFixed(1)} min.`,
  '',
  '| backend | tool | parameters marked | requests sent | HTTP statuses | injectable | canary leaked | SQL error text on the wire | rows unchanged | sqlmap | level/risk/techniques | duration |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
]
for (const r of rows) {
  const tool = r.control ? `${r.tool} (positive control)` : r.run === r.tool ? r.tool : `${r.tool} (${r.run.slice(r.tool.length + 1)})`
  const injectable = r.control ? (r.injectable ? 'yes (expected)' : '**no: the control was missed**') : r.injectable ? '**yes**' : r.complete ? 'no' : '**incomplete**'
  lines.push(
    `| ${r.backend} | ${tool} | ${r.marked} | ${r.requests} | ${r.statuses} | ${injectable} | ${yes(r.leaked > 0)} | ${yes(r.errorText > 0)} | ${r.rowsUnchanged ? 'yes' : '**no**'} | ${version} | ${LEVEL}/${RISK}/${TECHNIQUES} | ${r.seconds.toFixed(0)} s |`,
  )
}
lines.push('', 'Audit lines per run (event/reason), and the parameters sqlmap reported as tested and not injectable:', '')
for (const r of rows) lines.push(`- ${r.backend}/${r.run}: ${r.auditReasons}; ${r.tested} of ${r.marked} parameters not injectable`)
const notes = rows.flatMap((r) => [
  ...(r.techniques.length > 0 ? [`- ${r.backend}/${r.run}: sqlmap found ${r.techniques.join(', ')}`] : []),
  ...r.heuristics.map((h) => `- ${r.backend}/${r.run}: ${h}`),
  ...r.criticals.filter((c) => !/do not appear to be injectable/.test(c)).map((c) => `- ${r.backend}/${r.run}: ${c}`),
  ...(r.errorSample === undefined ? [] : [`- ${r.backend}/${r.run}: SQL error text in a response: \`${r.errorSample.replace(/\s+/g, ' ').slice(0, 300)}\``]),
  ...(r.fiveXX > 0 ? [`- ${r.backend}/${r.run}: ${r.fiveXX} responses with a 5xx status`] : []),
  ...(r.exit === 0 ? [] : [`- ${r.backend}/${r.run}: sqlmap ended with ${r.exit}`]),
])
if (notes.length > 0) lines.push('', 'sqlmap notes:', '', ...notes)
const text = `${lines.join('\n')}\n`
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/sqlmap.md', import.meta.url), text)
process.stdout.write(text)

const bad = rows.some((r) => (r.control ? !r.injectable || !r.rowsUnchanged : r.injectable || !r.complete || r.leaked > 0 || r.errorText > 0 || !r.rowsUnchanged || r.fiveXX > 0))
if (bad || KEEP) process.stderr.write(`sqlmap logs and traffic: ${work}\n`)
else rmSync(work, { recursive: true, force: true })
process.exit(bad ? 1 : 0)
