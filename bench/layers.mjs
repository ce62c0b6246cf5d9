// node bench/layers.mjs: what each layer costs per call, in process, on the built modules (dist/),
// and how that cost grows with tools, policy rules, API keys and argument size. Each row: warm
// up, then a timed loop of at least 200 ms, five times; the median µs per call. A row over 10 µs
// names why: a cryptographic floor, or a finding (a cost the request pays that it need not).
// Writes bench/results/layers.md. Takes about a minute.
import { createHash, createHmac, createSecretKey, generateKeyPairSync } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { z } from 'zod'
import { AuditLog, toJsonLine } from '../dist/audit/audit-log.js'
import { hashApiKey } from '../dist/auth/api-key.js'
import { ApiKeyAuthenticator, credentialFromHeaders } from '../dist/auth/authenticate.js'
import { Authenticator } from '../dist/auth/authenticator.js'
import { JwtVerifier } from '../dist/auth/jwt.js'
import { KeyStore } from '../dist/auth/key-store.js'
import { TokenCache } from '../dist/auth/token-cache.js'
import { configSchema } from '../dist/config/schema.js'
import { MemoryRateLimiter } from '../dist/limits/memory-limiter.js'
import { RatePlan } from '../dist/limits/rate-plan.js'
import { compileCondition } from '../dist/policy/cel.js'
import { CompiledPolicy } from '../dist/policy/engine.js'
import { rbacRules } from '../dist/policy/rbac.js'
import { maskValue } from '../dist/protect/pii.js'
import { auditArgs, redact } from '../dist/protect/redact.js'
import { ToolRegistry } from '../dist/tools/registry.js'

const MIN_NS = 200_000_000n
const REPS = 5
const LIMIT_US = 10

// ---- timing -------------------------------------------------------------------------------

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Calls per loop so that one loop takes at least 200 ms, found by doubling (which also warms up). */
function calibrate(fn) {
  let n = 1
  for (;;) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) fn()
    const ns = process.hrtime.bigint() - t0
    if (ns >= MIN_NS / 4n) return Math.ceil((n * Number(MIN_NS)) / Number(ns))
    n *= 2
  }
}

/** Median µs per call of a synchronous function. */
function time(fn) {
  const n = calibrate(fn)
  const runs = []
  for (let r = 0; r < REPS; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) fn()
    runs.push(Number(process.hrtime.bigint() - t0) / 1000 / n)
  }
  return median(runs)
}

/** The same for a function returning a promise: each call awaited before the next. */
async function timeAsync(fn) {
  let n = 1
  for (;;) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) await fn()
    const ns = process.hrtime.bigint() - t0
    if (ns >= MIN_NS / 4n) {
      n = Math.ceil((n * Number(MIN_NS)) / Number(ns))
      break
    }
    n *= 2
  }
  const runs = []
  for (let r = 0; r < REPS; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) await fn()
    runs.push(Number(process.hrtime.bigint() - t0) / 1000 / n)
  }
  return median(runs)
}

/** Throws unless `value` holds: a benchmark of a path that fails is not a benchmark of that path. */
function check(value, what) {
  if (!value) throw new Error(`bench setup: ${what}`)
}

// ---- fixtures -------------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'bench-layers-'))
process.on('exit', () => rmSync(work, { recursive: true, force: true }))

const SCHEMA = z.object({ path: z.string().max(4096), limit: z.number().int().min(1).max(1000).optional(), data: z.string().optional() })
const toolDefinition = (name) => ({ name, description: `bench tool ${name}`, input: SCHEMA, run: async () => ({ content: [] }) })

/** A registry of `n` tools `t0000…`, and the policy targets the engine compiles against. */
function registryOf(n) {
  const registry = new ToolRegistry()
  for (let i = 0; i < n; i++) registry.register(toolDefinition(`t${String(i).padStart(4, '0')}`))
  const tools = new Map(registry.all().map((t) => [t.definition.name, t.descriptor.inputSchema]))
  return { registry, targets: { tools, prompts: new Map(), resources: new Map(), templates: new Map() } }
}
const toolName = (i) => `t${String(i).padStart(4, '0')}`

