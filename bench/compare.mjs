// npm run bench:compare -- <other checkout>: this checkout's bastion against another checkout's
// (built: `npm run build` there), same variants of bench/servers.mjs, in one interleaved run, with
// the bare SDK from this checkout as the common baseline. For "did this change make a call
// dearer?": ratios and server CPU per request, never absolute times. Writes bench/results/compare.md.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { here, load, machine, publish, REPS, SECONDS, startServer } from './lib.mjs'

const other = resolve(process.argv[2] ?? '')
if (process.argv[2] === undefined || !existsSync(resolve(other, 'bench/servers.mjs')) || !existsSync(resolve(other, 'dist/index.js'))) {
  process.stderr.write('usage: npm run bench:compare -- <path of another built checkout>\n')
  process.exit(2)
}
const VARIANTS = ['bastion-minimal', 'bastion-full']
const servers = [
  { name: 'sdk', label: 'bare SDK v2, stateless, shared validator (baseline)', variant: 'sdk-stateless-shared', script: here('./servers.mjs') },
  ...VARIANTS.flatMap((v) => [
    { name: `other:${v}`, label: `${v}, ${other}`, variant: v, script: resolve(other, 'bench/servers.mjs') },
    { name: `this:${v}`, label: `${v}, this checkout`, variant: v, script: here('./servers.mjs') },
  ]),
]
const started = Date.now()
const results = new Map()
const running = []
try {
  for (const s of servers) running.push({ ...s, server: await startServer(s.variant, { script: s.script }) })
  for (const s of running) await load(s.server, 32, 2, false)
  for (let rep = 0; rep < REPS; rep++) {
    for (const s of rep % 2 === 0 ? running : [...running].reverse()) {
      if (!results.has(s.name)) results.set(s.name, [])
      // Every request must be answered: load() throws on any error or non-2xx.
      results.get(s.name).push(await load(s.server, 32, SECONDS, false))
      process.stderr.write(`.${s.name}`)
    }
  }
} finally {
  for (const s of running) s.server.child.kill('SIGKILL')
  process.stderr.write('\n')
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const base = results.get('sdk')
const lines = [
  '# this checkout against another, same variants',
  '',
  `Machine: ${machine()}. 32 connections, ${REPS} × ${SECONDS} s each, alternated; ratios to the bare SDK pair by pair, median (min–max); server CPU µs/request from /proc.`,
  '',
  '| configuration | ratio to SDK | server CPU µs/req | CPU × SDK | failed |',
  '|---|---|---|---|---|',
]
for (const s of servers) {
  const r = results.get(s.name)
  const ratios = r.map((x, i) => x.rps / base[i].rps)
  const cpu = median(r.map((x) => x.cpuUs))
  lines.push(
    `| ${s.label} | ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}) | ${cpu.toFixed(0)} | ${(cpu / median(base.map((x) => x.cpuUs))).toFixed(2)} | ${r.reduce((a, x) => a + x.failed, 0)} |`,
  )
}
lines.push('', `Run time: ${Math.round((Date.now() - started) / 1000)} s.`)
publish('compare.md', lines)
