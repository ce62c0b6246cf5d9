import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { validateConfig } from '../../src/config/load.js'
import type { BastionConfigInput } from '../../src/config/schema.js'
import { MemoryRateLimiter, type RateLimiter } from '../../src/limits/memory-limiter.js'
import { RatePlan } from '../../src/limits/rate-plan.js'
import { RedisRateLimiter } from '../../src/limits/redis-limiter.js'
import type { Charge } from '../../src/limits/token-bucket.js'
import type { Principal } from '../../src/principal.js'
import { privateRedis } from '../helpers/processes.js'
import { SHARED_REDIS, sharedRedis } from '../helpers/redis.js'

// The machine's shared Redis. Missing Redis fails this file in beforeAll; nothing is skipped.
const HOUR = 3_600_000
/** One token an hour: the few ms a test takes refill about 1e-6 of a token. */
const slow = (key: string, capacity: number, cost = 1): Charge => ({ bucket: `b:${key}`, key, capacity, perMs: 1 / HOUR, cost })
const TOLERANCE = 0.01

const raw = sharedRedis()

/** A limiter of each backend, fresh per test; the Redis one under a prefix of its own, deleted after. */
interface Backend {
  readonly limiter: RateLimiter
  /** How many buckets the backend stores now (Redis: keys under the test's prefix). */
  stored(): Promise<number>
  close(): Promise<void>
}

const BACKENDS: { name: string; open: () => Promise<Backend> }[] = [
  {
    name: 'memory',
    open: async () => {
      const limiter = new MemoryRateLimiter()
      return { limiter, stored: async () => limiter.size, close: () => limiter.close() }
    },
  },
  {
    name: 'redis',
    open: async () => {
      const keyPrefix = `bastion-test:levels:${randomBytes(6).toString('hex')}:`
      const limiter = new RedisRateLimiter({ url: SHARED_REDIS, keyPrefix, timeoutMs: 1000 })
      await limiter.ready()
      const stored = async (): Promise<number> => (await raw().keys(`${keyPrefix}*`)).length
      return {
        limiter,
        stored,
        close: async () => {
          const keys = await raw().keys(`${keyPrefix}*`)
          if (keys.length > 0) await raw().del(...keys)
          await limiter.close()
        },
      }
    },
  },
]

describe.each(BACKENDS)('$name backend: levels', ({ open }) => {
  let backend: Backend
  let limiter: RateLimiter
  beforeEach(async () => {
    backend = await open()
    limiter = backend.limiter
  })
  afterEach(async () => {
    await backend.close()
  })

  it('after N takes a bucket shows capacity − N, its shape and when it is full again', async () => {
    const charge = slow('drained', 10)
    for (let i = 0; i < 4; i++) expect(await limiter.take([charge])).toStrictEqual({ admitted: true })
    const [level, ...rest] = await limiter.levels([charge])
    expect(rest).toStrictEqual([])
    expect(level).toMatchObject({ bucket: 'b:drained', capacity: 10, perSecond: 1000 / HOUR })
    expect(level?.tokens).toBeGreaterThanOrEqual(6)
    expect(level?.tokens).toBeLessThan(6 + TOLERANCE)
    expect(level?.fullInMs).toBeGreaterThan(4 * HOUR - 60_000)
    expect(level?.fullInMs).toBeLessThanOrEqual(4 * HOUR)
  })

  it('a bucket never charged is full, and reading it creates nothing', async () => {
    expect(await limiter.levels([slow('never', 7), slow('never-either', 3)])).toStrictEqual([
      { bucket: 'b:never', tokens: 7, capacity: 7, perSecond: 1000 / HOUR, fullInMs: 0 },
      { bucket: 'b:never-either', tokens: 3, capacity: 3, perSecond: 1000 / HOUR, fullInMs: 0 },
    ])
    expect(await backend.stored()).toBe(0)
  })

  it('reading does not consume: after many reads the bucket admits exactly what it had left', async () => {
    const charge = slow('kept', 5)
    await limiter.take([charge])
    await limiter.take([charge])
    for (let i = 0; i < 50; i++) await limiter.levels([charge, slow('other', 2)])
    for (let i = 0; i < 3; i++) expect(await limiter.take([charge])).toMatchObject({ admitted: true })
    expect(await limiter.take([charge])).toMatchObject({ admitted: false, bucket: 'b:kept' })
    const [level] = await limiter.levels([charge])
    expect(level?.tokens).toBeLessThan(TOLERANCE)
    // The bucket read alongside was never charged and is still not stored.
    expect(await backend.stored()).toBe(1)
  })

  it('one level per charge, in the order given, a charge cost counting as it was taken', async () => {
    await limiter.take([slow('a', 10, 3), slow('c', 4, 3)])
    const levels = await limiter.levels([slow('c', 4), slow('b', 8), slow('a', 10)])
    expect(levels.map((l) => [l.bucket, Math.round(l.tokens * 1000) / 1000])).toStrictEqual([
      ['b:c', 1],
      ['b:b', 8],
      ['b:a', 7],
    ])
    expect(await limiter.levels([])).toStrictEqual([])
  })
})