const principal = { id: 'key:0123456789abcdef', kind: 'api-key', name: 'bench', roles: ['caller'], tenant: 'acme' }
const ARGS = { path: '/srv/data/report.csv', limit: 10 }

// API keys: `n` in the store (config keys, no file), and one presented.
function keyStoreOf(n) {
  const keys = []
  let presented
  for (let i = 0; i < n; i++) {
    const id = i.toString(16).padStart(16, '0')
    const key = `bst_${id}_${'A'.repeat(42)}${(i % 10).toString()}`
    if (i === n - 1) presented = key
    keys.push({
      id,
      name: `k${i}`,
      roles: ['caller'],
      hash: hashApiKey(key),
      createdAt: '2026-01-01T00:00:00.000Z',
      expiresAt: '2099-01-01T00:00:00.000Z',
      revokedAt: null,
      source: 'config',
    })
  }
  return { store: new KeyStore(join(work, `keys-${n}.json`), keys, 1000), presented }
}

// Policy: RBAC rules (one role with a permission per tool, as `tools:` config gives) plus `extra`
// unrelated rules, and optionally one CEL condition on the tool called.
function policyOf(targets, { rules, when } = {}) {
  const names = [...targets.tools.keys()]
  const rbac = rbacRules({ roles: new Map([['caller', new Set(['use'])]]), targets: new Map(names.map((n) => [`tool:${n}`, ['use']])) })
  const list = [...rbac]
  if (when !== undefined) list.unshift({ id: 'path-guard', effect: 'deny', subjects: '*', targets: { tools: [names[0]] }, when })
  // Rules for other roles and other tools: what a larger policy holds that this call does not use.
  for (let i = list.length; i < (rules ?? 0); i++)
    list.push({ id: `r${i}`, effect: i % 5 === 0 ? 'deny' : 'allow', subjects: { roles: [`role${i}`] }, targets: { tools: [names[(i + 1) % names.length]] } })
  return CompiledPolicy.compile(list, targets)
}

// ---- rows -----------------------------------------------------------------------------------

const rows = []
/** A measured row; `note` says why it may be over 10 µs (or what it shows). */
function row(group, name, us, note = '') {
  rows.push({ group, name, us, note })
  process.stderr.write(`${group} | ${name}: ${us.toFixed(2)} µs\n`)
  return us
}

// Layer: API key check (regex, Map lookup, SHA-256 of the presented key, constant-time compare).
{
  const { store, presented } = keyStoreOf(10)
  const auth = new ApiKeyAuthenticator(store)
  check(auth.verify(presented).id.startsWith('key:'), 'api key verifies')
  const headers = new Headers({ authorization: `Bearer ${presented}` })
  row(
    'layer',
    'API key: Authorization header parse',
    time(() => credentialFromHeaders(headers)),
  )
  row(
    'layer',
    'API key: verify (10 keys)',
    time(() => auth.verify(presented)),
  )
  const authenticator = new Authenticator({
    apiKeys: auth,
    jwt: undefined,
    introspection: undefined,
    cache: new TokenCache(0),
    isRevoked: async () => false,
    isFamilyRevoked: async () => false,
  })
  row('layer', 'API key: Authenticator.verify (async, as the stage calls it)', await timeAsync(() => authenticator.verify(presented, 'authorization')))
}

// Layer: RBAC (reachable: the authorizeTool stage; decide: the authorizeArgs stage), 10 tools.
const ten = registryOf(10)
{
  const policy = policyOf(ten.targets)
  const target = { kind: 'tool', name: toolName(9) }
  check(policy.decide(principal, target, ARGS).allow && policy.reachable(principal, target).allow, 'rbac allows')
  row(
    'layer',
    'RBAC: reachable (10 rules)',
    time(() => policy.reachable(principal, target)),
  )
  row(
    'layer',
    'RBAC: decide, no condition (10 rules)',
    time(() => policy.decide(principal, target, ARGS)),
  )
}

