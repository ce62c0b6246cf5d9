/**
 * Token-bucket arithmetic, pure: no I/O, no clock. The memory backend runs it in-process; the
 * Redis backend runs the same steps in Lua (`redis-limiter.ts`) and a test holds the two equal.
 */

/** One bucket's shape: `capacity` tokens at most (the burst), refilled at `perMs` tokens per ms. */
export interface BucketShape {
  readonly capacity: number
  readonly perMs: number
}

/** A bucket that applies to one request: its name (for audit), its storage key, shape and cost. */
export interface Charge extends BucketShape {
  /** What refused, for the audit line and the metric: `global`, `principal`, `tier:db`, … */
  readonly bucket: string
  /** Storage key: the bucket name plus whose bucket it is. */
  readonly key: string
  readonly cost: number
}

export interface BucketState {
  tokens: number
  /** Time of the last update, ms on the backend's clock. */
  at: number
}

/** A bucket's level for display (the console's Limits page): read, never charged. */
export interface BucketLevel {
  /** The charge's bucket name, as in audit `bucket` fields: `global`, `principal`, `role:admin`, … */
  readonly bucket: string
  /** Tokens now, refilled to the backend's clock: between 0 and `capacity`. */
  readonly tokens: number
  readonly capacity: number
  readonly perSecond: number
  /** Milliseconds until the bucket is full again (0 when it is full). */
  readonly fullInMs: number
}

export type TakeDecision = { readonly admitted: true } | { readonly admitted: false; readonly bucket: string; readonly retryAfterMs: number }

/** Refill is fractional; without a tolerance, float rounding could refuse a request at its advertised time. */
const EPSILON = 1e-9

/** Tokens in a bucket at `now`: a missing bucket is full; a clock that went back refills nothing. */
export function tokensAt(state: BucketState | undefined, shape: BucketShape, now: number): number {
  if (state === undefined) return shape.capacity
  const elapsed = now - state.at
  return elapsed > 0 ? Math.min(shape.capacity, state.tokens + elapsed * shape.perMs) : state.tokens
}

/** Whole milliseconds until `tokens` grows to `cost`. */
export function waitMs(tokens: number, cost: number, perMs: number): number {
  return Math.max(1, Math.ceil((cost - tokens) / perMs - 1e-6))
}

/** Milliseconds until a bucket holding `tokens` is full again: after that its state can be forgotten. */
export function msUntilFull(tokens: number, shape: BucketShape): number {
  return Math.ceil((shape.capacity - tokens) / shape.perMs)
}

/**
 * A bucket's level at `now`, from its stored state (undefined: never charged, or forgotten once
 * full, so full). Clamped to [0, capacity]: a capacity lowered by a config reload, or a level a
 * float rounding left a hair below zero, never shows outside the bucket. Pure: no I/O, no clock.
 */
export function levelOf(charge: Charge, state: BucketState | undefined, now: number): BucketLevel {
  const tokens = Math.max(0, Math.min(charge.capacity, tokensAt(state, charge, now)))
  return {
    bucket: charge.bucket,
    tokens,
    capacity: charge.capacity,
    perSecond: charge.perMs * 1000,
    // The Retry-After arithmetic (its rounding tolerance included): when `capacity` tokens are there.
    fullInMs: tokens >= charge.capacity ? 0 : waitMs(tokens, charge.capacity, charge.perMs),
  }
}

/**
 * Check every charge; consume all of them only if every one passes. A refusal consumes nothing
 * and names the bucket with the longest wait, and that wait is exactly when all refused buckets
 * will admit the same request (if nothing else drains them).
 * `peek` decides without consuming.
 */
export function take(
  charges: readonly Charge[],
  read: (key: string) => BucketState | undefined,
  now: number,
  peek = false,
): { decision: TakeDecision; writes: { key: string; state: BucketState; ttlMs: number }[] } {
  const levels: number[] = []
  let refused: { bucket: string; retryAfterMs: number } | undefined
  for (const charge of charges) {
    const tokens = tokensAt(read(charge.key), charge, now)
    levels.push(tokens)
    if (tokens + EPSILON < charge.cost) {
      const wait = waitMs(tokens, charge.cost, charge.perMs)
      if (refused === undefined || wait > refused.retryAfterMs) refused = { bucket: charge.bucket, retryAfterMs: wait }
    }
  }
  if (refused !== undefined) return { decision: { admitted: false, ...refused }, writes: [] }
  if (peek) return { decision: { admitted: true }, writes: [] }
  const writes = charges.map((charge, i) => {
    const left = (levels[i] ?? charge.capacity) - charge.cost
    return { key: charge.key, state: { tokens: left, at: now }, ttlMs: msUntilFull(left, charge) + 1000 }
  })
  return { decision: { admitted: true }, writes }
}

const UNITS: Readonly<Record<string, number>> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
}
const RATE = /^\s*(\d{1,9})\s*\/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$/

/** `"30/min"` → tokens per ms, or undefined when the text is not a rate. */
export function parseRate(text: string): { count: number; perMs: number } | undefined {
  const match = RATE.exec(text)
  const count = Number(match?.[1])
  const unit = UNITS[match?.[2] ?? '']
  if (match === null || unit === undefined || !(count > 0)) return undefined
  return { count, perMs: count / unit }
}
