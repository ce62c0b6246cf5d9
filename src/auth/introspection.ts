import { SecurityError } from '../errors.js'
import type { Principal } from '../principal.js'
import { audienceClaim, type ClaimPaths, introspectionClaims } from './claims.js'
import { MAX_TOKEN_BYTES } from './jwt.js'
import { type CachedToken, TokenCache, tokenKey } from './token-cache.js'

export interface IntrospectionOptions {
  readonly name: string
  readonly endpoint: URL
  readonly clientId: string
  readonly clientSecret: string
  readonly audience: () => readonly string[]
  readonly cacheSeconds: number
  readonly timeoutMs: number
  readonly claims: ClaimPaths
  readonly defaultRoles: readonly string[]
}

/**
 * Opaque tokens checked with the authorization server (RFC 7662): client authentication with
 * `client_secret_basic`, then `active`, `aud` (RFC 8707) and `exp` checked here; answers (active
 * or not) are reused until the token's `exp` or `cacheSeconds`, whichever is first.
 * The authorization server unreachable, slow or answering garbage is ERR_AUTH_UNAVAILABLE (503):
 * never a pass.
 * The claims a principal is built from are checked by type (`introspectionClaims`, claims.ts); a
 * malformed answer is ERR_AUTH_INVALID and remembered like an inactive one.
 * Does not check: scopes (the scope stage does), what the principal may do (policy does), `nbf`
 * and `iat` (the server's `active` covers the validity window, RFC 7662 §2.2).
 */
export class Introspector {
  readonly #options: IntrospectionOptions
  readonly #cache = new TokenCache(10_000)
  readonly #inactive = new Map<string, number>()

  constructor(options: IntrospectionOptions) {
    this.#options = options
  }

  async verify(token: string): Promise<CachedToken> {
    const o = this.#options
    if (token.length > MAX_TOKEN_BYTES) throw new SecurityError('ERR_AUTH_INVALID', 'token too large')
    const key = tokenKey(token)
    const cached = this.#cache.get(key)
    if (cached !== undefined) return cached
    const refusedUntil = this.#inactive.get(key)
    if (refusedUntil !== undefined && refusedUntil > Date.now()) throw new SecurityError('ERR_AUTH_INVALID', 'introspection: inactive token (cached answer)')
    let body: Record<string, unknown>
    try {
      const basic = Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(o.clientSecret)}`).toString('base64')
      const res = await fetch(o.endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        signal: AbortSignal.timeout(o.timeoutMs),
        redirect: 'error',
      })
      if (res.status !== 200) throw new Error(`status ${res.status}`)
      body = (await res.json()) as Record<string, unknown>
      if (body === null || typeof body !== 'object') throw new Error('not a JSON object')
    } catch (error) {
      throw new SecurityError('ERR_AUTH_UNAVAILABLE', `introspection at ${o.endpoint.origin} failed: ${error instanceof Error ? error.message : 'error'}`, { cause: error })
    }
    const remember = (why: string): SecurityError => {
      if (this.#inactive.size > 10_000) this.#inactive.clear()
      this.#inactive.set(key, Date.now() + o.cacheSeconds * 1000)
      return new SecurityError('ERR_AUTH_INVALID', `introspection: ${why}`)
    }
    if (body.active !== true) throw remember('inactive token')
    const exp = typeof body.exp === 'number' ? body.exp * 1000 : undefined
    if (exp === undefined) throw remember('no exp')
    if (exp <= Date.now()) throw new SecurityError('ERR_AUTH_EXPIRED', 'introspection: expired token')
    const audiences = audienceClaim(body.aud, remember)
    const accepted = o.audience()
    if (!audiences.some((a) => accepted.includes(a))) throw remember(`audience ${JSON.stringify(audiences)} is not this resource`)
    const claims = introspectionClaims(body, o.claims, remember)
    const principal: Principal = {
      id: `${o.name}:${claims.sub}`,
      kind: 'opaque',
      name: claims.sub,
      roles: [...new Set([...o.defaultRoles, ...claims.roles])],
      scopes: claims.scopes,
      claims: body,
      ...(claims.tenant === undefined ? {} : { tenant: claims.tenant }),
    }
    const entry: CachedToken = { principal, expiresAt: Math.min(exp, Date.now() + o.cacheSeconds * 1000), jti: claims.jti }
    this.#cache.set(key, entry)
    return entry
  }
}