// Layer: CEL conditions: compiled once at load; per call, the condition alone and in decide().
{
  const when = '!args.path.startsWith("/srv/") || args.limit > 500 || principal.tenant != "acme"'
  const policy = policyOf(ten.targets, { when })
  const target = { kind: 'tool', name: toolName(0) }
  check(policy.decide(principal, target, ARGS).allow, 'cel condition is false, rbac allows')
  const declaration = { path: 'string', limit: 'int', data: 'string' }
  const condition = compileCondition(when, declaration)
  const vars = {
    principal: { id: principal.id, sub: principal.id, kind: 'api-key', name: 'bench', roles: ['caller'], scopes: [], tenant: 'acme', claims: {} },
    args: { path: ARGS.path, limit: 10n },
  }
  check(condition(vars) === false, 'condition evaluates')
  row(
    'layer',
    'CEL: one condition, evaluate only',
    time(() => condition(vars)),
  )
  row(
    'layer',
    'CEL: decide with that condition (11 rules)',
    time(() => policy.decide(principal, target, ARGS)),
  )
}

// Layer: rate limiter: the plan's charges for a tools/call, then one atomic take from memory.
{
  const limits = configSchema.shape.limits.parse({
    principal: { rate: '1000000/s' },
    global: { rate: '1000000/s' },
    tiers: { db: { rate: '1000000/s' } },
    tools: { [toolName(0)]: { tier: 'db', rate: { rate: '1000000/s' } } },
  })
  const plan = new RatePlan(limits)
  const limiter = new MemoryRateLimiter()
  const charges = plan.forRequest(principal, toolName(0))
  check(charges.length === 4 && limiter.takeSync(charges).admitted, 'limiter admits four buckets')
  row(
    'layer',
    'limiter: RatePlan.forRequest (4 buckets)',
    time(() => plan.forRequest(principal, toolName(0))),
  )
  row(
    'layer',
    'limiter: takeSync (4 buckets, memory)',
    time(() => limiter.takeSync(charges)),
  )
}

// Layer: audit line: a discarding sink with writeLines, as the file sink has (one write per request).
const discard = () => ({ write() {}, writeLines() {}, close() {} })
const KEY = Buffer.alloc(32, 7)
/** The fields AuditScope.commit gives record() for an allowed tools/call, with `args` as noted. */
const lineFields = (args) => ({
  ...auditArgs(args),
  principalName: 'bench',
  principalKind: 'api-key',
  rule: 'role:caller/use',
  policy: '0123456789abcdef',
  authz: 'allow',
  credential: 'authorization',
  pii: 'mask',
  event: 'tool.call',
  requestId: '5f0c6c6e-8a0e-4a57-9d0a-0f1e2d3c4b5a',
  principal: principal.id,
  roles: principal.roles,
  tenant: principal.tenant,
  method: 'tools/call',
  tool: toolName(0),
  decision: 'allow',
  reason: 'OK',
  transport: 'http',
  era: '2025-11-25',
  session: undefined,
  remote: '127.0.0.1',
  durationMs: 1.23,
})
{
  const fields = lineFields(ARGS)
  const identity = (v) => v
  const plain = new AuditLog(discard(), undefined, undefined, identity)
  const redacted = new AuditLog(discard(), undefined, undefined)
  const sealed = new AuditLog(discard(), undefined, KEY)
  sealed.checkpointEvery(0)
  const sealedOnly = new AuditLog(discard(), undefined, KEY, identity)
  sealedOnly.checkpointEvery(0)
  row(
    'layer',
    'audit: record, no redaction, no seal (serialise only)',
    time(() => plain.record(fields)),
    'serialising a 22-field line (JSON.stringify)',
  )
  row(
    'layer',
    'audit: record + seal, no redaction',
    time(() => sealedOnly.record(fields)),
    "crypto floor: SHA-256 + HMAC-SHA256 of the ~700 B line (rows below, ~6 µs); the rest is serialising and the seal's string building",
  )
  row(
    'layer',
    'audit: record + redaction',
    time(() => redacted.record(fields)),
    'serialising, and a redaction test per key and string',
  )
  row(
    'layer',
    "audit: record + redaction + seal (the server's line)",
    time(() => sealed.record(fields)),
    'crypto floor of the seal (SHA-256 + HMAC-SHA256) + serialising + redaction',
  )
  row(
    'layer',
    'audit: redaction alone (redact(fields))',
    time(() => redact(fields)),
    'a regex test per string; no copy unless something is redacted',
  )
  row(
    'layer',
    "audit: auditArgs(args) (JSON size check and snapshot; redaction is the line's)",
    time(() => auditArgs(ARGS)),
  )
  // The floor under sealing, and what a key prepared once saves (see the findings).
  const line = toJsonLine({ ts: new Date().toISOString(), ...fields })
  row(
    'layer',
    'audit: HMAC-SHA256 of one line, Buffer key (as chain.ts)',
    time(() => createHmac('sha256', KEY).update(line).digest('hex')),
    'crypto floor',
  )
  row(
    'layer',
    'audit: SHA-256 of one line (the chain link, as chain.ts)',
    time(() => createHash('sha256').update(line).digest('hex')),
    'crypto floor',
  )
  const keyObject = createSecretKey(KEY)
  row(
    'layer',
    'audit: HMAC-SHA256 of one line, KeyObject made once',
    time(() => createHmac('sha256', keyObject).update(line).digest('hex')),
    'crypto floor',
  )
}

