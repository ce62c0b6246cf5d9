// npm run bench:profile -- <variant>: a CPU profile (--cpu-prof) of one server under 10 s of load,
// summarised as the functions with the most self time. The .cpuprofile is kept for a viewer.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { startServer } from './lib.mjs'

const variant = process.argv[2] ?? 'bastion-full'
const dir = mkdtempSync(join(tmpdir(), 'bastion-prof-'))
const { child, target } = await startServer(variant, { execArgv: ['--cpu-prof', `--cpu-prof-dir=${dir}`] })
await autocannon({ url: target.url, method: 'POST', headers: target.headers, body: target.body, connections: 32, duration: 10 })
await new Promise((resolve) => {
  child.once('exit', resolve)
  child.kill('SIGTERM')
})
const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
if (file === undefined) throw new Error('no profile written')
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8'))
const dt = new Map()
profile.samples.forEach((id, i) => {
  dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
})
const byFunction = new Map()
let total = 0
for (const node of profile.nodes) {
  const us = dt.get(node.id) ?? 0
  total += us
  const cf = node.callFrame
  const where =
    cf.url === ''
      ? cf.functionName || '(native)'
      : `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/(dist|bench)\//, '$1/')}:${cf.lineNumber + 1}`
  byFunction.set(where, (byFunction.get(where) ?? 0) + us)
}
const top = [...byFunction.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25)
process.stdout.write(`# CPU profile of ${variant}, 10 s at 32 connections (self time)\n\nProfile: ${join(dir, file)}\n\n| self % | function |\n|---|---|\n`)
for (const [name, us] of top) process.stdout.write(`| ${((100 * us) / total).toFixed(1)} | ${name} |\n`)
