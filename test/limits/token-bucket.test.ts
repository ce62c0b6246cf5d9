import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MemoryRateLimiter } from '../../src/limits/memory-limiter.js'
import { type Charge, parseRate } from '../../src/limits/token-bucket.js'

// A fake clock: the only thing tests fake.
function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
  }
}

function bucket(name: string, capacity: number, perSecond: number, cost = 1): Charge {
  return { bucket: name, key: name, capacity, perMs: perSecond / 1000, cost }
}

describe('parseRate', () => {
  it.each([
    ['30/min', 30, 30 / 60_000],
    ['1000 / m', 1000, 1000 / 60_000],
    ['5/s', 5, 5 / 1000],
    ['2/hour', 2, 2 / 3_600_000],
    ['100/day', 100, 100 / 86_400_000],
  ])('%s', (text, count, perMs) => {
    expect(parseRate(text)).toStrictEqual({ count, perMs })
  })

  it.each(['', '30', '0/min', '-1/min', '1.5/min', '30/fortnight', '30/min extra', '1e3/s'])('refuses %j', (text) => {
    expect(parseRate(text)).toBeUndefined()
  })
})

describe('token bucket arithmetic (fake clock)', () => {
  it('admits a burst of exactly the capacity, then refuses with the exact wait', () => {
    const c = clock()
    const limiter = new MemoryRateLimiter({ now: c.now })
    const b = bucket('b', 5, 1) // 5 burst, 1 per second
    for (let i = 0; i < 5; i++) expect(limiter.takeSync([b])).toStrictEqual({ admitted: true })
    expect(limiter.takeSync([b])).toStrictEqual({ admitted: false, bucket: 'b', retryAfterMs: 1000 })
    c.advance(999)
    expect(limiter.takeSync([b])).toStrictEqual({ admitted: false, bucket: 'b', retryAfterMs: 1 })
    c.advance(1)
    expect(limiter.takeSync([b])).toStrictEqual({ admitted: true })
  })

  it('refills at the rate and never above the capacity', () => {
    const c = clock()
    const limiter = new MemoryRateLimiter({ now: c.now })
    const b = bucket('b', 3, 2) // 2 per second
    for (let i = 0; i < 3; i++) limiter.takeSync([b])
    c.advance(60_000) // far more than needed to fill
    for (let i = 0; i < 3; i++) expect(limiter.takeSync([b]).admitted).toBe(true)
    expect(limiter.takeSync([b]).admitted).toBe(false)
    c.advance(500) // one token
    expect(limiter.takeSync([b]).admitted).toBe(true)
    expect(limiter.takeSync([b]).admitted).toBe(false)
  })

  it('charges the cost, and the wait is for the whole cost', () => {
    const c = clock()
    const limiter = new MemoryRateLimiter({ now: c.now })
    const b = bucket('b', 10, 1, 4)
    expect(limiter.takeSync([b]).admitted).toBe(true) // 6 left
    expect(limiter.takeSync([b]).admitted).toBe(true) // 2 left
    expect(limiter.takeSync([b])).toStrictEqual({ admitted: false, bucket: 'b', retryAfterMs: 2000 })
    // A cheaper request still fits in what is left.
    expect(limiter.takeSync([{ ...b, cost: 2 }]).admitted).toBe(true)
  })

  it('is atomic across buckets: a refusal consumes nothing anywhere, and names the longest wait', () => {
    const c = clock()
    const limiter = new MemoryRateLimiter({ now: c.now })
    const wide = bucket('wide', 100, 10)
    const narrow = bucket('narrow', 2, 1)
    const slower = bucket('slower', 2, 0.5)
    expect(limiter.takeSync([wide, narrow, slower]).admitted).toBe(true)
    expect(limiter.takeSync([wide, narrow, slower]).admitted).toBe(true)
    expect(limiter.takeSync([wide, narrow, slower])).toStrictEqual({ admitted: false, bucket: 'slower', retryAfterMs: 2000 })
    // wide was not charged by the refusals: 98 left exactly.
    for (let i = 0; i < 98; i++) expect(limiter.takeSync([wide]).admitted).toBe(true)
    expect(limiter.takeSync([wide]).admitted).toBe(false)
  })

  it('peek decides without consuming', () => {
    const c = clock()
    const limiter = new MemoryRateLimiter({ now: c.now })
    const b = bucket('b', 1, 1)
    for (let i = 0; i < 5; i++) expect(limiter.takeSync([b], true).admitted).toBe(true)
    expect(limiter.takeSync([b]).admitted).toBe(true)
    expect(limiter.takeSync([b], true).admitted).toBe(false)
  })

  it('a clock that goes backwards refills nothing', () => {
    const c = clock()
    const limiter = new MemoryRateLimiter({ now: c.now })
    const b = bucket('b', 1, 1)
    limiter.takeSync([b])
    c.advance(-10_000)
    expect(limiter.takeSync([b]).admitted).toBe(false)
  })

  it('forgets full buckets and stays within its key bound', () => {
    const c = clock()
    const limiter = new MemoryRateLimiter({ now: c.now, maxKeys: 1000 })
    for (let i = 0; i < 10_000; i++) limiter.takeSync([{ ...bucket(`k${i}`, 10, 1) }])
    expect(limiter.size).toBeLessThanOrEqual(1000)
    c.advance(20_000) // every bucket is full again
    limiter.takeSync([bucket('fresh', 10, 1)])
    expect(limiter.size).toBe(1)
  })
})

