import { randomUUID } from 'node:crypto'
import { decodeJwt, jwtVerify, SignJWT } from 'jose'
import type { AuditLog } from '../audit/audit-log.js'
import { SecurityError } from '../errors.js'
import type { Exchange } from '../pipeline/exchange.js'
import type { Principal } from '../principal.js'
import type { ApiKeyAuthenticator } from './authenticate.js'
import { type AuthorizationServer, GrantError, type SignedInUser } from './authorization-server.js'
import { authenticateClient, OAuthError, readForm, type TokenClient } from './client-auth.js'
import type { OAuthStore } from './oauth-store.js'
import { newFamily, type RefreshGrant, type RefreshStore } from './refresh-store.js'
import type { SafeFetchOptions } from './safe-fetch.js'
import { SIGNING_ALG, type SigningKeys } from './signing-keys.js'
import type { TokenCache } from './token-cache.js'

export interface TokenServiceOptions {
  /** bastion's issuer identifier: the server's origin (RFC 8414 §2). */
  readonly issuer: () => string
  /** The audience of every token it issues: this server's resource URI. */
  readonly resource: () => string
  readonly keys: SigningKeys
  readonly store: RefreshStore
  readonly apiKeys: ApiKeyAuthenticator
  readonly accessTokenSeconds: number
  readonly refreshTokenSeconds: number
  /** A refresh token presented again this soon after its rotation, by the same client, gets the same successor. */
  readonly refreshRetrySeconds: number
  readonly scopesSupported: readonly string[]
  readonly cache: TokenCache
  readonly audit: AuditLog
  /** The authorization endpoint's side: clients, codes, grants. Undefined: machine clients only. */
  readonly authorization: AuthorizationServer | undefined
  readonly oauthStore: OAuthStore | undefined
  /** How client JWKS (private_key_jwt) are fetched. */
  readonly fetch: SafeFetchOptions
  /** Dynamic Client Registration endpoint advertised. */
  readonly registration: boolean
  readonly metadataDocuments: boolean
}

/** Who a token is for, and for which client. */
interface TokenSubject {
  readonly sub: string
  readonly clientId: string
  readonly roles: readonly string[]
  readonly tenant?: string
  readonly name?: string
  /** The user's grant (authorization code flows), revoked by `grants revoke`. */
  readonly grant?: string
}

const keySubject = (principal: Principal, keyId: string): TokenSubject => ({
  sub: keyId,
  clientId: keyId,
  roles: principal.roles,
  ...(principal.tenant === undefined ? {} : { tenant: principal.tenant }),
})

/** The audit's principal for a user's token request: the same id the user's MCP requests get. */
const userPrincipal = (user: SignedInUser, roles: readonly string[]): Principal => ({
  id: user.via === 'api-key' ? `key:${user.sub}` : user.sub,
  kind: 'jwt',
  name: user.name,
  roles,
})

