// What every benchmark script shares: a server per process (bench/servers.mjs), load from another
// (bench/load-autocannon.mjs), configurations alternated over repetitions, and the table.
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const here = (p) => new URL(p, import.meta.url).pathname
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
export const REPS = Number(process.env.BENCH_REPS ?? 3)
export const machine = () =>
  `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`

/**
 * Start `bench/servers.mjs <variant>` and resolve once it prints its target and answers an echo.
 * Other stdout lines go to `onLine` (the soak reads heap samples from them).
 */
export async function startServer(variant, { execArgv = [], env = {}, onLine, script = here('./servers.mjs') } = {}) {
  const child = spawn(process.execPath, [...execArgv, script, variant], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let err = ''
  child.stderr.on('data', (c) => {
    err += c
  })
  const target = await new Promise((resolve, reject) => {
    let pending = ''
    child.stdout.on('data', (c) => {
      pending += c
      const lines = pending.split('\n')
      pending = lines.pop() ?? ''
      for (const line of lines) {
        if (line.startsWith('BENCH_TARGET ')) resolve(JSON.parse(line.slice('BENCH_TARGET '.length)))
        else onLine?.(line)
      }
    })
    child.once('exit', (code) => reject(new Error(`${variant} exited ${code}: ${err}`)))
  })
  const check = await fetch(target.url, { method: 'POST', headers: target.headers, body: target.body })
  const text = await check.text()
  if (check.status !== 200 || !text.includes('"text":"hi"')) throw new Error(`${variant}: echo check failed (${check.status}): ${text.slice(0, 200)}`)
  return { variant, child, target }
}

function procStats(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return { cpuMs: (Number(f[11]) + Number(f[12])) * 10, hwm: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024 }
}

/** One load run from a separate process, with the server's CPU per request and peak RSS from /proc. */
export async function load(server, connections, seconds, tolerateFailures) {
  const before = procStats(server.child.pid)
  const { stdout } = await run(process.execPath, [here('./load-autocannon.mjs'), JSON.stringify(server.target), String(connections), String(seconds)], { maxBuffer: 1 << 20 })
  const after = procStats(server.child.pid)
  const r = JSON.parse(stdout)
  // Our servers must answer every request; a peer's failures are counted and shown instead.
  if ((r.non2xx > 0 || r.errors > 0) && !tolerateFailures) throw new Error(`${server.variant}: ${r.non2xx} non-2xx, ${r.errors} errors`)
  return { rps: r.rps, mean: r.mean, p50: r.p50, p99: r.p99, cpuUs: ((after.cpuMs - before.cpuMs) * 1000) / Math.max(1, r.requests), rss: after.hwm, failed: r.non2xx + r.errors }
}

/**
 * Start every configuration, warm each up, then run `REPS` repetitions per connection count,
 * alternating the order so that drift favours none. Returns results by `<variant>@<connections>`.
 */
export async function measure(configs, { connections = [32], only = () => true, tolerate = () => false } = {}) {
  const servers = []
  const results = new Map()
  try {
    for (const [variant] of configs) servers.push(await startServer(variant))
    for (const s of servers) await load(s, 32, 2, true)
    for (const c of connections) {
      const subset = servers.filter((s) => only(c, s.variant))
      for (let rep = 0; rep < REPS; rep++) {
        for (const s of rep % 2 === 0 ? subset : [...subset].reverse()) {
          const key = `${s.variant}@${c}`
          if (!results.has(key)) results.set(key, [])
          results.get(key).push(await load(s, c, SECONDS, tolerate(s.variant)))
          process.stderr.write(`.${key}`)
        }
      }
    }
  } finally {
    for (const s of servers) s.child.kill('SIGKILL')
    process.stderr.write('\n')
  }
  return results
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const range = (xs, digits) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`

/** The markdown table for one connection count, ratios to `baseline` taken pair by pair. */
export function table(configs, results, baseline, connections) {
  const lines = ['| configuration | req/s | ratio | mean ms | p50 ms | p99 ms | server CPU µs/req | peak RSS MiB | failed |', '|---|---|---|---|---|---|---|---|---|']
  const base = results.get(`${baseline}@${connections}`)
  for (const [variant, label] of configs) {
    const r = results.get(`${variant}@${connections}`)
    if (r === undefined) continue
    const ratios = r.map((x, i) => x.rps / (base?.[i]?.rps ?? Number.NaN))
    const cells = [
      label,
      range(
        r.map((x) => x.rps),
        0,
      ),
      range(ratios, 3),
      median(r.map((x) => x.mean)).toFixed(3),
      median(r.map((x) => x.p50)).toFixed(0),
      median(r.map((x) => x.p99)).toFixed(0),
      median(r.map((x) => x.cpuUs)).toFixed(0),
      (Math.max(...r.map((x) => x.rss)) / 2 ** 20).toFixed(0),
      r.reduce((a, x) => a + x.failed, 0),
    ]
    lines.push(`| ${cells.join(' | ')} |`)
  }
  return lines
}

export const method = (baseline) =>
  `An \`echo\` tool call per request over loopback HTTP; each server in its own process; load from autocannon in another; ${REPS} repetitions × ${SECONDS} s per configuration, configurations alternated; median (min–max). Ratios are to "${baseline}", taken pair by pair within a repetition. Server CPU µs per request from /proc (10 ms ticks); peak RSS is the server's high-water mark; autocannon reports percentiles in whole milliseconds, the mean to the microsecond.`

/** Write `bench/results/<name>` and print it. */
export function publish(name, lines) {
  const text = `${lines.join('\n')}\n`
  mkdirSync(here('./results/'), { recursive: true })
  writeFileSync(here(`./results/${name}`), text)
  process.stdout.write(text)
}
