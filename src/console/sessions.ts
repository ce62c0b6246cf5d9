import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/** Who a console session is for: an API key's principal, and whether it may act or only look. */
export interface ConsoleUser {
  /** `key:<id>`. */
  readonly principal: string
  readonly keyId: string
  readonly name: string
  readonly roles: readonly string[]
  readonly admin: boolean
}

export interface ConsoleSession {
  readonly user: ConsoleUser
  /** Sent with every state-changing request (form field or `x-csrf-token` header). */
  readonly csrf: string
  readonly createdAt: number
  lastSeenAt: number
}

export interface SessionLimits {
  readonly idleMs: number
  readonly absoluteMs: number
  readonly max: number
}

const digest = (token: string): string => createHash('sha256').update(token).digest('hex')

/** Constant-time equality of two strings (their SHA-256 digests, so lengths never leak). */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}

/**
 * Server-side console sessions, in this process: the cookie carries 256 random bits, the store
 * only their SHA-256 (a memory dump shows no usable cookie). A session ends when unused for
 * `idleMs`, `absoluteMs` after sign-in, on sign-out, or when the key behind it is revoked (the
 * routes look the key up on every request). Sign-in always makes a new session: a cookie planted
 * before sign-in (session fixation) never becomes a signed-in one. Bounded: past `max` the
 * session used least recently ends.
 * Does not check: other replicas (a session lives in the process that signed it in; sign in again
 * on another), who holds the cookie (HttpOnly, SameSite=Strict and the CSRF token guard that).
 */
export class ConsoleSessions {
  readonly #byDigest = new Map<string, ConsoleSession>()

  constructor(
    private readonly limits: SessionLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** A new session: the cookie value to set (returned once, never stored) and the session. */
  create(user: ConsoleUser): { token: string; session: ConsoleSession } {
    this.#sweep()
    while (this.#byDigest.size >= this.limits.max) {
      const oldest = this.#byDigest.keys().next().value
      if (oldest === undefined) break
      this.#byDigest.delete(oldest)
    }
    const token = randomBytes(32).toString('base64url')
    const at = this.now()
    const session: ConsoleSession = { user, csrf: randomBytes(32).toString('base64url'), createdAt: at, lastSeenAt: at }
    this.#byDigest.set(digest(token), session)
    return { token, session }
  }

  /** The live session a cookie names, touched (its idle time restarts); undefined when none or ended. */
  get(token: string | undefined): ConsoleSession | undefined {
    if (token === undefined || !/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined
    const key = digest(token)
    const session = this.#byDigest.get(key)
    if (session === undefined) return undefined
    const at = this.now()
    if (at - session.lastSeenAt >= this.limits.idleMs || at - session.createdAt >= this.limits.absoluteMs) {
      this.#byDigest.delete(key)
      return undefined
    }
    session.lastSeenAt = at
    // Most recently used last: the bound drops from the front.
    this.#byDigest.delete(key)
    this.#byDigest.set(key, session)
    return session
  }

  /** End the session a cookie names (sign-out). */
  end(token: string | undefined): void {
    if (token !== undefined) this.#byDigest.delete(digest(token))
  }

  /** End every session of a key (revoked). */
  endKey(keyId: string): number {
    let ended = 0
    for (const [k, s] of this.#byDigest) {
      if (s.user.keyId !== keyId) continue
      this.#byDigest.delete(k)
      ended += 1
    }
    return ended
  }

  get size(): number {
    return this.#byDigest.size
  }

  #sweep(): void {
    const at = this.now()
    for (const [k, s] of this.#byDigest) if (at - s.lastSeenAt >= this.limits.idleMs || at - s.createdAt >= this.limits.absoluteMs) this.#byDigest.delete(k)
  }
}
