import { createHash } from 'node:crypto'
import type { Principal } from '../principal.js'
import type { SelfToken } from './jwt.js'

export interface CachedToken {
  readonly principal: Principal
  /** ms since the epoch: the token's own expiry, never later. */
  readonly expiresAt: number
  readonly jti: string | undefined
  /** bastion's own token: its key and grant are checked again on every use. */
  readonly self?: SelfToken
}

/** The cache key: a hash, so the cache never holds a usable token. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

/**
 * Verified tokens, so that repeat calls skip the signature check. A bounded LRU keyed by a hash of
 * the token; an entry is dropped at the token's `exp` and when its `jti` is revoked.
 * Does not check: anything itself; it remembers what the verifier decided.
 */
export class TokenCache {
  readonly #entries = new Map<string, CachedToken>()
  readonly #maxEntries: number
  readonly #now: () => number

  constructor(maxEntries: number, now: () => number = Date.now) {
    this.#maxEntries = maxEntries
    this.#now = now
  }

  get size(): number {
    return this.#entries.size
  }

  get(key: string): CachedToken | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    this.#entries.delete(key)
    if (entry.expiresAt <= this.#now()) return undefined
    this.#entries.set(key, entry)
    return entry
  }

  set(key: string, entry: CachedToken): void {
    if (this.#maxEntries === 0 || entry.expiresAt <= this.#now()) return
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next()
      if (oldest.done === true) break
      this.#entries.delete(oldest.value)
    }
  }

  /** Drop every entry of a revoked token id. */
  revoke(jti: string): void {
    for (const [key, entry] of this.#entries) if (entry.jti === jti) this.#entries.delete(key)
  }
}