describe('redis backend: the read is read-only', () => {
  const keyPrefix = `bastion-test:levels:${randomBytes(6).toString('hex')}:`
  let limiter: RedisRateLimiter
  beforeAll(async () => {
    limiter = new RedisRateLimiter({ url: SHARED_REDIS, keyPrefix, timeoutMs: 1000 })
    await limiter.ready()
  })
  afterAll(async () => {
    const keys = await raw().keys(`${keyPrefix}*`)
    if (keys.length > 0) await raw().del(...keys)
    await limiter.close()
  })

  it('leaves a charged bucket byte for byte as it was, its expiry untouched, and creates no key', async () => {
    const charge = slow('held', 9)
    await limiter.take([charge])
    const before = await raw().hgetall(`${keyPrefix}held`)
    const ttl = await raw().pttl(`${keyPrefix}held`)
    for (let i = 0; i < 20; i++) await limiter.levels([charge, slow('absent', 9)])
    expect(await raw().hgetall(`${keyPrefix}held`)).toStrictEqual(before)
    // A write (HSET/PEXPIRE) would reset the expiry to about the same value or later; it only runs down.
    expect(await raw().pttl(`${keyPrefix}held`)).toBeLessThanOrEqual(ttl)
    expect(await raw().exists(`${keyPrefix}absent`)).toBe(0)
    expect(await raw().keys(`${keyPrefix}*`)).toStrictEqual([`${keyPrefix}held`])
  })
})

describe('redis backend unavailable: levels fail closed like take', () => {
  const TIMEOUT = 400
  let server: Awaited<ReturnType<typeof privateRedis>>
  let limiter: RedisRateLimiter
  beforeEach(async () => {
    server = await privateRedis()
    limiter = new RedisRateLimiter({ url: server.url, keyPrefix: 'levels:', timeoutMs: TIMEOUT })
    await limiter.ready()
    await limiter.take([slow('x', 5)])
    expect((await limiter.levels([slow('x', 5)]))[0]?.tokens).toBeLessThan(4 + TOLERANCE)
  })
  afterEach(async () => {
    await limiter.close()
    // SIGKILL ends a paused process too.
    await server.stop()
  })

  const expectUnavailable = async (read: Promise<unknown>, start: number): Promise<void> => {
    await expect(read).rejects.toMatchObject({ name: 'SecurityError', code: 'ERR_LIMITS_UNAVAILABLE', message: expect.stringMatching(/^rate-limit backend unavailable/) })
    expect(performance.now() - start).toBeLessThan(TIMEOUT + 500)
  }

  it('a stopped server (process gone) → ERR_LIMITS_UNAVAILABLE at once', async () => {
    await server.stop()
    const start = performance.now()
    await expectUnavailable(limiter.levels([slow('x', 5)]), start)
  })

  it('a hung server (SIGSTOP: connected, never answers) → ERR_LIMITS_UNAVAILABLE within the deadline', async () => {
    server.signal('SIGSTOP')
    const start = performance.now()
    await expectUnavailable(limiter.levels([slow('x', 5), slow('y', 5)]), start)
    // The same deadline take has: the two fail alike.
    await expectUnavailable(limiter.take([slow('x', 5)]), performance.now())
  })
})

