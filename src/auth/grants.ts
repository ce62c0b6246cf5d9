import { grantRevocationId } from './authenticator.js'
import type { OAuthStore } from './oauth-store.js'
import type { RefreshStore } from './refresh-store.js'

/** Who signed in at the authorization endpoint. */
export interface SignedInUser {
  /** The token's `sub`: an API key's id, or `user:<provider>:<sub>` for an OpenID provider's user. */
  readonly sub: string
  readonly via: 'api-key' | 'oidc'
  readonly name: string
  readonly roles: readonly string[]
}

/** A user's standing consent to a client: remembered, listed and revoked by operators. */
export interface StoredGrant {
  readonly id: string
  readonly user: SignedInUser
  readonly clientId: string
  readonly clientName: string
  readonly scopes: readonly string[]
  readonly createdAt: number
  readonly lastUsedAt: number
  /** Refresh-token families issued under this grant (revoked with it). */
  readonly families: readonly string[]
}

/** A stored grant, checked field by field (the store is a file anyone with the state folder can edit). */
export function parseGrant(value: unknown): StoredGrant | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const g = value as StoredGrant
  if (typeof g.id !== 'string' || typeof g.clientId !== 'string' || typeof g.user !== 'object' || g.user === null || typeof g.user.sub !== 'string') return undefined
  if (!Array.isArray(g.scopes) || !Array.isArray(g.families) || !Array.isArray(g.user.roles)) return undefined
  return g
}

/** Every standing grant (users' consents to clients), oldest first. */
export async function listGrants(store: OAuthStore): Promise<StoredGrant[]> {
  const all = await store.list('grant')
  return all
    .map((g) => parseGrant(g.value))
    .filter((g): g is StoredGrant => g !== undefined)
    .sort((a, b) => a.createdAt - b.createdAt)
}

/**
 * Revoke a grant everywhere: the consent is forgotten, every refresh family issued under it is
 * revoked, and its access tokens are refused from now on (their `gid` is on the revocation list
 * for as long as one could live).
 * Does not check: who asks (the CLI is run by an operator with the state folder).
 */
export async function revokeGrant(
  store: OAuthStore,
  refresh: RefreshStore,
  id: string,
  lifetimes: { readonly accessTokenSeconds: number; readonly refreshTokenSeconds: number },
): Promise<StoredGrant | undefined> {
  const grant = parseGrant(await store.get('grant', id))
  if (grant === undefined) return undefined
  const now = Date.now()
  for (const family of grant.families) await refresh.revokeFamily(family, now + lifetimes.refreshTokenSeconds * 1000)
  await refresh.revokeJti(grantRevocationId(id), now + lifetimes.accessTokenSeconds * 1000)
  await store.delete('grant', id)
  return grant
}
