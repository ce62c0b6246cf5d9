// Memory per entry of the rate limiter and the verified-token cache, 10,000 distinct principals,
// and whether each stays within its bound. Runs itself in a child with --expose-gc.
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
  process.stdout.write(JSON.stringify(out))
}

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
  ]
}

if (process.argv[2] === 'measure') await measure()