describe('RatePlan.principalBuckets: the request buckets, keyed as requests are charged', () => {
  const plan = (limits: BastionConfigInput['limits']): RatePlan => new RatePlan(validateConfig({ limits }, 'test', '/').config.limits)
  const LIMITS: BastionConfigInput['limits'] = {
    principal: { rate: '10/hour' },
    roles: { viewer: { rate: '30/hour' }, admin: { rate: '1000/hour' } },
    tenant: { rate: '5000/hour' },
    global: { rate: '9000/hour' },
    tiers: { db: { rate: '30/hour' } },
    tools: { query: { tier: 'db', cost: 2, rate: { rate: '5/hour' } } },
  }
  const who: Principal = { id: 'key:1', kind: 'api-key', name: 'n', roles: ['viewer', 'admin'], tenant: 'acme' }
  const shape = (c: Charge) => ({ bucket: c.bucket, key: c.key, capacity: c.capacity, perMs: c.perMs })

  it.each([
    { name: 'role, tenant and global', limits: LIMITS, principal: who, buckets: ['role:admin', 'tenant', 'global'] },
    { name: 'no role limit, no tenant', limits: LIMITS, principal: { ...who, roles: ['nobody'], tenant: 'x' }, buckets: ['principal', 'tenant', 'global'] },
    { name: 'a principal without a tenant', limits: LIMITS, principal: { id: 'key:2', kind: 'jwt' as const, name: 'm', roles: ['viewer'] }, buckets: ['role:viewer', 'global'] },
    { name: 'no tenant or global configured', limits: { principal: { rate: '10/hour' } }, principal: who, buckets: ['principal'] },
  ])('$name: the same buckets as a request, no tool buckets', ({ limits, principal, buckets }) => {
    const p = plan(limits)
    const shown = p.principalBuckets(principal)
    expect(shown.map((c) => c.bucket)).toStrictEqual(buckets)
    expect(shown.map(shape)).toStrictEqual(p.forRequest(principal, undefined).map(shape))
  })

  it('a tool call is charged to these very keys (and to its tier and tool besides)', () => {
    const p = plan(LIMITS)
    const call = p.forRequest(who, 'query')
    expect(call.slice(0, 3).map(shape)).toStrictEqual(p.principalBuckets(who).map(shape))
    expect(call.slice(3).map((c) => c.bucket)).toStrictEqual(['tier:db', 'tool:query'])
  })

  it.each(BACKENDS)('$name: levels of the shown buckets reflect what requests consumed', async ({ open }) => {
    const backend = await open()
    try {
      const p = plan(LIMITS)
      // One plain request (cost 1) and one call of a tool costing 2.
      expect(await backend.limiter.take(p.forRequest(who, undefined))).toStrictEqual({ admitted: true })
      expect(await backend.limiter.take(p.forRequest(who, 'query'))).toStrictEqual({ admitted: true })
      const levels = await backend.limiter.levels(p.principalBuckets(who))
      expect(levels.map((l) => [l.bucket, l.capacity])).toStrictEqual([
        ['role:admin', 1000],
        ['tenant', 5000],
        ['global', 9000],
      ])
      // Three tokens taken from each; the fastest (9000/hour) refills 0.0025 a second.
      for (const l of levels) {
        expect(l.tokens).toBeGreaterThanOrEqual(l.capacity - 3)
        expect(l.tokens).toBeLessThan(l.capacity - 3 + 0.05)
      }
    } finally {
      await backend.close()
    }
  })
})
