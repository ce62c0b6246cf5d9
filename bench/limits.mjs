// npm run bench:limits: what rate limiting costs per request, no limiter vs the memory backend vs
// the Redis backend, in one run; then the limiter alone, per take. Writes bench/results/limits.md.
// Needs Redis on 127.0.0.1:6379.
import { randomBytes } from 'node:crypto'
import { MemoryRateLimiter, RedisRateLimiter } from '../dist/index.js'
import { machine, measure, method, publish, table } from './lib.mjs'

const CONFIGS = [
  ['bastion-minimal', 'no limiter'],
  ['bastion-memory-limiter', 'memory limiter'],
  ['bastion-redis-limiter', 'redis limiter'],
]

/** µs per `take` of two buckets, `parallel` in flight. */
async function micro(limiter, n, parallel) {
  const charges = [
    { bucket: 'principal', key: `p|${randomBytes(4).toString('hex')}`, capacity: 1e9, perMs: 1e6, cost: 1 },
    { bucket: 'global', key: `g|${randomBytes(4).toString('hex')}`, capacity: 1e9, perMs: 1e6, cost: 1 },
  ]
  const start = performance.now()
  let done = 0
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (done < n) {
        done += 1
        await limiter.take(charges)
      }
    }),
  )
  return ((performance.now() - start) * 1000) / n
}

const results = await measure(CONFIGS)
const redis = new RedisRateLimiter({ url: 'redis://127.0.0.1:6379', keyPrefix: `bench:${randomBytes(4).toString('hex')}:`, timeoutMs: 1000 })
await redis.ready()
const microRows = [
  ['memory, sequential', await micro(new MemoryRateLimiter(), 200_000, 1)],
  ['redis, sequential', await micro(redis, 5_000, 1)],
  ['redis, 32 in flight', await micro(redis, 20_000, 32)],
]
await redis.close()
publish('limits.md', [
  '# Rate limiter cost',
  '',
  `Machine: ${machine()}.`,
  method('no limiter'),
  '',
  ...table(CONFIGS, results, 'bastion-minimal', 32),
  '',
  '| limiter alone (two buckets per take) | µs per take |',
  '|---|---|',
  ...microRows.map(([name, us]) => `| ${name} | ${us.toFixed(2)} |`),
])
