import { createPublicKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, errors, type JWK, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose'
import { SecurityError } from '../errors.js'
import type { Principal } from '../principal.js'
import { type ClaimPaths, jwtClaims } from './claims.js'

/** Longest token accepted at all: bigger ones are refused before any parsing. */
export const MAX_TOKEN_BYTES = 8192

export interface IssuerOptions {
  readonly name: string
  readonly issuer: string
  /** Accepted audiences, read per verification (the resource URI may be known only once listening). */
  readonly audience: () => readonly string[]
  readonly algorithms: readonly string[]
  /** Where keys come from: never from the token (`jwk`, `jku`, `x5u`, `x5c` are ignored). */
  readonly keys:
    | { readonly remote: URL; readonly cooldownMs: number; readonly timeoutMs: number }
    | { readonly jwks: { keys: JWK[] } }
    | { readonly secret: Uint8Array }
    | { readonly resolver: JWTVerifyGetKey }
  readonly requireTyp: boolean
  readonly clockSkewSeconds: number
  readonly maxLifetimeSeconds: number
  readonly claims: ClaimPaths
  readonly defaultRoles: readonly string[]
}

/** A JWKS from PEM public keys and JWKs (public parts only: a private key in config is refused). */
export function staticJwks(entries: readonly ({ pem: string } | { jwk: Record<string, unknown> })[]): { keys: JWK[] } {
  return {
    keys: entries.map((e, i) => {
      if ('pem' in e) {
        const key = createPublicKey(e.pem)
        return key.export({ format: 'jwk' }) as JWK
      }
      if ('d' in e.jwk || 'k' in e.jwk) throw new Error(`keys.${i}: a private or symmetric JWK; give the public key`)
      return e.jwk as JWK
    }),
  }
}

/** Read a local JWKS file. */
export function jwksFromFile(path: string): { keys: JWK[] } {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown
  if (parsed === null || typeof parsed !== 'object' || !Array.isArray((parsed as { keys?: unknown }).keys)) throw new Error(`${path}: not a JWKS ({"keys": [...]})`)
  return parsed as { keys: JWK[] }
}

interface Trusted {
  readonly options: IssuerOptions
  readonly key: JWTVerifyGetKey | Uint8Array
}

/**
 * JWT access tokens (RFC 9068 profile where required) from configured issuers, verified with
 * `jose`: the issuer is looked up by the unverified `iss`, then everything is checked against that
 * issuer's own settings — algorithm allowlist, keys from config only, `aud` (RFC 8707), `exp`
 * required, `nbf`, `iat` not in the future, lifetime cap, `typ`, unknown `crit` refused.
 * Claim types: jose compares `iss` with the configured string and requires one `aud` member to
 * match, and refuses an `exp`, `nbf` or `iat` that is not a number; every claim a principal is
 * built from (`sub`, `scope`, `scp`, roles, tenant, `aud` members, `client_id`, `jti`) is then
 * checked by type in `jwtClaims` (claims.ts), before use.
 * Does not check: revocation (the token cache consults the revocation list), scopes (the scope
 * stage does), what the principal may do (policy does).
 */
export class JwtVerifier {
  readonly #byIssuer = new Map<string, Trusted>()
  readonly #self: { readonly issuer: () => string; readonly trusted: Trusted } | undefined

  /** @param self bastion's own token service, whose issuer is its URL (known once listening). */
  constructor(
    issuers: readonly IssuerOptions[],
    self?: { readonly issuer: () => string; readonly options: IssuerOptions & { readonly keys: { readonly resolver: JWTVerifyGetKey } } },
  ) {
    this.#self = self === undefined ? undefined : { issuer: self.issuer, trusted: { options: self.options, key: self.options.keys.resolver } }
    for (const options of issuers) {
      if (this.#byIssuer.has(options.issuer)) throw new Error(`issuer ${options.issuer} is configured twice`)
      let key: JWTVerifyGetKey | Uint8Array
      if ('secret' in options.keys) key = options.keys.secret
      else if ('resolver' in options.keys) key = options.keys.resolver
      else if ('jwks' in options.keys) key = createLocalJWKSet(options.keys.jwks)
      else {
        // Cached without expiry: an IdP outage must not break tokens signed with keys we already
        // have. An unknown `kid` refetches, at most once per cooldown.
        key = createRemoteJWKSet(options.keys.remote, { cooldownDuration: options.keys.cooldownMs, timeoutDuration: options.keys.timeoutMs, cacheMaxAge: Number.POSITIVE_INFINITY })
      }
      this.#byIssuer.set(options.issuer, { options, key })
    }
  }

  /** The token's claims, unverified: only to find which issuer's settings verify it. */
  #claims(token: string): JWTPayload | undefined {
    try {
      return decodeJwt(token)
    } catch {
      return undefined
    }
  }

  /**
   * @returns the principal and the token's expiry (ms since the epoch)
   * @throws SecurityError ERR_AUTH_INVALID, ERR_AUTH_EXPIRED, ERR_AUTH_UNAVAILABLE (keys unreachable)
   */
  async verify(token: string): Promise<{ principal: Principal; expiresAt: number; jti: string | undefined; self?: SelfToken }> {
    if (token.length > MAX_TOKEN_BYTES) throw new SecurityError('ERR_AUTH_INVALID', `token of ${token.length} bytes is over ${MAX_TOKEN_BYTES}`)
    const unverified = this.#claims(token)
    if (unverified === undefined) throw new SecurityError('ERR_AUTH_INVALID', 'not a JWT')
    const iss = unverified.iss
    let trusted = typeof iss === 'string' ? this.#byIssuer.get(iss) : undefined
    if (trusted === undefined && this.#self !== undefined && iss === this.#self.issuer()) trusted = this.#self.trusted
    if (trusted === undefined || typeof iss !== 'string') throw new SecurityError('ERR_AUTH_INVALID', 'token from an untrusted issuer')
    const o = trusted.options
    let payload: JWTPayload
    try {
      const verifyOptions = {
        issuer: iss,
        audience: [...o.audience()],
        algorithms: [...o.algorithms],
        clockTolerance: o.clockSkewSeconds,
        requiredClaims: ['exp', 'sub'],
        ...(o.requireTyp ? { typ: 'at+jwt' } : {}),
      }
      const key = trusted.key
      payload = (key instanceof Uint8Array ? await jwtVerify(token, key, verifyOptions) : await jwtVerify(token, key, verifyOptions)).payload
    } catch (error) {
      throw fromJose(error, o.issuer)
    }
    const now = Date.now() / 1000
    const exp = payload.exp ?? 0
    if (payload.iat !== undefined && payload.iat > now + o.clockSkewSeconds) throw new SecurityError('ERR_AUTH_INVALID', `${o.issuer}: iat is in the future`)
    const start = payload.iat ?? payload.nbf ?? now
    if (exp - start > o.maxLifetimeSeconds)
      throw new SecurityError('ERR_AUTH_INVALID', `${o.issuer}: lifetime ${Math.round(exp - start)} s is over the maximum ${o.maxLifetimeSeconds} s`)
    const claims = jwtClaims(payload, o.claims, (why) => new SecurityError('ERR_AUTH_INVALID', `${o.issuer}: ${why}`))
    const self = trusted === this.#self?.trusted
    // bastion's own tokens for people who signed in through an OpenID provider name them `user:…`.
    const person = self && claims.sub.startsWith('user:')
    const shownName = self && typeof payload.name === 'string' ? payload.name : claims.sub
    const principal: Principal = {
      id: person ? claims.sub : `${o.name}:${claims.sub}`,
      kind: 'jwt',
      name: shownName,
      roles: [...new Set([...o.defaultRoles, ...claims.roles])],
      scopes: claims.scopes,
      claims: payload,
      ...(claims.tenant === undefined ? {} : { tenant: claims.tenant }),
    }
    const grant = typeof payload.gid === 'string' ? payload.gid : undefined
    const family = typeof payload.fam === 'string' ? payload.fam : undefined
    return {
      principal,
      expiresAt: exp * 1000,
      jti: claims.jti,
      ...(self ? { self: { keyId: person ? undefined : claims.sub, ...(grant === undefined ? {} : { grant }), ...(family === undefined ? {} : { family }) } } : {}),
    }
  }
}

/** What bastion's own tokens carry besides the principal: the key they stand for, the user's grant. */
export interface SelfToken {
  /** The API key whose roles the token carries (undefined for a person from an OpenID provider). */
  readonly keyId: string | undefined
  readonly grant?: string
  /** The refresh family it was issued with: revoked together (reuse of a refresh token or a code). */
  readonly family?: string
}

/** jose's errors as bastion's: expired, unavailable keys, or simply invalid. The message is for the audit line. */
function fromJose(error: unknown, issuer: string): SecurityError {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : 'verification failed'
  if (error instanceof errors.JWTExpired) return new SecurityError('ERR_AUTH_EXPIRED', `${issuer}: ${what}`)
  if (
    error instanceof errors.JWKSTimeout ||
    (error instanceof TypeError && /fetch/i.test(error.message)) ||
    (error instanceof errors.JOSEError && error.code === 'ERR_JOSE_GENERIC' && /fetch|response/i.test(error.message))
  )
    return new SecurityError('ERR_AUTH_UNAVAILABLE', `${issuer}: keys unreachable: ${what}`, { cause: error })
  return new SecurityError('ERR_AUTH_INVALID', `${issuer}: ${what}`)
}
