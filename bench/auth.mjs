// What token authentication costs per request, against API-key authentication in the same run:
// ES256 JWTs with the verified-token cache, and with it switched off (a signature check per call).
// Configurations alternated, 3 repetitions, ratios pair by pair. Run: npm run bench:auth
import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdirSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { SignJWT } from 'jose'
import { pino } from 'pino'
import { z } from 'zod'
import { createBastion } from '../dist/index.js'

const run = promisify(execFile)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16)
const REPS = Number(process.env.BENCH_REPS ?? 3)
const worker = new URL('./load-worker.mjs', import.meta.url).pathname
const RESOURCE = 'https://bench.test/mcp'
const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const open = { principal: { rate: '100000000/s' }, anonymous: { rate: '100000000/s' }, concurrency: { perPrincipal: 10_000, global: 10_000 } }

async function server(name, tokenCache) {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-bench-')))
  writeFileSync(join(dir, 'idp.pem'), publicKey.export({ type: 'spki', format: 'pem' }))
  const bastion = await createBastion({
    baseDir: dir,
    logger: pino({ level: 'silent' }),
    config: {
      limits: open,
      workspace: { enabled: false },
      auth: {
        reloadIntervalMs: 0,
        resource: RESOURCE,
        tokenCache: { maxEntries: tokenCache },
        issuers: [{ name: 'idp', issuer: 'https://idp.bench', algorithms: ['ES256'], keys: [{ pem: { file: 'idp.pem' } }], defaultRoles: ['admin'] }],
      },
    },
  })
  bastion.tool({ name: 'echo', description: 'echo', input: z.object({ text: z.string().max(100) }), run: async (args) => ({ content: [{ type: 'text', text: args.text }] }) })
  const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
  const apiKey = bastion.keys.create({ name: 'bench', roles: ['admin'], expiresAt: null }).key
  const jwt = await new SignJWT({ scope: 'mcp:tools' })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer('https://idp.bench')
    .setSubject('bench')
    .setAudience(RESOURCE)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey)
  return { name, bastion, url: running.url, credential: name === 'API key' ? apiKey : jwt }
}

async function load(target) {
  const cpu = process.cpuUsage()
  const { stdout } = await run(process.execPath, [worker, target.url, target.credential, String(CONNECTIONS), String(SECONDS)])
  const used = process.cpuUsage(cpu)
  const result = JSON.parse(stdout)
  if (result.errors > 0) throw new Error(`${target.name}: ${result.errors} non-200 answers`)
  return { rps: result.requests / result.seconds, p50: result.p50, p99: result.p99, cpuUs: (used.user + used.system) / result.requests }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const span = (xs) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`

const targets = [await server('API key', 10_000), await server('JWT ES256, token cache', 10_000), await server('JWT ES256, no cache', 0)]
const results = new Map(targets.map((t) => [t.name, []]))
for (const t of targets) await run(process.execPath, [worker, t.url, t.credential, String(CONNECTIONS), '1'])
for (let rep = 0; rep < REPS; rep++) {
  const order = rep % 2 === 0 ? targets : [...targets].reverse()
  for (const t of order) results.get(t.name).push(await load(t))
}
for (const t of targets) await t.bastion.close()

const base = results.get('API key')
const lines = [
  '# Token authentication cost',
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. ${REPS} repetitions × ${SECONDS} s, ${CONNECTIONS} connections, 2026-07-28 \`tools/call\` of an echo tool over loopback HTTP, load from a separate process. Median (min–max); ratio to "API key" taken pair by pair within a repetition.`,
  '',
  '| authentication | req/s | ratio to API key | p50 ms | p99 ms | server CPU µs/req |',
  '|---|---|---|---|---|---|',
]
for (const t of targets) {
  const r = results.get(t.name)
  const ratios = r.map((x, i) => x.rps / base[i].rps)
  lines.push(
    `| ${t.name} | ${median(r.map((x) => x.rps)).toFixed(0)} | ${median(ratios).toFixed(3)} (${span(ratios)}) | ${median(r.map((x) => x.p50)).toFixed(2)} | ${median(r.map((x) => x.p99)).toFixed(2)} | ${median(r.map((x) => x.cpuUs)).toFixed(0)} |`,
  )
}
const text = `${lines.join('\n')}\n`
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/auth.md', import.meta.url), text)
process.stdout.write(text)
