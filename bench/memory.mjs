// Memory per entry of the rate limiter and the verified-token cache, 10,000 distinct principals,
// and whether each stays within its bound; heap per open 2025-11-25 session. Runs itself in a child with --expose-gc.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const N = 10_000

async function measure() {
  const { MemoryRateLimiter } = await import('../dist/limits/memory-limiter.js')
  const { TokenCache, tokenKey } = await import('../dist/auth/token-cache.js')
  const heap = () => {
    globalThis.gc()
    globalThis.gc()
    return process.memoryUsage().heapUsed
  }
  const principal = (i) => ({
    id: `idp:user-${i}`,
    kind: 'jwt',
    name: `user-${i}`,
    roles: ['analyst'],
    scopes: ['mcp:tools'],
    claims: { sub: `user-${i}`, iss: 'https://idp.bench', exp: 9e9 },
  })
  const out = {}

  let before = heap()
  const limiter = new MemoryRateLimiter()
  for (let i = 0; i < N; i++) limiter.takeSync([{ bucket: 'principal', key: `p|idp:user-${i}`, capacity: 600, perMs: 0.01, cost: 1 }])
  out.limiterBytes = (heap() - before) / limiter.size
  out.limiterEntries = limiter.size
  const bounded = new MemoryRateLimiter({ maxKeys: 2_000 })
  for (let i = 0; i < N; i++) bounded.takeSync([{ bucket: 'principal', key: `p|idp:user-${i}`, capacity: 600, perMs: 0.01, cost: 1 }])
  out.limiterBounded = bounded.size

  before = heap()
  const cache = new TokenCache(N)
  for (let i = 0; i < N; i++) cache.set(tokenKey(`token-${i}`), { principal: principal(i), expiresAt: Date.now() + 3_600_000, jti: `jti-${i}` })
  out.cacheBytes = (heap() - before) / cache.size
  out.cacheEntries = cache.size
  const small = new TokenCache(1_000)
  for (let i = 0; i < N; i++) small.set(tokenKey(`token-${i}`), { principal: principal(i), expiresAt: Date.now() + 3_600_000, jti: `jti-${i}` })
  out.cacheBounded = small.size

  // Open 2025-11-25 sessions: heap per session on a running server (one principal, the bench's
  // session caps raised), after a warm-up so that the client's connection pool is already there.
  const { createBastion } = await import('../dist/index.js')
  const { pino } = await import('pino')
  const { mkdtempSync, realpathSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const b = await createBastion({
    baseDir: realpathSync(mkdtempSync(join(tmpdir(), 'bastion-bench-'))),
    logger: pino({ level: 'silent' }),
    config: {
      workspace: { enabled: false },
      vault: { enabled: false },
      server: { sessions: { maxTotal: SESSIONS + 100, maxPerPrincipal: SESSIONS + 100 } },
      limits: { principal: { rate: '100000000/s' }, anonymous: { rate: '100000000/s' } },
      roles: { caller: { permissions: ['echo'] } },
      tools: { echo: { permissions: ['echo'] } },
    },
    auditSink: { write() {}, close() {} },
  })
  const { z } = await import('zod')
  b.tool({ name: 'echo', description: 'echo', input: z.object({ text: z.string().max(100) }), run: async ({ text }) => text })
  const running = await b.listen({ host: '127.0.0.1', port: 0 })
  const key = b.keys.create({ name: 'bench', roles: ['caller'], expiresAt: null }).key
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}` }
  const open = async () => {
    const init = await fetch(running.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
      }),
    })
    await init.text()
    const session = init.headers.get('mcp-session-id')
    if (session === null) throw new Error(`no session: ${init.status}`)
    const ready = await fetch(running.url, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': session },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    })
    await ready.text()
  }
  for (let i = 0; i < 20; i++) await open()
  before = heap()
  for (let i = 0; i < SESSIONS; i++) await open()
  out.sessionBytes = (heap() - before) / SESSIONS
  await running.close()
  process.stdout.write(JSON.stringify(out))
}

const SESSIONS = 500

export async function memoryFigures() {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', new URL(import.meta.url).pathname, 'measure'])
  const m = JSON.parse(stdout)
  return [
    `## Memory, ${N.toLocaleString('en')} distinct principals`,
    '',
    '| cache | entries | bytes per entry | bound | size after 10,000 inserts |',
    '|---|---|---|---|---|',
    `| rate limiter (memory backend), one bucket each | ${m.limiterEntries} | ${Math.round(m.limiterBytes)} | 2,000 keys | ${m.limiterBounded} (${m.limiterBounded <= 2000 ? 'within' : 'OVER'} bound) |`,
    `| verified-token cache | ${m.cacheEntries} | ${Math.round(m.cacheBytes)} | 1,000 entries | ${m.cacheBounded} (${m.cacheBounded <= 1000 ? 'within' : 'OVER'} bound) |`,
    '',
    `An open 2025-11-25 session (its SDK server and transport) holds ${Math.round(m.sessionBytes / 1024)} KiB of heap (${SESSIONS} sessions opened on a running server, after 20 for warm-up); \`server.sessions.maxTotal\` (default 1,000) bounds them.`,
  ]
}

if (process.argv[2] === 'measure') await measure()
