import type { Redis } from 'ioredis'
import { connectRedis, redactRedisUrl, redisReady } from '../config/redis.js'
import { SecurityError } from '../errors.js'
import type { RateLimiter } from './memory-limiter.js'
import type { Charge, TakeDecision } from './token-bucket.js'

/**
 * The same arithmetic as `take()` in token-bucket.ts, in one script so that check-and-consume of
 * every bucket is one atomic step on the server, timed by Redis's own clock (replicas' clocks
 * never matter). KEYS: bucket keys. ARGV: peek flag, then capacity, tokens per ms and cost per key.
 * Returns {refused index (1-based, 0 = admitted), wait ms}. Keys expire once their bucket is full.
 */
const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local levels = {}
local refused, worst = 0, 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[i * 3 - 1])
  local rate = tonumber(ARGV[i * 3])
  local cost = tonumber(ARGV[i * 3 + 1])
  local s = redis.call('HMGET', KEYS[i], 't', 'at')
  local tokens, at = tonumber(s[1]), tonumber(s[2])
  if tokens == nil or at == nil then
    tokens = cap
  elseif now > at then
    tokens = math.min(cap, tokens + (now - at) * rate)
  end
  levels[i] = tokens
  if tokens + 1e-9 < cost then
    local wait = math.max(1, math.ceil((cost - tokens) / rate - 1e-6))
    if wait > worst then refused, worst = i, wait end
  end
end
if refused > 0 or ARGV[1] == '1' then return {refused, worst} end
for i = 1, #KEYS do
  local cap = tonumber(ARGV[i * 3 - 1])
  local rate = tonumber(ARGV[i * 3])
  local left = levels[i] - tonumber(ARGV[i * 3 + 1])
  redis.call('HSET', KEYS[i], 't', string.format('%.17g', left), 'at', now)
  -- Keys live ten years at most: a longer refill is a configuration mistake, not state worth keeping.
  local ttl = math.min(math.ceil((cap - left) / rate) + 1000, 315360000000)
  redis.call('PEXPIRE', KEYS[i], string.format('%d', ttl))
end
return {0, 0}
`

export interface RedisLimiterOptions {
  /** `redis://` or `rediss://` URL (may carry a password: it comes from a secret reference). */
  readonly url: string
  readonly keyPrefix: string
  /** Per-command deadline; a slower answer is an outage. */
  readonly timeoutMs: number
  /** Called on connection errors (the operator log); never with a secret. */
  readonly onError?: (error: Error) => void
}

type WithScript = Redis & { bastionTake(numKeys: number, ...args: (string | number)[]): Promise<[number, number]> }

/**
 * Buckets in Redis, shared by every replica that points at the same server: one combined limit.
 * Fails closed: when Redis cannot answer within the deadline, `take` throws ERR_LIMITS_UNAVAILABLE
 * (commands are not queued while disconnected) and the client reconnects in the background, so
 * service resumes without a restart.
 * Does not check: Redis Cluster slot placement (a call's keys are one script call; run a single
 * primary, or a cluster where the prefix is a hash tag).
 */
export class RedisRateLimiter implements RateLimiter {
  readonly backend = 'redis'
  readonly #redis: WithScript
  readonly #prefix: string

  constructor(options: RedisLimiterOptions) {
    this.#prefix = options.keyPrefix
    const redis = connectRedis(options.url, { timeoutMs: options.timeoutMs, label: 'rate limits', onError: options.onError })
    redis.defineCommand('bastionTake', { lua: SCRIPT })
    this.#redis = redis as WithScript
  }

  async take(charges: readonly Charge[], peek = false): Promise<TakeDecision> {
    if (charges.length === 0) return { admitted: true }
    const args: (string | number)[] = [peek ? '1' : '0']
    for (const c of charges) args.push(c.capacity, c.perMs.toPrecision(17), c.cost)
    let reply: [number, number]
    try {
      reply = await this.#redis.bastionTake(charges.length, ...charges.map((c) => this.#prefix + c.key), ...args)
    } catch (error) {
      throw new SecurityError('ERR_LIMITS_UNAVAILABLE', `rate-limit backend unavailable: ${error instanceof Error ? redactRedisUrl(error.message) : 'unknown error'}`, {
        cause: error,
      })
    }
    const [index, wait] = reply
    if (index === 0) return { admitted: true }
    const refused = charges[index - 1]
    if (refused === undefined) throw new SecurityError('ERR_INTERNAL', `rate-limit script returned bucket ${index} of ${charges.length}`)
    return { admitted: false, bucket: refused.bucket, retryAfterMs: wait }
  }

  /** Wait until connected (start-up check and tests). @throws when not connected within `timeoutMs` */
  async ready(timeoutMs = 5000): Promise<void> {
    if (!(await redisReady(this.#redis, timeoutMs))) throw new Error(`redis not ready after ${timeoutMs} ms`)
  }

  async close(): Promise<void> {
    this.#redis.disconnect()
  }
}
