// What every benchmark script shares: a server per process (bench/servers.mjs) pinned to one core,
// closed-loop load (bench/load-closed.mjs) from another process pinned to the other, fixed request
// counts, configurations interleaved in short bursts, server CPU per request from /proc, and the table.
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const here = (p) => new URL(p, import.meta.url).pathname
export const REPS = Number(process.env.BENCH_REPS ?? 3)
/** Bursts per repetition and requests per burst (32 connections; a tenth at 1 connection). */
export const BURSTS = Number(process.env.BENCH_BURSTS ?? 4)
export const COUNT = Number(process.env.BENCH_COUNT ?? 1000)
export const machine = () =>
  `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`

// Server on core 0, load on core 1, when taskset exists and there are two cores.
const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p))
export const PINNED = TASKSET !== undefined && cpus().length >= 2
const pinned = (core, argv) => (PINNED ? [TASKSET, ['-c', String(core), ...argv]] : [argv[0], argv.slice(1)])

/**
 * Start `bench/servers.mjs <variant>` (or `script`) and resolve once it prints its target and answers an echo.
 * Other stdout lines go to `onLine` (the soak reads heap samples from them).
 */
export async function startServer(variant, { execArgv = [], env = {}, onLine, script = here('./servers.mjs'), pin = true } = {}) {
  const [command, args] = pin ? pinned(0, [process.execPath, ...execArgv, script, variant]) : [process.execPath, [...execArgv, script, variant]]
  // taskset execs node: the child's pid is the server's.
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
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

/** CPU time of a process and all its threads (utime + stime, 10 ms ticks), and its peak RSS. */
export function procStats(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return { cpuMs: (Number(f[11]) + Number(f[12])) * 10, hwm: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024, rss: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024 }
}

/** One burst of `count` requests from a separate process; the server's CPU for it from /proc. */
export async function burst(server, connections, count) {
  const before = procStats(server.child.pid)
  const [command, args] = pinned(1, [process.execPath, here('./load-closed.mjs'), JSON.stringify(server.target), String(connections), String(count)])
  const { stdout } = await run(command, args, { maxBuffer: 1 << 24 })
  const after = procStats(server.child.pid)
  return { ...JSON.parse(stdout), cpuMs: after.cpuMs - before.cpuMs, hwm: after.hwm }
}

/**
 * Start every configuration, warm each up, then per connection count run `REPS` repetitions of
 * `BURSTS` rounds, each round one burst per configuration in a rotating order, so that machine
 * noise falls on all alike. Returns, by `<key>@<connections>`, one figure per repetition:
 * {cpuUs, rps, meanUs, p50Us, p99Us, rss, requests, failed, failures}. A configuration with any
 * failed request is invalid; the table says so.
 * `configs`: [key, label, {variant, script}?] — the variant defaults to the key.
 */
export async function measure(configs, { connections = [32], only = () => true } = {}) {
  const servers = []
  const results = new Map()
  try {
    for (const [key, , spec] of configs) servers.push({ key, server: await startServer(spec?.variant ?? key, spec?.script === undefined ? {} : { script: spec.script }) })
    for (const s of servers) await burst(s.server, 32, COUNT)
    for (const c of connections) {
      const subset = servers.filter((s) => only(c, s.key))
      const count = c === 1 ? Math.max(100, Math.round(COUNT / 4)) : COUNT
      for (let rep = 0; rep < REPS; rep++) {
        const acc = new Map(subset.map((s) => [s.key, []]))
        for (let round = 0; round < BURSTS; round++) {
          const shift = (rep * BURSTS + round) % subset.length
          for (const s of [...subset.slice(shift), ...subset.slice(0, shift)]) acc.get(s.key).push(await burst(s.server, c, count))
        }
        for (const s of subset) {
          const b = acc.get(s.key)
          const requests = b.reduce((a, x) => a + x.requests, 0)
          const key = `${s.key}@${c}`
          if (!results.has(key)) results.set(key, [])
          results.get(key).push({
            requests,
            cpuUs: (b.reduce((a, x) => a + x.cpuMs, 0) * 1000) / Math.max(1, requests),
            rps: (requests * 1000) / b.reduce((a, x) => a + x.wallMs, 0),
            meanUs: b.reduce((a, x) => a + x.meanUs * x.requests, 0) / Math.max(1, requests),
            p50Us: median(b.map((x) => x.p50Us)),
            p99Us: median(b.map((x) => x.p99Us)),
            rss: Math.max(...b.map((x) => x.hwm)),
            failed: b.reduce((a, x) => a + x.failed, 0),
            failures: [...new Set(b.flatMap((x) => x.failures))].slice(0, 3),
          })
          process.stderr.write(`.${key}`)
        }
      }
    }
  } finally {
    for (const s of servers) s.server.child.kill('SIGKILL')
    process.stderr.write('\n')
  }
  return results
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
export const range = (xs, digits) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`
/** Pair by pair within a repetition: `figure(a) / figure(b)`, median (min–max). */
export const ratio = (a, b, figure) =>
  range(
    a.map((x, i) => figure(x) / figure(b[i] ?? { [Symbol()]: 0 })),
    2,
  )
export const valid = (r) => r.every((x) => x.failed === 0)
export const invalidRows = (results) =>
  [...results.entries()].filter(([, r]) => !valid(r)).map(([key, r]) => `${key}: ${r.reduce((a, x) => a + x.failed, 0)} failed (${r.flatMap((x) => x.failures)[0]})`)

/**
 * The markdown table for one connection count: server CPU per request and its ratio to each of
 * `baselines` (keys), throughput, latency from the closed-loop client. An invalid row shows no ratio.
 */
export function table(configs, results, baselines, connections) {
  const bases = (Array.isArray(baselines) ? baselines : [baselines]).map((k) => [k, results.get(`${k}@${connections}`)])
  const head = [
    'configuration',
    'server CPU µs/req',
    ...bases.map(([k]) => `CPU × ${configs.find((c) => c[0] === k)?.[1] ?? k}`),
    'req/s',
    'p50 µs',
    'p99 µs',
    'peak RSS MiB',
    'failed',
  ]
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
  for (const [key, label] of configs) {
    const r = results.get(`${key}@${connections}`)
    if (r === undefined) continue
    const failed = r.reduce((a, x) => a + x.failed, 0)
    const ratios = bases.map(([, b]) => (b === undefined || !valid(b) || failed > 0 ? 'invalid' : ratio(r, b, (x) => x.cpuUs)))
    lines.push(
      `| ${[
        label,
        range(
          r.map((x) => x.cpuUs),
          0,
        ),
        ...ratios,
        median(r.map((x) => x.rps)).toFixed(0),
        median(r.map((x) => x.p50Us)).toFixed(0),
        median(r.map((x) => x.p99Us)).toFixed(0),
        (Math.max(...r.map((x) => x.rss)) / 2 ** 20).toFixed(0),
        failed === 0 ? '0' : `**${failed}: INVALID**`,
      ].join(' | ')} |`,
    )
  }
  return lines
}

export const method = () =>
  `An \`echo\` \`tools/call\` per request over loopback HTTP. Each server in its own process${PINNED ? ' pinned to core 0 (`taskset`)' : ''}; closed-loop load from another process${PINNED ? ' pinned to core 1' : ''}, each request with its own JSON-RPC id and its answer checked; fixed request counts (${COUNT} per burst at 32 connections, ${Math.max(100, Math.round(COUNT / 4))} at 1), configurations interleaved in ${BURSTS} bursts per repetition, ${REPS} repetitions; median (min–max) over repetitions. Server CPU µs per request (user + system, all threads, from /proc) is the primary figure; ratios are taken within a repetition. Latency is timed per request by the client (process.hrtime). A row with any failed or wrong answer is invalid and gets no ratio.`

/** Write `bench/results/<name>` and print it. */
export function publish(name, lines) {
  const text = `${lines.join('\n')}\n`
  mkdirSync(here('./results/'), { recursive: true })
  writeFileSync(here(`./results/${name}`), text)
  process.stdout.write(text)
}