const NO_STORE = { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' }

/**
 * bastion as its own authorization server, where no IdP exists:
 * - `POST /oauth/token`, `authorization_code` (OAuth 2.1 §4.1.3, PKCE S256): the code a user's
 *   sign-in and consent produced (authorization-server.ts), redeemed once by the client it was
 *   issued to; a second redemption revokes what the first issued.
 * - `client_credentials`: client id = an API key's id, client secret = the
 *   whole key (`client_secret_basic` or `client_secret_post`) → an ES256 JWT access token
 *   (RFC 9068, audience = this resource, default 15 min) and a refresh token.
 * - `refresh_token`: rotation on every use (OAuth 2.1 §4.3.1); presenting a used refresh token
 *   revokes its whole family and is audited as an alert, unless it is the same client's retry
 *   within `refreshRetrySeconds` while the successor is unused: that gets the same successor
 *   and a fresh access token (the first answer may have been lost to a deadline or a dropped
 *   connection; FAPI 2.0 requires such a retry to succeed).
 * - `POST /oauth/revoke` (RFC 7009), metadata (RFC 8414) and the JWKS.
 * Tokens for a user who signed in with an API key carry that key's roles as they are at each
 * issue, and stop being issued once the key is revoked or expired.
 * Does not check: users (the sign-in pages do), the caller of the MCP endpoint (the authenticator).
 */
export class TokenService {
  readonly #o: TokenServiceOptions

  constructor(options: TokenServiceOptions) {
    this.#o = options
  }

  metadata(): Record<string, unknown> {
    const issuer = this.#o.issuer()
    const code = this.#o.authorization !== undefined
    const methods = code ? ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'] : ['client_secret_basic', 'client_secret_post']
    return {
      issuer,
      ...(code ? { authorization_endpoint: `${issuer}/oauth/authorize` } : {}),
      token_endpoint: `${issuer}/oauth/token`,
      revocation_endpoint: `${issuer}/oauth/revoke`,
      ...(code && this.#o.registration ? { registration_endpoint: `${issuer}/oauth/register` } : {}),
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      grant_types_supported: code ? ['authorization_code', 'client_credentials', 'refresh_token'] : ['client_credentials', 'refresh_token'],
      response_types_supported: code ? ['code'] : [],
      response_modes_supported: code ? ['query'] : [],
      code_challenge_methods_supported: code ? ['S256'] : [],
      token_endpoint_auth_methods_supported: methods,
      token_endpoint_auth_signing_alg_values_supported: code ? ['RS256', 'PS256', 'ES256', 'EdDSA'] : undefined,
      revocation_endpoint_auth_methods_supported: methods,
      scopes_supported: [...this.#o.scopesSupported],
      ...(code ? { client_id_metadata_document_supported: this.#o.metadataDocuments, authorization_response_iss_parameter_supported: true } : {}),
    }
  }

  /** Form body and authenticated client of a token or revocation request. */
  async #client(ctx: Exchange): Promise<{ form: URLSearchParams; client: TokenClient }> {
    const form = await readForm(ctx)
    const request = ctx.http?.request
    if (request === undefined) throw new OAuthError('invalid_request', 400, 'HTTP only')
    const issuer = this.#o.issuer()
    const client = await authenticateClient(form, request, {
      apiKeys: this.#o.apiKeys,
      clients: this.#o.authorization?.clients,
      store: this.#o.oauthStore,
      audiences: () => [`${issuer}/oauth/token`, issuer],
      fetch: this.#o.fetch,
    })
    if (client.kind === 'api-key') ctx.principal = client.principal
    else ctx.audit.note({ client: client.client.id })
    return { form, client }
  }

  /**
   * The token response: a new access token with the refresh token it goes with. `sub` is the API
   * key's id or the signed-in user; `client_id` the key's id or the OAuth client (RFC 9068 §2.2).
   */
  async #respond(subject: TokenSubject, scopes: readonly string[], refreshToken: string, family: string, jti = randomUUID()): Promise<Record<string, unknown>> {
    const o = this.#o
    const { kid, key } = await o.keys.signer()
    const accessToken = await new SignJWT({
      client_id: subject.clientId,
      scope: scopes.join(' '),
      roles: [...subject.roles],
      ...(subject.tenant === undefined ? {} : { tenant: subject.tenant }),
      ...(subject.name === undefined ? {} : { name: subject.name }),
      ...(subject.grant === undefined ? {} : { gid: subject.grant }),
      fam: family,
    })
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'at+jwt' })
      .setIssuer(o.issuer())
      .setSubject(subject.sub)
      .setAudience(o.resource())
      .setIssuedAt()
      .setExpirationTime(`${o.accessTokenSeconds}s`)
      .setJti(jti)
      .sign(key)
    return { access_token: accessToken, token_type: 'Bearer', expires_in: o.accessTokenSeconds, refresh_token: refreshToken, scope: scopes.join(' ') }
  }

  #scopes(requested: string | null, allowed: readonly string[]): string[] {
    if (requested === null) return [...allowed]
    const asked = requested.split(' ').filter((s) => s.length > 0)
    const unknown = asked.filter((s) => !allowed.includes(s))
    if (unknown.length > 0) throw new OAuthError('invalid_scope', 400, `scopes not available: ${unknown.join(' ')}`)
    return asked
  }

  /** The public keys tokens verify with (RFC 7517). */
  jwks(): { keys: unknown[] } {
    return this.#o.keys.jwks()
  }

  /** RFC 8707 §2.2: a `resource` in the token request must be this server. */
  #checkResource(form: URLSearchParams): void {
    const resource = form.get('resource')
    if (resource !== null && resource !== this.#o.resource()) throw new OAuthError('invalid_target', 400, 'resource is not this server')
  }

  /** `POST /oauth/token`. */
  async token(ctx: Exchange): Promise<Response> {
    ctx.method = 'oauth/token'
    try {
      const { form, client } = await this.#client(ctx)
      const grant = form.get('grant_type')
      this.#checkResource(form)
      if (grant === 'client_credentials') {
        if (client.kind !== 'api-key') throw new OAuthError('unauthorized_client', 400, 'client_credentials is for API keys')
        const scopes = this.#scopes(form.get('scope'), this.#o.scopesSupported)
        const family = newFamily()
        const refreshToken = await this.#o.store.issue({ family, keyId: client.keyId, scopes, expiresAt: Date.now() + this.#o.refreshTokenSeconds * 1000 })
        const body = await this.#respond(keySubject(client.principal, client.keyId), scopes, refreshToken, family)
        ctx.audit.allow('token.issued')
        ctx.audit.note({ grant, family, scope: scopes.join(' ') })
        return new Response(JSON.stringify(body), { headers: NO_STORE })
      }
      if (grant === 'authorization_code') {
        if (client.kind !== 'oauth') throw new OAuthError('unauthorized_client', 400, 'authorization_code is for OAuth clients')
        return await this.#redeem(ctx, form, client.client.id)
      }
      if (grant === 'refresh_token') return await this.#refresh(ctx, form, client)
      throw new OAuthError('unsupported_grant_type', 400, `grant_type ${JSON.stringify((grant ?? '').slice(0, 64))}`)
    } catch (error) {
      return this.#refuse(ctx, error, 'token.denied')
    }
  }

  /** The subject of a user's tokens, as of now: a signed-in key must still be in force. */
  async #userSubject(user: SignedInUser, clientId: string, grantId: string): Promise<TokenSubject> {
    if (user.via === 'api-key') {
      let principal: Principal
      try {
        principal = this.#o.apiKeys.current(user.sub)
      } catch (error) {
        const reason = error instanceof SecurityError ? error.code : 'ERR_AUTH_REVOKED'
        throw new OAuthError('invalid_grant', 400, `the key the user signed in with is no longer in force: ${error instanceof Error ? error.message : ''}`, reason)
      }
      return { sub: user.sub, clientId, roles: principal.roles, name: principal.name, grant: grantId, ...(principal.tenant === undefined ? {} : { tenant: principal.tenant }) }
    }
    return { sub: user.sub, clientId, roles: user.roles, name: user.name, grant: grantId }
  }

  /** `authorization_code` (OAuth 2.1 §4.1.3): once; a second presentation revokes what the first issued. */
  async #redeem(ctx: Exchange, form: URLSearchParams, clientId: string): Promise<Response> {
    const as = this.#o.authorization
    if (as === undefined) throw new OAuthError('unsupported_grant_type', 400, 'the authorization endpoint is off')
    const code = form.get('code')
    if (code === null) throw new OAuthError('invalid_request', 400, 'code missing')
    const family = newFamily()
    const jti = randomUUID()
    const until = Date.now() + this.#o.refreshTokenSeconds * 1000
    let redeemed: Awaited<ReturnType<AuthorizationServer['redeem']>>
    try {
      redeemed = await as.redeem(code, clientId, form.get('redirect_uri'), form.get('code_verifier'), { family, jti, until })
    } catch (error) {
      if (error instanceof GrantError) throw new OAuthError(error.error, 400, error.detail)
      throw error
    }
    if (!redeemed.first) {
      const earlier = redeemed.earlier
      if (earlier !== undefined) {
        await this.#o.store.revokeFamily(earlier.family, earlier.until)
        await this.#o.store.revokeJti(earlier.jti, Date.now() + this.#o.accessTokenSeconds * 1000)
        this.#o.cache.revoke(earlier.jti)
      }
      this.#o.audit.record({
        event: 'alert',
        alert: 'oauth.code_reused',
        requestId: ctx.requestId,
        principal: `client:${clientId.slice(0, 200)}`,
        ...(earlier === undefined ? {} : { family: earlier.family }),
        decision: 'deny',
        reason: 'ERR_AUTH_REVOKED',
      })
      throw new OAuthError('invalid_grant', 400, 'authorization code used before: the tokens it issued are revoked')
    }
    const g = redeemed.grant
    const subject = await this.#userSubject(g.user, clientId, g.grantId)
    ctx.principal = userPrincipal(g.user, subject.roles)
    const refreshToken = await this.#o.store.issue({ family, keyId: g.user.sub, scopes: g.scopes, expiresAt: until, client: clientId, grant: g.grantId })
    await as.addFamily(g.grantId, family)
    const body = await this.#respond(subject, g.scopes, refreshToken, family, jti)
    ctx.audit.allow('token.issued')
    ctx.audit.note({ grant: 'authorization_code', family, scope: g.scopes.join(' '), user: g.user.sub, via: g.user.via })
    return new Response(JSON.stringify(body), { headers: NO_STORE })
  }

  /** `refresh_token`: rotation, reuse detection, and for users the grant and key still in force. */
  async #refresh(ctx: Exchange, form: URLSearchParams, client: TokenClient): Promise<Response> {
    const presented = form.get('refresh_token')
    if (presented === null) throw new OAuthError('invalid_request', 400, 'refresh_token missing')
    const owner = client.kind === 'api-key' ? client.keyId : client.client.id
    const ownerOf = (g: RefreshGrant): string => g.client ?? g.keyId
    const used = await this.#o.store.use(presented, this.#o.refreshRetrySeconds * 1000)
    // A retry is honoured for the client the token was issued to only: from another, it is reuse.
    const reused = used.status === 'reused' ? used.family : used.status === 'ok' && used.retried && ownerOf(used.grant) !== owner ? used.grant.family : undefined
    if (reused !== undefined) {
      await this.#o.store.revokeFamily(reused, Date.now() + this.#o.refreshTokenSeconds * 1000)
      this.#o.audit.record({
        event: 'alert',
        alert: 'token.refresh_reused',
        requestId: ctx.requestId,
        principal: client.kind === 'api-key' ? client.principal.id : `client:${owner.slice(0, 200)}`,
        family: reused,
        decision: 'deny',
        reason: 'ERR_AUTH_REVOKED',
      })
      ctx.audit.note({ family: reused, familyRevoked: true })
      throw new OAuthError('invalid_grant', 400, `refresh token reused: family ${reused} revoked`)
    }
    if (used.status !== 'ok') throw new OAuthError('invalid_grant', 400, 'unknown or expired refresh token')
    if (ownerOf(used.grant) !== owner || (client.kind === 'api-key') !== (used.grant.client === undefined)) {
      await this.#o.store.revokeFamily(used.grant.family, used.grant.expiresAt)
      throw new OAuthError('invalid_grant', 400, `refresh token of another client (family ${used.grant.family} revoked)`)
    }
    // The new refresh token keeps the grant's scopes (RFC 6749 §6); `scope` narrows the access token.
    // On a retry the access token is a new one: none is stored, and its lifetime starts now.
    const scopes = this.#scopes(form.get('scope'), used.grant.scopes)
    let subject: TokenSubject
    if (client.kind === 'api-key') subject = keySubject(client.principal, client.keyId)
    else {
      const standing = used.grant.grant === undefined ? undefined : await this.#o.authorization?.grant(used.grant.grant)
      if (standing === undefined || standing.user.sub !== used.grant.keyId) {
        await this.#o.store.revokeFamily(used.grant.family, used.grant.expiresAt)
        throw new OAuthError('invalid_grant', 400, 'the grant this token stands under was revoked', 'ERR_AUTH_REVOKED')
      }
      subject = await this.#userSubject(standing.user, owner, standing.id)
      ctx.principal = userPrincipal(standing.user, subject.roles)
    }
    const body = await this.#respond(subject, scopes, used.next, used.grant.family)
    ctx.audit.allow('token.refreshed')
    ctx.audit.note({ grant: 'refresh_token', family: used.grant.family, scope: scopes.join(' '), ...(used.retried ? { retried: true } : {}) })
    return new Response(JSON.stringify(body), { headers: NO_STORE })
  }

  /** `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known. */
  async revoke(ctx: Exchange): Promise<Response> {
    ctx.method = 'oauth/revoke'
    try {
      const { form, client } = await this.#client(ctx)
      const owner = client.kind === 'api-key' ? client.keyId : client.client.id
      const token = form.get('token')
      if (token === null) throw new OAuthError('invalid_request', 400, 'token missing')
      let what = 'unknown token'
      if (token.startsWith('bstr_')) {
        // RFC 7009 §2.1: only a token issued to the calling client is revoked.
        const owned = await this.#o.store.familyOf(token)
        if (owned !== undefined && (owned.client ?? owned.keyId) === owner) {
          await this.#o.store.revokeFamily(owned.family, Date.now() + this.#o.refreshTokenSeconds * 1000)
          what = `refresh family ${owned.family}`
        }
      } else {
        const claims = await this.#ownToken(token)
        if (claims !== undefined && claims.client_id === owner && typeof claims.jti === 'string') {
          await this.#o.store.revokeJti(claims.jti, (claims.exp ?? 0) * 1000)
          this.#o.cache.revoke(claims.jti)
          what = `access token ${claims.jti}`
        }
      }
      ctx.audit.allow('token.revoked')
      ctx.audit.note({ revoked: what })
      return new Response(null, { status: 200, headers: { 'cache-control': 'no-store' } })
    } catch (error) {
      return this.#refuse(ctx, error, 'token.denied')
    }
  }

  /** Claims of an access token this service signed (expired ones too: revoking one is harmless). */
  async #ownToken(token: string): Promise<{ sub?: string; client_id?: unknown; jti?: unknown; exp?: number } | undefined> {
    try {
      if (decodeJwt(token).iss !== this.#o.issuer()) return undefined
      const { payload } = await jwtVerify(token, this.#o.keys.keySet(), { issuer: this.#o.issuer(), algorithms: [SIGNING_ALG], currentDate: new Date(0) })
      return payload
    } catch {
      return undefined
    }
  }

  #refuse(ctx: Exchange, error: unknown, event: string): Response {
    if (!(error instanceof OAuthError)) {
      const failure = error instanceof SecurityError ? error : new SecurityError('ERR_INTERNAL', error instanceof Error ? error.message : 'token endpoint failure')
      throw failure
    }
    const code = error.reason ?? (error.error === 'invalid_client' ? 'ERR_AUTH_INVALID' : 'ERR_INVALID_REQUEST')
    if (error.status === 413) ctx.audit.note({ tooLarge: true })
    ctx.audit.fail(new SecurityError(code, `${error.error}: ${error.detail}`), event)
    ctx.audit.note({ oauthError: error.error })
    const headers: Record<string, string> = { ...NO_STORE }
    if (error.status === 401) headers['www-authenticate'] = 'Basic realm="mcp-bastion"'
    return new Response(JSON.stringify({ error: error.error }), { status: error.status, headers })
  }
}
