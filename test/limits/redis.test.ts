import { randomBytes } from 'node:crypto'
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateApiKey } from '../../src/auth/api-key.js'
import { MemoryRateLimiter } from '../../src/limits/memory-limiter.js'
import { RedisRateLimiter } from '../../src/limits/redis-limiter.js'
import type { Charge } from '../../src/limits/token-bucket.js'
import { privateRedis, serveProcess } from '../helpers/processes.js'
import { SHARED_REDIS, sharedRedis } from '../helpers/redis.js'
import { callModern, startServer, type TestServer } from '../helpers/server.js'

const prefix = (): string => `bastion-test:${randomBytes(6).toString('hex')}:`

const raw = sharedRedis()

describe('Redis backend: the same arithmetic as memory, one atomic script', () => {
  let limiter: RedisRateLimiter
  let keyPrefix: string
  beforeAll(async () => {
    keyPrefix = prefix()
    limiter = new RedisRateLimiter({ url: SHARED_REDIS, keyPrefix, timeoutMs: 1000 })
    await limiter.ready()
  })
  afterAll(async () => {
    await limiter.close()
  })

  it('makes the decisions the memory backend makes, request by request (bursts, costs, multi-bucket atomicity)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ cost: fc.integer({ min: 1, max: 4 }), which: fc.subarray([0, 1, 2], { minLength: 1 }) }), { minLength: 1, maxLength: 40 }),
        async (requests) => {
          const run = randomBytes(4).toString('hex')
          // Slow refill (1 per hour): decisions cannot depend on the few ms between the two runs.
          const shapes: Charge[] = [
            { bucket: 'a', key: `${run}:a`, capacity: 10, perMs: 1 / 3_600_000, cost: 1 },
            { bucket: 'b', key: `${run}:b`, capacity: 6, perMs: 1 / 3_600_000, cost: 1 },
            { bucket: 'c', key: `${run}:c`, capacity: 15, perMs: 1 / 3_600_000, cost: 1 },
          ]
          const memory = new MemoryRateLimiter()
          for (const r of requests) {
            const charges = r.which.map((i) => ({ ...(shapes[i] as Charge), cost: r.cost }))
            const [fromRedis, fromMemory] = [await limiter.take(charges), memory.takeSync(charges)]
            expect(fromRedis.admitted).toBe(fromMemory.admitted)
            if (!fromRedis.admitted && !fromMemory.admitted) {
              // Equally short buckets can tie; the two clocks may break the tie differently.
              expect(charges.map((c) => c.bucket)).toContain(fromRedis.bucket)
              expect(Math.abs(fromRedis.retryAfterMs - fromMemory.retryAfterMs)).toBeLessThan(60_000)
            }
          }
        },
      ),
      { numRuns: 25 },
    )
  })

  it('computes the exact wait and keeps keys only until their bucket is full again', async () => {
    const charge: Charge = { bucket: 'x', key: 'expiry', capacity: 2, perMs: 1 / 1000, cost: 1 }
    expect(await limiter.take([charge])).toStrictEqual({ admitted: true })
    expect(await limiter.take([charge])).toStrictEqual({ admitted: true })
    const refused = await limiter.take([charge])
    expect(refused.admitted).toBe(false)
    if (!refused.admitted) {
      expect(refused.bucket).toBe('x')
      expect(refused.retryAfterMs).toBeGreaterThan(900)
      expect(refused.retryAfterMs).toBeLessThanOrEqual(1000)
    }
    // Empty bucket: full again in 2 s, plus a second of slack.
    const ttl = await raw().pttl(`${keyPrefix}expiry`)
    expect(ttl).toBeGreaterThan(2500)
    expect(ttl).toBeLessThanOrEqual(3000)
  })

  it('a bucket that takes longer than ten years to refill still works, its key kept for ten years at most', async () => {
    const slow: Charge = { bucket: 'slow', key: 'slow', capacity: 1_000_000_000, perMs: 1 / 86_400_000, cost: 100_000_000 }
    expect(await limiter.take([slow])).toStrictEqual({ admitted: true })
    const ttl = await raw().pttl(`${keyPrefix}slow`)
    expect(ttl).toBeGreaterThan(300_000_000_000)
    expect(ttl).toBeLessThanOrEqual(315_360_000_000)
  })
})