// Layer: PII masking of a tool result (the execute stage's maskValue).
{
  const clean = { content: [{ type: 'text', text: `Report for order 2026-05-14, 42 rows: ${'totals are within range; '.repeat(16)}` }] }
  const dirty = { content: [{ type: 'text', text: `Contact jane.doe@example.com or +1 415 555 0100 about card 4111 1111 1111 1111. ${'totals are within range; '.repeat(16)}` }] }
  check(maskValue(dirty).counts.size === 3 && maskValue(clean).counts.size === 0, 'pii found in dirty only')
  row(
    'layer',
    'PII: maskValue, ~450 B result without PII',
    time(() => maskValue(clean)),
    'one pass counting characters, then only the detectors that text could match',
  )
  row(
    'layer',
    'PII: maskValue, ~480 B result with email, phone, card',
    time(() => maskValue(dirty)),
    'the email, phone and card detectors scan the text and mask three matches (linear in text); no cryptography',
  )
}

// Layer: JWT ES256 verification, with and without the verified-token cache.
{
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' }
  const audience = 'https://bastion.bench/mcp'
  const issuer = {
    name: 'idp',
    issuer: 'https://idp.bench',
    audience: () => [audience],
    algorithms: ['ES256'],
    keys: { jwks: { keys: [jwk] } },
    requireTyp: false,
    clockSkewSeconds: 60,
    maxLifetimeSeconds: 86_400,
    claims: { roles: 'roles' },
    defaultRoles: ['caller'],
  }
  const token = await new SignJWT({ scope: 'mcp:tools', roles: ['caller'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(issuer.issuer)
    .setAudience(audience)
    .setSubject('alice')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey)
  const jwt = new JwtVerifier([issuer])
  const { store } = keyStoreOf(1)
  const parts = (cache) => ({ apiKeys: new ApiKeyAuthenticator(store), jwt, introspection: undefined, cache, isRevoked: async () => false, isFamilyRevoked: async () => false })
  const cached = new Authenticator(parts(new TokenCache(10_000)))
  const uncached = new Authenticator(parts(new TokenCache(0)))
  check((await cached.verify(token, 'authorization')).id === 'idp:alice', 'jwt verifies')
  row(
    'layer',
    'JWT ES256: Authenticator.verify, token cache hit',
    await timeAsync(() => cached.verify(token, 'authorization')),
    'crypto floor: SHA-256 of the token for the cache key',
  )
  row(
    'layer',
    'JWT ES256: Authenticator.verify, no cache (ECDSA P-256 verify)',
    await timeAsync(() => uncached.verify(token, 'authorization')),
    'crypto floor: ECDSA P-256 signature verification',
  )
  row('layer', 'JWT ES256: JwtVerifier.verify alone', await timeAsync(() => jwt.verify(token)), 'crypto floor: ECDSA P-256 signature verification')
}

// ---- growth ---------------------------------------------------------------------------------

const slopes = []
/** Rows for sizes `ns`, and the slope between the first and last (µs per added `unit`). */
async function growth(name, unit, ns, measure, scale = (n) => n) {
  const us = []
  for (const n of ns) us.push(row('growth', `${name}: ${n}`, await measure(n)))
  const first = us[0]
  const last = us.at(-1)
  const slope = (last - first) / (scale(ns.at(-1)) - scale(ns[0]))
  slopes.push({ name, unit, ns, us, slope })
}

const registries = new Map([10, 100, 1000].map((n) => [n, registryOf(n)]))

// decide() against policies of 10, 100, 1,000 rules (10 tools; the call's tool is covered by one rule).
await growth('decide(), policy rules', 'rule', [10, 100, 1000], (n) => {
  const policy = policyOf(ten.targets, { rules: n })
  const target = { kind: 'tool', name: toolName(9) }
  check(policy.decide(principal, target, ARGS).allow, 'decide allows')
  return time(() => policy.decide(principal, target, ARGS))
})

// API key lookup with 10 and 10,000 keys in the store.
await growth('API key verify, keys in store', 'key', [10, 10_000], (n) => {
  const { store, presented } = keyStoreOf(n)
  const auth = new ApiKeyAuthenticator(store)
  check(auth.verify(presented).id.startsWith('key:'), 'api key verifies')
  return time(() => auth.verify(presented))
})

// tools/list as mcp-server.ts does it: every registered tool, not blocked, reachable.
const list = (registry, policy) =>
  registry
    .all()
    .filter((t) => t.definition.blocked?.() === undefined && policy.reachable(principal, { kind: 'tool', name: t.definition.name }).allow)
    .map((t) => t.descriptor)

// One wildcard grant (`caller: ['*']`): policy size fixed, the list grows with the tools.
await growth('tools/list, one wildcard rule, registered tools', 'tool', [10, 100, 1000], (n) => {
  const { registry, targets } = registries.get(n)
  const policy = CompiledPolicy.compile(rbacRules({ roles: new Map([['caller', new Set(['*'])]]), targets: new Map() }), targets)
  check(list(registry, policy).length === n, 'every tool listed')
  return time(() => list(registry, policy))
})

// A permission per tool (`tools.<name>.permissions`, the RBAC config): rules grow with the tools too.
await growth('tools/list, one rule per tool, registered tools', 'tool', [10, 100, 1000], (n) => {
  const { registry, targets } = registries.get(n)
  const perTool = rbacRules({
    roles: new Map([['caller', new Set([...targets.tools.keys()].map((t) => `use:${t}`))]]),
    targets: new Map([...targets.tools.keys()].map((t) => [`tool:${t}`, [`use:${t}`]])),
  })
  const policy = CompiledPolicy.compile(perTool, targets)
  check(perTool.length === n && list(registry, policy).length === n, 'every tool listed, one rule each')
  return time(() => list(registry, policy))
})

// tools/call's per-call policy work: registry lookup, reachable, validate, decide (a rule per tool).
await growth('tools/call (lookup + reachable + validate + decide), one rule per tool', 'tool', [10, 100, 1000], (n) => {
  const { registry, targets } = registries.get(n)
  const perTool = rbacRules({
    roles: new Map([['caller', new Set([...targets.tools.keys()].map((t) => `use:${t}`))]]),
    targets: new Map([...targets.tools.keys()].map((t) => [`tool:${t}`, [`use:${t}`]])),
  })
  const policy = CompiledPolicy.compile(perTool, targets)
  const name = toolName(n - 1)
  const call = () => {
    const tool = registry.get(name)
    const target = { kind: 'tool', name: tool.definition.name }
    if (!policy.reachable(principal, target).allow) throw new Error('denied')
    const args = tool.definition.input.parse(ARGS)
    return policy.decide(principal, target, args)
  }
  check(call().allow, 'call allowed')
  return time(call)
})

// The audit line against argument size: auditArgs then a sealed, redacted record(), as a tools/call writes it.
const argsOf = (bytes) => ({ path: '/srv/data/report.csv', data: 'lorem ipsum dolor sit amet '.repeat(Math.ceil(bytes / 27)).slice(0, bytes) })
await growth(
  'audit line (auditArgs + sealed record), argument bytes',
  'KB',
  [100, 10_000, 1_000_000],
  (bytes) => {
    const log = new AuditLog(discard(), undefined, KEY)
    log.checkpointEvery(0)
    const args = argsOf(bytes)
    return time(() => log.record(lineFields(args)))
  },
  (bytes) => bytes / 1000,
)
// The same, with the arguments kept on the line (no 8 KiB cut-off): record() alone against size.
await growth(
  'audit record() with args inline (no omission), argument bytes',
  'KB',
  [100, 10_000, 1_000_000],
  (bytes) => {
    const log = new AuditLog(discard(), undefined, KEY)
    log.checkpointEvery(0)
    const fields = { ...lineFields(ARGS), args: argsOf(bytes) }
    return time(() => log.record(fields))
  },
  (bytes) => bytes / 1000,
)

// ---- report ---------------------------------------------------------------------------------

const FINDINGS = {
  decide: 'reads the rules that cover the tool (an index per policy)',
  list: 'linear in the tools listed (each reads its own rules)',
  call: 'reads the rules that cover the tool',
  auditBig: 'linear in argument size: serialised once to measure it (omitted over 8 KiB, never redacted then)',
  auditInline: 'linear in line size: redaction, serialisation, SHA-256, HMAC',
}
function noteOf(r) {
  if (r.us <= LIMIT_US) return ''
  if (r.note !== '') return r.note
  if (r.name.startsWith('decide()')) return FINDINGS.decide
  if (r.name.startsWith('tools/list, one rule')) return FINDINGS.list
  if (r.name.startsWith('tools/list, one wildcard')) return 'linear in the tools listed (the answer itself grows)'
  if (r.name.startsWith('tools/call')) return FINDINGS.call
  if (r.name.startsWith('audit line')) return r.name.endsWith(': 100') ? 'as the layer row: crypto floor of the seal + serialising + redaction' : FINDINGS.auditBig
  if (r.name.startsWith('audit record()')) return FINDINGS.auditInline
  return 'finding: over 10 µs without cryptography'
}
const fmt = (us) => (us >= 100 ? us.toFixed(0) : us.toFixed(2))
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`
const lines = [
  '# Cost per layer',
  '',
  `Machine: ${machine}. In process, on dist/: warm-up, then a loop of ≥ 200 ms, ${REPS} times; median µs per call.`,
  `Over ${LIMIT_US} µs is marked ⚠ with the reason: a cryptographic floor, or what the cost grows with.`,
  '',
  '| layer | µs per call | |',
  '|---|---|---|',
  ...rows.filter((r) => r.group === 'layer').map((r) => `| ${r.name} | ${fmt(r.us)} | ${r.us > LIMIT_US ? '⚠ ' : ''}${noteOf(r)} |`),
  '',
  '| growth | µs per call | |',
  '|---|---|---|',
  ...rows.filter((r) => r.group === 'growth').map((r) => `| ${r.name} | ${fmt(r.us)} | ${r.us > LIMIT_US ? '⚠ ' : ''}${noteOf(r)} |`),
  '',
  '| growth in | sizes | µs | slope (first → last) | × per step (×10 is linear, ×100 quadratic) |',
  '|---|---|---|---|---|',
  ...slopes.map(
    (s) =>
      `| ${s.name} | ${s.ns.join(' / ')} | ${s.us.map(fmt).join(' / ')} | ${s.slope.toPrecision(3)} µs per ${s.unit} | ${s.us
        .slice(1)
        .map((u, i) => `×${(u / s.us[i]).toFixed(1)} for ×${s.ns[i + 1] / s.ns[i]}`)
        .join(', ')} |`,
  ),
]
const text = `${lines.join('\n')}\n`
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/layers.md', import.meta.url), text)
process.stdout.write(text)
