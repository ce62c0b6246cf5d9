// npm run bench:soak: 5 minutes at a steady, moderate rate through the whole pipeline; heap and RSS
// of the server at the start (after a warm-up) and at the end must be flat within noise.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import autocannon from 'autocannon'
import { startServer } from './lib.mjs'

const MINUTES = Number(process.env.SOAK_MINUTES ?? 5)
const RATE = Number(process.env.SOAK_RATE ?? 200)
const samples = []
const { child, target } = await startServer('bastion-full', {
  env: { BENCH_HEAP: '1' },
  onLine: (line) => {
    const h = /^BENCH_HEAP (\d+) (\d+)$/.exec(line)
    if (h) samples.push({ t: Date.now(), heap: Number(h[1]), rss: Number(h[2]) })
  },
})
const mib = (b) => (b / 2 ** 20).toFixed(1)
// Warm-up: JIT, pools and caches settle before the first sample that counts.
await autocannon({ url: target.url, method: 'POST', headers: target.headers, body: target.body, connections: 4, duration: 15, overallRate: RATE })
const startAt = samples.length
const result = await autocannon({ url: target.url, method: 'POST', headers: target.headers, body: target.body, connections: 8, duration: MINUTES * 60, overallRate: RATE })
await new Promise((r) => setTimeout(r, 6_000))
child.kill('SIGKILL')
const window = samples.slice(startAt)
const first = window.slice(0, 3)
const last = window.slice(-3)
const avg = (xs, k) => xs.reduce((a, x) => a + x[k], 0) / Math.max(1, xs.length)
const lines = [
  `# Soak: ${MINUTES} min at ${RATE} req/s through the whole pipeline`,
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. ${result.requests.total} requests, ${result.non2xx} non-2xx, ${result.errors} errors, p99 ${result.latency.p99} ms.`,
  '',
  '| | heap MiB | RSS MiB |',
  '|---|---|---|',
  `| start (mean of first 3 samples after warm-up) | ${mib(avg(first, 'heap'))} | ${mib(avg(first, 'rss'))} |`,
  `| end (mean of last 3 samples) | ${mib(avg(last, 'heap'))} | ${mib(avg(last, 'rss'))} |`,
  `| change | ${mib(avg(last, 'heap') - avg(first, 'heap'))} | ${mib(avg(last, 'rss') - avg(first, 'rss'))} |`,
]
const text = `${lines.join('\n')}\n`
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/soak.md', import.meta.url), text)
process.stdout.write(text)
