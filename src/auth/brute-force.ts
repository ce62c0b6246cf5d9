/**
 * Failed authentications per client address and per credential id, in a sliding window: after
 * `slowAfter` failures each further failure is answered late (growing delay, capped); after
 * `blockAfter` the address or id is blocked for `blockSeconds`, before any credential is checked.
 * Pure bookkeeping with an injectable clock; the HTTP stage does the waiting and the auditing.
 * Does not check: other replicas (each process counts its own failures); successful requests.
 * Blocking a credential id also refuses its rightful holder for the block's duration: that is
 * the price of stopping a guessing attack on one key, and the block is audited as an alert.
 */
export interface BruteForceOptions {
  readonly windowSeconds: number
  readonly slowAfter: number
  readonly delayMs: number
  readonly maxDelayMs: number
  readonly blockAfter: number
  readonly blockSeconds: number
}

interface Counter {
  failures: number[]
  blockedUntil: number
}

export interface FailureVerdict {
  readonly failures: number
  readonly delayMs: number
  /** Set when this failure started a block. */
  readonly blockedUntil?: number
}

export class BruteForce {
  readonly #options: BruteForceOptions
  readonly #now: () => number
  readonly #counters = new Map<string, Counter>()

  constructor(options: BruteForceOptions, now: () => number = Date.now) {
    this.#options = options
    this.#now = now
  }

  /** If `subject` is blocked now: until when (ms since the epoch). */
  blockedUntil(subject: string): number | undefined {
    const c = this.#counters.get(subject)
    return c !== undefined && c.blockedUntil > this.#now() ? c.blockedUntil : undefined
  }

  /** Count a failure for a subject (`addr:…` or `key:…`) and say how to answer it. */
  fail(subject: string): FailureVerdict {
    const now = this.#now()
    const o = this.#options
    let c = this.#counters.get(subject)
    if (c === undefined) {
      if (this.#counters.size >= 100_000) this.#sweep(now)
      c = { failures: [], blockedUntil: 0 }
      this.#counters.set(subject, c)
    }
    const since = now - o.windowSeconds * 1000
    c.failures = c.failures.filter((t) => t > since)
    c.failures.push(now)
    const n = c.failures.length
    const delayMs = n > o.slowAfter ? Math.min(o.maxDelayMs, o.delayMs * (n - o.slowAfter)) : 0
    if (n >= o.blockAfter && c.blockedUntil <= now) {
      c.blockedUntil = now + o.blockSeconds * 1000
      c.failures = []
      return { failures: n, delayMs, blockedUntil: c.blockedUntil }
    }
    return { failures: n, delayMs }
  }

  #sweep(now: number): void {
    const since = now - this.#options.windowSeconds * 1000
    for (const [k, c] of this.#counters) if (c.blockedUntil <= now && c.failures.every((t) => t <= since)) this.#counters.delete(k)
    // Still full: forget the oldest, so memory stays bounded under a flood of addresses.
    for (const k of this.#counters.keys()) {
      if (this.#counters.size < 100_000) break
      this.#counters.delete(k)
    }
  }
}
