// npm run bench: what each security layer costs, against the bare MCP SDK and a peer framework,
// measured in one run on this machine (see bench/lib.mjs for how). Writes bench/results/latest.md
// and prints it. Needs Redis on 127.0.0.1:6379.
import { machine, measure, method, publish, table } from './lib.mjs'
import { memoryFigures } from './memory.mjs'

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

const started = Date.now()
const results = await measure(CONFIGS, { connections: [32, 1], only: (c, v) => c === 32 || ONE_CONNECTION.has(v), tolerate: (v) => v === 'fastmcp' })
const lines = ['# mcp-bastion benchmark', '', `Machine: ${machine()}.`, method(CONFIGS.find(([v]) => v === BASELINE)?.[1]), '']
for (const c of [32, 1]) lines.push(`## ${c} connection${c === 1 ? '' : 's'}`, '', ...table(CONFIGS, results, BASELINE, c), '')
lines.push(...(await memoryFigures()), '', `Run time: ${Math.round((Date.now() - started) / 1000)} s.`)
publish('latest.md', lines)