/** Keys, a config file and two `serve` processes sharing one Redis. */
async function twoReplicas(limits: string, principals: number): Promise<{ urls: string[]; keys: string[]; stop(): Promise<void> }> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-replicas-')))
  const keys = Array.from({ length: principals }, () => generateApiKey().key)
  const env: Record<string, string> = { REPLICA_REDIS_URL: SHARED_REDIS }
  keys.forEach((k, i) => {
    env[`REPLICA_KEY_${i}`] = k
  })
  const configKeys = keys.map((_, i) => `    - { name: p${i}, roles: [user], key: { env: REPLICA_KEY_${i} } }`).join('\n')
  const config = (state: string): string => `stateDir: ${state}
roles:
  user: { permissions: ['*'] }
auth:
  keys:
${configKeys}
limits:
  backend: redis
  # A loaded CI machine can starve a process for longer than the default 500 ms deadline.
  redis: { url: { env: REPLICA_REDIS_URL }, keyPrefix: '${prefix()}', timeoutMs: 3000 }
${limits}
`
  // One prefix for both replicas: the same config text except the state directory.
  const shared = config('STATE')
  writeFileSync(join(dir, 'a.yaml'), shared.replace('STATE', 'state-a'))
  writeFileSync(join(dir, 'b.yaml'), shared.replace('STATE', 'state-b'))
  const servers = await Promise.all(['a.yaml', 'b.yaml'].map((f) => serveProcess(dir, ['--config', join(dir, f)], env)))
  return {
    urls: servers.map((s) => s.url),
    keys,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()))
    },
  }
}

/** One call as the client saw it: when it was sent and answered (performance.now(), ms) and its status. */
interface Sent {
  key: string
  sent: number
  done: number
  status: number
}

/** Keep `workers` calls in flight per principal per replica until `until()` says stop. */
async function hammer(urls: string[], keys: string[], workers: number, until: (sent: number) => boolean): Promise<{ calls: Sent[]; first: number; last: number }> {
  const calls: Sent[] = []
  let sent = 0
  const first = performance.now()
  const worker = async (url: string, key: string): Promise<void> => {
    while (until(sent)) {
      sent += 1
      const at = performance.now()
      const { res } = await callModern(url, key, 'list_files', {})
      calls.push({ key, sent: at, done: performance.now(), status: res.status })
    }
  }
  const all: Promise<void>[] = []
  for (const url of urls) for (const key of keys) for (let w = 0; w < workers; w++) all.push(worker(url, key))
  await Promise.all(all)
  return { calls, first, last: Math.max(...calls.map((c) => c.done)) }
}

/**
 * The fewest calls a correct token bucket (capacity `burst`, `perMs` tokens a millisecond, full at
 * the start) must admit, given only what the client saw. Cut the run into windows each shorter than
 * (burst − 1) / perMs, and count in each window k the n_k calls whose whole life (sent to answered)
 * fell inside it: each of those reached the bucket inside that window. Then at least
 * Σ min(n_k, perMs × length_k) − burst calls are admitted.
 *
 * Why: tokens are lost only while the bucket is full. A window too short to refill from below one
 * token to full either admits every call it sees, or drains a full bucket (at least burst − 1 calls,
 * more than its refill), or refuses while keeping its whole refill in the bucket for a later window;
 * what is still unspent at the end is at most `burst`. Adding calls never lowers the admitted count,
 * so counting only the calls known to land in a window keeps the bound sound, and any cut gives a
 * bound, so the best of several cuts is one too. (An adversarial search over arrival times and cuts
 * found nothing below Σ min(…) − 13 with burst 20.) A replica starved by a loaded machine answers
 * late: its calls straddle windows and drop out of the count, so the bound falls with the demand that
 * actually reached the bucket instead of flaking.
 */
function leastAdmitted(calls: readonly Sent[], from: number, perMs: number, burst: number): number {
  const longest = (burst - 1) / perMs
  let best = Number.NEGATIVE_INFINITY
  for (const width of [0.5, 0.7, 0.9].map((f) => f * longest))
    for (const offset of [0, 0.25, 0.5, 0.75].map((f) => f * width)) {
      const perWindow = new Map<number, number>()
      for (const c of calls) {
        const k = Math.floor((c.sent - from + offset) / width)
        if (Math.floor((c.done - from + offset) / width) === k) perWindow.set(k, (perWindow.get(k) ?? 0) + 1)
      }
      // The first window is cut short by the offset: its refill is perMs × (width − offset).
      let least = 0
      for (const [k, n] of perWindow) least += Math.min(n, perMs * (k === 0 ? width - offset : width))
      best = Math.max(best, least - burst)
    }
  return best
}