describe('token bucket properties', () => {
  const request = fc.record({ dt: fc.integer({ min: 0, max: 2000 }), cost: fc.integer({ min: 1, max: 5 }) })

  it('never admits more than capacity + rate × t in any window of length t', () => {
    fc.assert(
      fc.property(fc.integer({ min: 5, max: 50 }), fc.integer({ min: 1, max: 20 }), fc.array(request, { minLength: 1, maxLength: 300 }), (capacity, perSecond, requests) => {
        const c = clock()
        const limiter = new MemoryRateLimiter({ now: c.now })
        const admitted: { t: number; cost: number }[] = []
        for (const r of requests) {
          c.advance(r.dt)
          if (limiter.takeSync([bucket('b', capacity, perSecond, r.cost)]).admitted) admitted.push({ t: c.now(), cost: r.cost })
        }
        for (let i = 0; i < admitted.length; i++) {
          let sum = 0
          for (let j = i; j < admitted.length; j++) {
            const a = admitted[j]
            const first = admitted[i]
            if (a === undefined || first === undefined) continue
            sum += a.cost
            expect(sum).toBeLessThanOrEqual(capacity + (perSecond / 1000) * (a.t - first.t) + 1e-9)
          }
        }
      }),
      { numRuns: 200 },
    )
  })

  it('a refused request changes no bucket: the next decision is the same as without it', () => {
    fc.assert(
      fc.property(fc.array(request, { minLength: 1, maxLength: 100 }), fc.array(fc.boolean(), { minLength: 100, maxLength: 100 }), (requests, probes) => {
        const c1 = clock()
        const c2 = clock()
        const withProbes = new MemoryRateLimiter({ now: c1.now })
        const without = new MemoryRateLimiter({ now: c2.now })
        const shapes = [bucket('a', 10, 2), bucket('b', 6, 1)]
        requests.forEach((r, i) => {
          c1.advance(r.dt)
          c2.advance(r.dt)
          const charges = shapes.map((s) => ({ ...s, cost: r.cost }))
          if (probes[i] === true) {
            // A request too expensive for bucket b: always refused, must consume nothing.
            const refused = withProbes.takeSync([...shapes.slice(0, 1).map((s) => ({ ...s, cost: 1 })), { ...bucket('b', 6, 1), cost: 7 }])
            expect(refused.admitted).toBe(false)
          }
          expect(withProbes.takeSync(charges)).toStrictEqual(without.takeSync(charges))
        })
      }),
      { numRuns: 200 },
    )
  })

  it('the advertised wait is exact: refused one ms earlier, admitted at the wait', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 5 }), (capacity, perSecond, cost) => {
        fc.pre(cost <= capacity)
        const c = clock()
        const limiter = new MemoryRateLimiter({ now: c.now })
        const b = bucket('b', capacity, perSecond, cost)
        while (limiter.takeSync([b]).admitted) {}
        const refused = limiter.takeSync([b])
        if (refused.admitted) throw new Error('expected a refusal')
        c.advance(refused.retryAfterMs - 1)
        if (refused.retryAfterMs > 1) expect(limiter.takeSync([b], true).admitted).toBe(false)
        c.advance(1)
        expect(limiter.takeSync([b]).admitted).toBe(true)
      }),
      { numRuns: 300 },
    )
  })
})
