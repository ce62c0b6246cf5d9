import { Redis } from 'ioredis'
import { afterAll, beforeAll, expect } from 'vitest'

/** The machine's shared Redis (CI has it too). A test file that needs it fails if it is missing; nothing is skipped. */
export const SHARED_REDIS = 'redis://127.0.0.1:6379'

/**
 * A direct connection to the shared Redis for the file that calls this at its top level, to look at
 * and clean up its own keys: connected, and checked with PING, before the file's tests; closed after.
 */
export function sharedRedis(): () => Redis {
  let raw: Redis | undefined
  beforeAll(async () => {
    raw = new Redis(SHARED_REDIS, { lazyConnect: true, maxRetriesPerRequest: 0 })
    await raw.connect()
    expect(await raw.ping()).toBe('PONG')
  })
  afterAll(() => {
    raw?.disconnect()
  })
  return () => {
    if (raw === undefined) throw new Error('the shared Redis is not connected yet (sharedRedis() is read in beforeAll)')
    return raw
  }
}
