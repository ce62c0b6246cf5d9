// npm run bench:compare -- <other checkout> [variant …]: this checkout's bastion against another
// checkout's (built: `npm run build` there), same variants of bench/servers.mjs, in one interleaved
// run, with SDK v1's 2025-11-25 session from this checkout as the common baseline. For "did this
// change make a call dearer?": server CPU per request and ratios, never absolute times.
// Writes bench/results/compare.md.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { here, invalidRows, machine, measure, method, publish, table } from './lib.mjs'

const other = resolve(process.argv[2] ?? '')
if (process.argv[2] === undefined || !existsSync(resolve(other, 'bench/servers.mjs')) || !existsSync(resolve(other, 'dist/index.js'))) {
  process.stderr.write('usage: npm run bench:compare -- <path of another built checkout> [variant …]\n')
  process.exit(2)
}
const variants = process.argv.length > 3 ? process.argv.slice(3) : ['bastion-minimal', 'bastion-full']
const CONFIGS = [
  ['sdk1-session', 'SDK v1, 2025-11-25 session (baseline)'],
  ...variants.flatMap((v) => [
    [`other:${v}`, `${v}, ${other}`, { variant: v, script: resolve(other, 'bench/servers.mjs') }],
    [`this:${v}`, `${v}, this checkout`, { variant: v, script: here('./servers.mjs') }],
  ]),
]
const started = Date.now()
const results = await measure(CONFIGS)
const invalid = invalidRows(results)
publish('compare.md', [
  '# this checkout against another, same variants',
  '',
  `Machine: ${machine()}.`,
  method(),
  '',
  ...(invalid.length === 0 ? [] : [`**Invalid: ${invalid.join('; ')}.**`, '']),
  ...table(CONFIGS, results, 'sdk1-session', 32),
  '',
  `Run time: ${Math.round((Date.now() - started) / 1000)} s.`,
])
