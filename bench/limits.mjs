// What rate limiting costs per request: no limiter vs the memory backend vs the Redis backend,
// measured in one run on this machine, configurations alternated, 3 repetitions, ratios pair by
// pair against the no-limiter baseline of the same repetition.
// Run: npm run bench:limits (needs Redis on 127.0.0.1:6379).
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { z } from 'zod'
import { createBastion, MemoryRateLimiter, RedisRateLimiter } from '../dist/index.js'

const run = promisify(execFile)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16)
const REPS = Number(process.env.BENCH_REPS ?? 3)
const worker = new URL('./load-worker.mjs', import.meta.url).pathname

/** Admits everything: the baseline. */
const noLimiter = { backend: 'memory', take: async () => ({ admitted: true }), close: async () => {} }

const open = { principal: { rate: '100000000/s' }, anonymous: { rate: '100000000/s' }, global: { rate: '100000000/s' }, concurrency: { perPrincipal: 10_000, global: 10_000 } }
process.env.BENCH_REDIS_URL = 'redis://127.0.0.1:6379'

async function server(name, limits, rateLimiter) {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-bench-')))
  const bastion = await createBastion({
    baseDir: dir,
    logger: pino({ level: 'silent' }),
    config: { limits, workspace: { enabled: false }, auth: { reloadIntervalMs: 0 } },
    ...(rateLimiter === undefined ? {} : { rateLimiter }),
  })
  bastion.tool({ name: 'echo', description: 'echo', input: z.object({ text: z.string().max(100) }), run: async (args) => ({ content: [{ type: 'text', text: args.text }] }) })
  const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
  const key = bastion.keys.create({ name: 'bench', roles: ['admin'], expiresAt: null }).key
  return { name, bastion, url: running.url, key }
}

async function load(target) {
  const cpu = process.cpuUsage()
  const { stdout } = await run(process.execPath, [worker, target.url, target.key, String(CONNECTIONS), String(SECONDS)])
  const used = process.cpuUsage(cpu)
  const result = JSON.parse(stdout)
  if (result.errors > 0) throw new Error(`${target.name}: ${result.errors} non-200 answers`)
  return { rps: result.requests / result.seconds, p50: result.p50, p99: result.p99, cpuUs: (used.user + used.system) / result.requests }
}

async function micro(limiter, n, parallel) {
  const charges = [
    { bucket: 'principal', key: `p|${randomBytes(4).toString('hex')}`, capacity: 1e9, perMs: 1e6, cost: 1 },
    { bucket: 'global', key: `g|${randomBytes(4).toString('hex')}`, capacity: 1e9, perMs: 1e6, cost: 1 },
  ]
  const start = performance.now()
  let done = 0
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (done < n) {
        done += 1
        await limiter.take(charges)
      }
    }),
  )
  return ((performance.now() - start) * 1000) / n
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const span = (xs) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`

const targets = [
  await server('no limiter', open, noLimiter),
  await server('memory limiter', open),
  await server('redis limiter', { ...open, backend: 'redis', redis: { url: { env: 'BENCH_REDIS_URL' }, keyPrefix: `bench:${randomBytes(4).toString('hex')}:` } }),
]
const results = new Map(targets.map((t) => [t.name, []]))
// Warm-up: JIT and connection pools, not measured.
for (const t of targets) await run(process.execPath, [worker, t.url, t.key, String(CONNECTIONS), '1'])
for (let rep = 0; rep < REPS; rep++) {
  // Alternate the order so that drift (thermal, other load) does not favour one configuration.
  const order = rep % 2 === 0 ? targets : [...targets].reverse()
  for (const t of order) results.get(t.name).push(await load(t))
}

const memory = new MemoryRateLimiter()
const redis = new RedisRateLimiter({ url: 'redis://127.0.0.1:6379', keyPrefix: `bench:${randomBytes(4).toString('hex')}:`, timeoutMs: 1000 })
await redis.ready()
const microRows = [
  ['memory, sequential', await micro(memory, 200_000, 1)],
  ['redis, sequential', await micro(redis, 5_000, 1)],
  ['redis, 32 in flight', await micro(redis, 20_000, 32)],
]
await redis.close()
for (const t of targets) await t.bastion.close()

const base = results.get('no limiter')
const lines = [
  `# Rate limiter cost`,
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. ${REPS} repetitions × ${SECONDS} s, ${CONNECTIONS} connections, 2026-07-28 \`tools/call\` of an echo tool over loopback HTTP, load from a separate process. Median (min–max); ratio to "no limiter" taken pair by pair within a repetition.`,
  '',
  '| configuration | req/s | ratio to no limiter | p50 ms | p99 ms | server CPU µs/req |',
  '|---|---|---|---|---|---|',
]
for (const t of targets) {
  const r = results.get(t.name)
  const ratios = r.map((x, i) => x.rps / base[i].rps)
  lines.push(
    `| ${t.name} | ${median(r.map((x) => x.rps)).toFixed(0)} (${span(r.map((x) => x.rps)).replace(/\.\d+/g, '')}) | ${median(ratios).toFixed(3)} (${span(ratios)}) | ${median(r.map((x) => x.p50)).toFixed(2)} | ${median(r.map((x) => x.p99)).toFixed(2)} | ${median(r.map((x) => x.cpuUs)).toFixed(0)} |`,
  )
}
lines.push('', '| limiter alone (two buckets per take) | µs per take |', '|---|---|')
for (const [name, us] of microRows) lines.push(`| ${name} | ${us.toFixed(2)} |`)
const text = `${lines.join('\n')}\n`
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/limits.md', import.meta.url), text)
process.stdout.write(text)
