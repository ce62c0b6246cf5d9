// npm run bench: the cost of an echo tool call with every security layer on, side by side with
// what a user would pick instead — the bare MCP SDK v1 and v2, fastmcp — and the node:http floor,
// measured in one interleaved run on this machine (bench/lib.mjs says how). Writes
// bench/results/latest.md and prints it. Needs Redis on 127.0.0.1:6379 for no row here.
import { invalidRows, machine, measure, median, method, publish, table } from './lib.mjs'
import { memoryFigures } from './memory.mjs'

const CONFIGS = [
  ['floor', 'node:http + JSON, canned answer (floor)'],
  ['sdk1-session', 'SDK v1 1.32, 2025-11-25 session'],
  ['sdk1-stateless', 'SDK v1 1.32, stateless (server per request)'],
  ['sdk-stateless-shared', 'SDK v2, 2026-07-28 createMcpHandler, shared validator'],
  ['sdk-session', 'SDK v2, 2025-11-25 session'],
  ['fastmcp', 'fastmcp 4 (authenticate hook, API key), 2025-11-25 session'],
  ['bastion-minimal', 'bastion minimal (API key, RBAC, audit sealed and discarded), 2026-07-28'],
  ['bastion-minimal-legacy', 'bastion minimal, 2025-11-25 session'],
  ['bastion-jwt', 'bastion minimal with JWT ES256 (token cache), 2026-07-28'],
  ['bastion-full', 'bastion whole pipeline (API key, CEL policy, memory limiter, audit file, PII masking), 2026-07-28'],
  ['bastion-full-legacy', 'bastion whole pipeline, 2025-11-25 session'],
]
const ONE_CONNECTION = new Set(['floor', 'sdk1-session', 'sdk-stateless-shared', 'fastmcp', 'bastion-minimal', 'bastion-full', 'bastion-full-legacy'])
const BASELINES = ['sdk1-session', 'fastmcp']

const started = Date.now()
const results = await measure(CONFIGS, { connections: [32, 1], only: (c, v) => c === 32 || ONE_CONNECTION.has(v) })
const cpu = (key) => median((results.get(`${key}@32`) ?? []).map((x) => x.cpuUs))
const p99 = (key) => median((results.get(`${key}@1`) ?? []).map((x) => x.p99Us))
const invalid = invalidRows(results)
const targets = [
  ['whole pipeline, 2026-07-28 ≤ 1.0 × SDK v1 session', cpu('bastion-full') / cpu('sdk1-session'), 1.0],
  ['whole pipeline, 2026-07-28 ≤ 0.6 × fastmcp', cpu('bastion-full') / cpu('fastmcp'), 0.6],
  ['minimal, 2026-07-28 ≤ 0.7 × SDK v1 session', cpu('bastion-minimal') / cpu('sdk1-session'), 0.7],
  ['whole pipeline, 2025-11-25 session ≤ 1.0 × SDK v1 session', cpu('bastion-full-legacy') / cpu('sdk1-session'), 1.0],
  ['p99 at 1 connection, whole pipeline ≤ 1.5 × SDK v1', p99('bastion-full') / p99('sdk1-session'), 1.5],
  ['JWT (token cache) ≤ 1.05 × API key', cpu('bastion-jwt') / cpu('bastion-minimal'), 1.05],
]
const lines = [
  '# mcp-bastion: cost per call',
  '',
  `Machine: ${machine()}.`,
  method(),
  '',
  invalid.length === 0 ? 'Every row is valid: every configuration answered every request correctly.' : `**This run is invalid for: ${invalid.join('; ')}.**`,
  '',
  '## 32 connections',
  '',
  ...table(CONFIGS, results, BASELINES, 32),
  '',
  '## 1 connection (latency)',
  '',
  ...table(CONFIGS, results, BASELINES, 1),
  '',
  '## Targets (medians of server CPU per request, ratios in this run)',
  '',
  '| target | measured | met |',
  '|---|---:|---|',
  ...targets.map(([what, measured, limit]) => `| ${what} | ${measured.toFixed(2)} | ${measured <= limit ? 'yes' : '**no**'} |`),
  '',
  ...(await memoryFigures()),
  '',
  `Run time: ${Math.round((Date.now() - started) / 1000)} s.`,
]
publish('latest.md', lines)
