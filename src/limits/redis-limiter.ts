import type { Redis } from 'ioredis'
import { connectRedis, redactRedisUrl, redisReady } from '../config/redis.js'
import { SecurityError } from '../errors.js'
import type { RateLimiter } from './memory-limiter.js'
import { type BucketLevel, type BucketState, type Charge, levelOf, type TakeDecision } from './token-bucket.js'

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

/** What the backend said, with the URL redacted: the one failure `take` and `levels` both throw. */
function unavailable(error: unknown): SecurityError {
  return new SecurityError('ERR_LIMITS_UNAVAILABLE', `rate-limit backend unavailable: ${error instanceof Error ? redactRedisUrl(error.message) : 'unknown error'}`, {
    cause: error,
  })
}

/** A stored field as the take script's `tonumber` reads it: absent or not a number is nil. */
function field(value: unknown): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined
  const n = Number(value)
  return Number.isFinite(n) ? n : undefined
}

/** One HMGET reply of `t`, `at`: a bucket's state, or undefined (full) as the take script decides. */
function stateOf(reply: unknown): BucketState | undefined {
  if (!Array.isArray(reply)) throw new SecurityError('ERR_INTERNAL', 'rate-limit backend: HMGET reply is not an array')
  const tokens = field(reply[0])
  const at = field(reply[1])
  return tokens === undefined || at === undefined ? undefined : { tokens, at }
}

/** A TIME reply (seconds, microseconds) as ms, the way the take script reads the clock. */
function msOf(reply: unknown): number {
  const seconds = Array.isArray(reply) ? field(reply[0]) : undefined
  const micros = Array.isArray(reply) ? field(reply[1]) : undefined
  if (seconds === undefined || micros === undefined) throw new SecurityError('ERR_INTERNAL', 'rate-limit backend: TIME reply is not a time')
  return seconds * 1000 + Math.floor(micros / 1000)
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
      throw unavailable(error)
    }
    const [index, wait] = reply
    if (index === 0) return { admitted: true }
    const refused = charges[index - 1]
    if (refused === undefined) throw new SecurityError('ERR_INTERNAL', `rate-limit script returned bucket ${index} of ${charges.length}`)
    return { admitted: false, bucket: refused.bucket, retryAfterMs: wait }
  }

  /**
   * Levels by Redis's clock, the one `take` uses. Read-only by construction: one MULTI of TIME and
   * an HMGET per key, no script and no write (so no key is created, and no TTL is touched); the
   * transaction makes every level one snapshot at one instant. Same per-command deadline as `take`.
   */
  async levels(charges: readonly Charge[]): Promise<readonly BucketLevel[]> {
    if (charges.length === 0) return []
    const tx = this.#redis.multi().time()
    for (const c of charges) tx.hmget(this.#prefix + c.key, 't', 'at')
    let replies: [Error | null, unknown][] | null
    try {
      replies = await tx.exec()
    } catch (error) {
      throw unavailable(error)
    }
    if (replies === null || replies.length !== charges.length + 1) throw new SecurityError('ERR_INTERNAL', 'rate-limit backend: transaction aborted or short')
    for (const [error] of replies) if (error !== null) throw unavailable(error)
    const now = msOf(replies[0]?.[1])
    return charges.map((c, i) => levelOf(c, stateOf(replies[i + 1]?.[1]), now))
  }

  /** Wait until connected (start-up check and tests). @throws when not connected within `timeoutMs` */
  async ready(timeoutMs = 5000): Promise<void> {
    if (!(await redisReady(this.#redis, timeoutMs))) throw new Error(`redis not ready after ${timeoutMs} ms`)
  }

  async close(): Promise<void> {
    this.#redis.disconnect()
  }
}
