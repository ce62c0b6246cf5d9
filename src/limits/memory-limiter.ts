import { type BucketLevel, type BucketState, type Charge, levelOf, type TakeDecision, take } from './token-bucket.js'

// Beside the interface that returns it, for callers of `levels` (the console).
export type { BucketLevel } from './token-bucket.js'

/** A rate-limit backend: checks and consumes a set of buckets atomically. */
export interface RateLimiter {
  readonly backend: 'memory' | 'redis'
  /**
   * Consume every charge, or none if any bucket is short. `peek` decides without consuming.
   * @throws SecurityError ERR_LIMITS_UNAVAILABLE when the backend cannot answer.
   */
  take(charges: readonly Charge[], peek?: boolean): Promise<TakeDecision>
  /**
   * Each charge's bucket level now, in the order given (for display; `cost` is ignored). Never
   * consumes and never creates state: a bucket never charged reads as full.
   * @throws SecurityError ERR_LIMITS_UNAVAILABLE when the backend cannot answer.
   */
  levels(charges: readonly Charge[]): Promise<readonly BucketLevel[]>
  close(): Promise<void>
}

interface Entry extends BucketState {
  /** When the bucket is full again and the entry carries no information. */
  forgetAt: number
}

/**
 * In-process buckets: exact and atomic within one process (JavaScript runs one `take` at a time).
 * Bounded: entries are forgotten once their bucket is full again (a full bucket and a missing one
 * are the same), and beyond `maxKeys` the least recently charged entry is dropped.
 * Does not check: other replicas (use the Redis backend for a limit shared by several processes).
 * Dropping a partly drained entry at the key bound resets that one bucket: the bound trades a
 * little leniency under a flood of distinct keys for memory that cannot grow without limit.
 */
export class MemoryRateLimiter implements RateLimiter {
  readonly backend = 'memory'
  readonly #entries = new Map<string, Entry>()
  readonly #maxKeys: number
  readonly #now: () => number
  #nextSweep = 0

  constructor(options: { maxKeys?: number; now?: () => number } = {}) {
    this.#maxKeys = options.maxKeys ?? 100_000
    this.#now = options.now ?? Date.now
  }

  get size(): number {
    return this.#entries.size
  }

  async take(charges: readonly Charge[], peek = false): Promise<TakeDecision> {
    return this.takeSync(charges, peek)
  }

  takeSync(charges: readonly Charge[], peek = false): TakeDecision {
    const now = this.#now()
    const { decision, writes } = take(charges, (key) => this.#entries.get(key), now, peek)
    for (const w of writes) {
      // Re-insert so that Map order is least recently charged first.
      this.#entries.delete(w.key)
      this.#entries.set(w.key, { tokens: w.state.tokens, at: w.state.at, forgetAt: now + w.ttlMs })
    }
    if (writes.length > 0 && (this.#entries.size > this.#maxKeys || now >= this.#nextSweep)) this.#sweep(now)
    return decision
  }

  /** Reads the entries only: no write, no sweep, and no change to which entry is dropped first. */
  async levels(charges: readonly Charge[]): Promise<readonly BucketLevel[]> {
    const now = this.#now()
    return charges.map((c) => levelOf(c, this.#entries.get(c.key), now))
  }

  #sweep(now: number): void {
    this.#nextSweep = now + 10_000
    for (const [key, entry] of this.#entries) if (entry.forgetAt <= now) this.#entries.delete(key)
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxKeys) break
      this.#entries.delete(key)
    }
  }

  async close(): Promise<void> {
    this.#entries.clear()
  }
}
