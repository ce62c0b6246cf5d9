import { SecurityError } from '../errors.js'
import type { Principal } from '../principal.js'
import { keyMatchesHash, parseApiKey } from './api-key.js'
import type { KeyStore, StoredKey } from './key-store.js'

// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token. Scheme is case-insensitive (RFC 9110 §11.1).
const BEARER = /^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)$/
// Compared against when the key id is unknown, so an unknown id costs the same as a wrong secret.
const DUMMY_HASH = '0'.repeat(64)

/** Where a credential came from, for the audit line. */
export type CredentialSource = 'authorization' | 'x-api-key' | 'environment'

/**
 * Extract the one credential of a request: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
 * Both present is ambiguous and refused, as is a malformed header (no guessing).
 * Does not check: the credential itself (see {@link ApiKeyAuthenticator}).
 * @throws SecurityError ERR_AUTH_MISSING, ERR_AUTH_INVALID
 */
export function credentialFromHeaders(headers: Headers): { token: string; source: CredentialSource } {
  const authorization = headers.get('authorization')
  const apiKey = headers.get('x-api-key')
  if (authorization !== null && apiKey !== null) {
    throw new SecurityError('ERR_AUTH_INVALID', 'both Authorization and X-API-Key present')
  }
  if (authorization !== null) {
    const token = BEARER.exec(authorization)?.[1]
    if (token === undefined) throw new SecurityError('ERR_AUTH_INVALID', 'malformed Authorization header (expected Bearer)')
    return { token, source: 'authorization' }
  }
  if (apiKey !== null) {
    if (apiKey.length === 0 || apiKey.length > 512) throw new SecurityError('ERR_AUTH_INVALID', 'malformed X-API-Key header')
    return { token: apiKey, source: 'x-api-key' }
  }
  throw new SecurityError('ERR_AUTH_MISSING', 'no credential presented')
}

/**
 * Verifies bastion API keys against the hashed store: format, constant-time hash comparison,
 * then revocation and expiry (checked only after the secret matched, so status is never
 * revealed to someone without the key).
 * Does not check: permissions (policy does), rate of failures (the brute-force layer does).
 */
export class ApiKeyAuthenticator {
  constructor(
    private readonly store: KeyStore,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The principal of a key by id, if it is still in force: tokens issued for a key (sign-in at the
   * authorization endpoint, client credentials) live no longer than the key itself.
   * @throws SecurityError ERR_AUTH_INVALID (unknown), ERR_AUTH_REVOKED, ERR_AUTH_EXPIRED
   */
  current(id: string): Principal {
    const stored = this.store.get(id)
    if (stored === undefined) throw new SecurityError('ERR_AUTH_INVALID', `unknown key id ${id}`)
    return this.#inForce(stored)
  }

  #inForce(stored: StoredKey): Principal {
    if (stored.revokedAt !== null) throw new SecurityError('ERR_AUTH_REVOKED', `key ${stored.id} was revoked at ${stored.revokedAt}`)
    if (stored.expiresAt !== null && Date.parse(stored.expiresAt) <= this.now()) {
      throw new SecurityError('ERR_AUTH_EXPIRED', `key ${stored.id} expired at ${stored.expiresAt}`)
    }
    return { id: `key:${stored.id}`, kind: 'api-key', name: stored.name, roles: stored.roles, ...(stored.tenant === undefined ? {} : { tenant: stored.tenant }) }
  }

  /** @throws SecurityError ERR_AUTH_INVALID, ERR_AUTH_REVOKED, ERR_AUTH_EXPIRED */
  verify(token: string): Principal {
    const parsed = parseApiKey(token)
    if (parsed === undefined) throw new SecurityError('ERR_AUTH_INVALID', 'credential is not a bastion API key')
    const stored = this.store.get(parsed.id)
    const matches = keyMatchesHash(token, stored?.hash ?? DUMMY_HASH)
    if (stored === undefined || !matches) {
      throw new SecurityError('ERR_AUTH_INVALID', stored === undefined ? `unknown key id ${parsed.id}` : `wrong secret for key id ${parsed.id}`)
    }
    return this.#inForce(stored)
  }
}