describe('two server processes sharing Redis enforce one combined limit', () => {
  it('bursts: per-principal and global capacities hold exactly across replicas', async () => {
    const replicas = await twoReplicas(
      `  anonymous: { rate: '100000/min' }
  principal: { rate: '1/hour', burst: 150 }
  global: { rate: '1/hour', burst: 400 }`,
      3,
    )
    try {
      const { calls } = await hammer(replicas.urls, replicas.keys, 4, (sent) => sent < 750)
      const admitted = replicas.keys.map((k) => calls.filter((c) => c.key === k && c.status === 200).length)
      const refused = replicas.keys.map((k) => calls.filter((c) => c.key === k && c.status === 429).length)
      // 3 principals × 150 would be 450; the global bucket holds 400. Exactly, not approximately.
      expect(admitted.reduce((a, b) => a + b, 0)).toBe(400)
      for (const n of admitted) expect(n).toBeLessThanOrEqual(150)
      expect(admitted.reduce((a, b) => a + b, 0) + refused.reduce((a, b) => a + b, 0)).toBe(750)
    } finally {
      await replicas.stop()
    }
  })

  it('refill: the combined admitted count is at most burst + rate × time (+2 %), and at least what the demand that reached the bucket must get', async ({ annotate }) => {
    const replicas = await twoReplicas(
      `  anonymous: { rate: '100000/min' }
  principal: { rate: '100/s', burst: 20 }`,
      2,
    )
    try {
      let deadline = 0
      // Four calls in flight per principal per replica: demand well above the rate, while answers stay
      // quick enough that most calls fall inside one window of the lower bound (more in flight only
      // queue longer in the replicas, on two cores).
      const run = await hammer(replicas.urls, replicas.keys, 4, () => {
        if (deadline === 0) deadline = performance.now() + 2500
        return performance.now() < deadline
      })
      for (const key of replicas.keys) {
        const calls = run.calls.filter((c) => c.key === key)
        const admitted = calls.filter((c) => c.status === 200).length
        expect(calls.filter((c) => c.status !== 200 && c.status !== 429)).toStrictEqual([])
        // Every token is granted between the first call sent and the last one answered: the security property.
        const most = 20 + (100 * (run.last - run.first)) / 1000
        expect(admitted).toBeLessThanOrEqual(Math.ceil(most * 1.02))
        // A call charged twice admits about half the most, as does a replica refusing on its own; the
        // bursts test above catches a double charge exactly, whatever the load. This bound follows the
        // demand the machine let through (see leastAdmitted), so a starved run weakens it, never fails it.
        const least = leastAdmitted(calls, run.first, 100 / 1000, 20)
        // The numbers, so a run on a loaded machine shows how much of the bound its demand kept.
        await annotate(`${key.slice(4, 8)}: admitted ${admitted} of ${calls.length}, bounds [${least.toFixed(1)}, ${Math.ceil(most * 1.02)}]`)
        expect(admitted).toBeGreaterThanOrEqual(least)
      }
    } finally {
      await replicas.stop()
    }
  })
})

describe('Redis outage', () => {
  let redis: Awaited<ReturnType<typeof privateRedis>>
  let closed: TestServer
  let open: TestServer
  beforeAll(async () => {
    redis = await privateRedis()
    process.env.BASTION_TEST_OUTAGE_REDIS = redis.url
    const limits = (failOpen: boolean) => ({
      backend: 'redis' as const,
      redis: { url: { env: 'BASTION_TEST_OUTAGE_REDIS' }, keyPrefix: prefix(), timeoutMs: 1000 },
      dangerouslyFailOpen: failOpen,
    })
    closed = await startServer({ limits: limits(false) })
    open = await startServer({ limits: limits(true) })
  })
  afterAll(async () => {
    await closed.close()
    await open.close()
    await redis.stop()
  })

  it('fails closed with 503 and a clear audit reason, and recovers without a restart', async () => {
    expect((await callModern(closed.url, closed.keys.admin, 'list_files', {})).res.status).toBe(200)
    await redis.stop()
    const since = closed.mark()
    const { res, body } = await callModern(closed.url, closed.keys.admin, 'list_files', {})
    expect(res.status).toBe(503)
    expect(body.error).toMatchObject({ message: 'service unavailable', data: { code: 'ERR_LIMITS_UNAVAILABLE' } })
    expect(JSON.stringify(body)).not.toMatch(/redis|127\.0\.0\.1|ECONNREFUSED/i)
    const line = since().at(-1)
    expect(line).toMatchObject({ decision: 'error', reason: 'ERR_LIMITS_UNAVAILABLE', event: 'error' })
    expect(String(line?.detail)).toMatch(/rate-limit backend unavailable/)

    // Fail-open replica: admitted, and its audit line says why it was not limited.
    const openSince = open.mark()
    expect((await callModern(open.url, open.keys.admin, 'list_files', {})).res.status).toBe(200)
    expect(openSince().at(-1)).toMatchObject({ reason: 'OK', limits: 'fail-open' })

    await redis.start()
    await expect.poll(async () => (await callModern(closed.url, closed.keys.admin, 'list_files', {})).res.status, { timeout: 10_000, interval: 200 }).toBe(200)
  })
})
