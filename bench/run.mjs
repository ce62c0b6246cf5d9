// npm run bench: what each security layer costs, against the bare MCP SDK and a peer framework,
// measured in one run on this machine. Every server runs in its own process; load comes from
// another (autocannon); configurations alternate; ratios are taken pair by pair within a
// repetition. Writes bench/results/latest.md and prints it. Needs Redis on 127.0.0.1:6379.
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { promisify } from 'node:util'
import { memoryFigures } from './memory.mjs'

const run = promisify(execFile)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const REPS = Number(process.env.BENCH_REPS ?? 3)
const here = (p) => new URL(p, import.meta.url).pathname

const CONFIGS = [
  ['sdk-stateless-new', 'bare SDK v2, stateless example (new server and validator per request)'],
  ['sdk-stateless-shared', 'bare SDK v2, stateless, shared validator (baseline)'],
  ['sdk-session', 'bare SDK v2, 2025-11-25 session'],
  ['bastion-minimal', 'bastion, layers off (API key, RBAC; audit lines sealed and redacted but discarded; no limiter, no PII masking)'],
  ['bastion-jwt', '+ JWT ES256 with token cache (instead of API key)'],
  ['bastion-jwt-nocache', '+ JWT ES256 without token cache'],
  ['bastion-policy', '+ policy with a CEL condition'],
  ['bastion-memory-limiter', '+ memory rate limiter'],
  ['bastion-redis-limiter', '+ Redis rate limiter'],
  ['bastion-audit', '+ audit to file'],
  ['bastion-pii', '+ PII masking of results'],
  ['bastion-full', 'bastion, whole pipeline (API key, policy CEL, memory limiter, audit file, PII masking)'],
  ['fastmcp', 'fastmcp 4.x peer, authenticate hook with an API key (2025-11-25 session)'],
]
const ONE_CONNECTION = new Set(['sdk-stateless-shared', 'bastion-minimal', 'bastion-full'])
const BASELINE = 'sdk-stateless-shared'

function procStats(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return { cpuMs: (Number(f[11]) + Number(f[12])) * 10, hwm: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024 }
}

async function start(variant) {
  const child = spawn(process.execPath, [here('./servers.mjs'), variant], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c) => {
    err += c
  })
  const target = await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (c) => {
      out += c
      const m = /BENCH_TARGET (.*)\n/.exec(out)
      if (m) resolve(JSON.parse(m[1]))
    })
    child.once('exit', (code) => reject(new Error(`${variant} exited ${code}: ${err}`)))
  })
  const check = await fetch(target.url, { method: 'POST', headers: target.headers, body: target.body })
  const text = await check.text()
  if (check.status !== 200 || !text.includes('"text":"hi"')) throw new Error(`${variant}: echo check failed (${check.status}): ${text.slice(0, 200)}`)
  return { variant, child, target }
}

async function load(server, connections, seconds) {
  const before = procStats(server.child.pid)
  const { stdout } = await run(process.execPath, [here('./load-autocannon.mjs'), JSON.stringify(server.target), String(connections), String(seconds)], { maxBuffer: 1 << 20 })
  const after = procStats(server.child.pid)
  const r = JSON.parse(stdout)
  // Our servers must answer every request; the peer's failures are counted and shown instead.
  if ((r.non2xx > 0 || r.errors > 0) && server.variant !== 'fastmcp') throw new Error(`${server.variant}: ${r.non2xx} non-2xx, ${r.errors} errors`)
  return { rps: r.rps, mean: r.mean, p50: r.p50, p99: r.p99, cpuUs: ((after.cpuMs - before.cpuMs) * 1000) / Math.max(1, r.requests), rss: after.hwm, failed: r.non2xx + r.errors }
}

const started = Date.now()
const servers = []
for (const [variant] of CONFIGS) servers.push(await start(variant))
const results = new Map()
try {
  for (const s of servers) await load(s, 32, 2) // warm-up, not measured
  for (const connections of [32, 1]) {
    const subset = servers.filter((s) => connections === 32 || ONE_CONNECTION.has(s.variant))
    for (let rep = 0; rep < REPS; rep++) {
      const order = rep % 2 === 0 ? subset : [...subset].reverse()
      for (const s of order) {
        const key = `${s.variant}@${connections}`
        if (!results.has(key)) results.set(key, [])
        results.get(key).push(await load(s, connections, SECONDS))
        process.stderr.write(`.${s.variant}@${connections}`)
      }
    }
  }
} finally {
  for (const s of servers) s.child.kill('SIGKILL')
}
process.stderr.write('\n')

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const range = (xs, digits) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`
const lines = [
  '# mcp-bastion benchmark',
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
  `An \`echo\` tool call per request over loopback HTTP; each server in its own process; load from autocannon in another; ${REPS} repetitions × ${SECONDS} s per configuration, configurations alternated; median (min–max). Ratios are to "${CONFIGS.find(([v]) => v === BASELINE)?.[1]}", taken pair by pair within a repetition. Server CPU µs per request from /proc (10 ms ticks); peak RSS is the server's high-water mark; autocannon reports percentiles in whole milliseconds, the mean to the microsecond.`,
  '',
]
for (const connections of [32, 1]) {
  lines.push(
    `## ${connections} connection${connections === 1 ? '' : 's'}`,
    '',
    '| configuration | req/s | ratio | mean ms | p50 ms | p99 ms | server CPU µs/req | peak RSS MiB | failed |',
    '|---|---|---|---|---|---|---|---|---|',
  )
  const base = results.get(`${BASELINE}@${connections}`)
  for (const [variant, label] of CONFIGS) {
    const r = results.get(`${variant}@${connections}`)
    if (r === undefined) continue
    const ratios = r.map((x, i) => x.rps / (base?.[i]?.rps ?? Number.NaN))
    lines.push(
      `| ${label} | ${range(
        r.map((x) => x.rps),
        0,
      )} | ${range(ratios, 3)} | ${median(r.map((x) => x.mean)).toFixed(3)} | ${median(r.map((x) => x.p50)).toFixed(0)} | ${median(r.map((x) => x.p99)).toFixed(0)} | ${median(r.map((x) => x.cpuUs)).toFixed(0)} | ${(Math.max(...r.map((x) => x.rss)) / 2 ** 20).toFixed(0)} | ${r.reduce((a, x) => a + x.failed, 0)} |`,
    )
  }
  lines.push('')
}
lines.push(...(await memoryFigures()), '', `Run time: ${Math.round((Date.now() - started) / 1000)} s.`)
const text = `${lines.join('\n')}\n`
mkdirSync(here('./results/'), { recursive: true })
writeFileSync(here('./results/latest.md'), text)
process.stdout.write(text)
