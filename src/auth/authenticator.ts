import { SecurityError } from '../errors.js'
import type { Principal } from '../principal.js'
import { parseApiKey } from './api-key.js'
import type { ApiKeyAuthenticator, CredentialSource } from './authenticate.js'
import type { Introspector } from './introspection.js'
import type { JwtVerifier, SelfToken } from './jwt.js'
import { type TokenCache, tokenKey } from './token-cache.js'

/** Is this token id revoked (bastion's own tokens)? */
export type RevocationCheck = (jti: string) => Promise<boolean>

export interface AuthenticatorParts {
  readonly apiKeys: ApiKeyAuthenticator
  readonly jwt: JwtVerifier | undefined
  readonly introspection: Introspector | undefined
  readonly cache: TokenCache
  readonly isRevoked: RevocationCheck
  /** Is this refresh family revoked (bastion's own tokens)? */
  readonly isFamilyRevoked: RevocationCheck
}

/** The revocation id of a user's grant (`mcp-bastion grants revoke`). */
export const grantRevocationId = (grant: string): string => `grant:${grant}`

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/**
 * Every credential bastion accepts, by shape: a bastion API key (`bst_…`, in `Authorization:
 * Bearer` or `X-API-Key`), a JWT from a trusted issuer (Bearer only), or an opaque token for the
 * introspection endpoint (Bearer only). Verified JWTs are cached until their `exp`; a cached or
 * fresh token whose `jti` is revoked is refused.
 * Does not check: scopes and permissions (later stages), failure rates (the brute-force stage).
 */
export class Authenticator {
  readonly #parts: AuthenticatorParts

  constructor(parts: AuthenticatorParts) {
    this.#parts = parts
  }

  /** @throws SecurityError ERR_AUTH_* */
  async verify(token: string, source: CredentialSource): Promise<Principal> {
    const p = this.#parts
    if (parseApiKey(token) !== undefined) return p.apiKeys.verify(token)
    if (source !== 'authorization') throw new SecurityError('ERR_AUTH_INVALID', `${source} carries something other than an API key`)
    if (p.jwt !== undefined && JWT_SHAPE.test(token)) {
      const key = tokenKey(token)
      const cached = p.cache.get(key)
      if (cached !== undefined) {
        if (cached.jti !== undefined && (await p.isRevoked(cached.jti))) {
          p.cache.revoke(cached.jti)
          throw new SecurityError('ERR_AUTH_REVOKED', `token ${cached.jti} is revoked`)
        }
        await this.#stillInForce(cached.self)
        return cached.principal
      }
      const verified = await p.jwt.verify(token)
      if (verified.jti !== undefined && (await p.isRevoked(verified.jti))) throw new SecurityError('ERR_AUTH_REVOKED', `token ${verified.jti} is revoked`)
      await this.#stillInForce(verified.self)
      p.cache.set(key, { principal: verified.principal, expiresAt: verified.expiresAt, jti: verified.jti, ...(verified.self === undefined ? {} : { self: verified.self }) })
      return verified.principal
    }
    if (p.introspection !== undefined) return (await p.introspection.verify(token)).principal
    throw new SecurityError('ERR_AUTH_INVALID', 'unrecognised credential')
  }

  /** bastion's own token lives no longer than the key it stands for, or the user's grant. */
  async #stillInForce(self: SelfToken | undefined): Promise<void> {
    if (self === undefined) return
    if (self.keyId !== undefined) this.#parts.apiKeys.current(self.keyId)
    if (self.family !== undefined && (await this.#parts.isFamilyRevoked(self.family))) throw new SecurityError('ERR_AUTH_REVOKED', `refresh family ${self.family} was revoked`)
    if (self.grant !== undefined && (await this.#parts.isRevoked(grantRevocationId(self.grant)))) throw new SecurityError('ERR_AUTH_REVOKED', `grant ${self.grant} was revoked`)
  }
}
