import { randomUUID } from 'node:crypto'
import { decodeJwt, jwtVerify, SignJWT } from 'jose'
import type { AuditLog } from '../audit/audit-log.js'
import { SecurityError } from '../errors.js'
import type { Exchange } from '../pipeline/exchange.js'
import type { Principal } from '../principal.js'
import { parseApiKey } from './api-key.js'
import type { ApiKeyAuthenticator } from './authenticate.js'
import { newFamily, type RefreshStore } from './refresh-store.js'
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
}

/** An RFC 6749 §5.2 error: the only shape the token endpoint answers failures with. */
class OAuthError extends Error {
  constructor(
    readonly error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unsupported_grant_type' | 'invalid_scope',
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail)
  }
}

/** A token or revocation form holds a few short parameters: more is refused unread (the client is not authenticated yet). */
const MAX_FORM_BYTES = 16 * 1024

/**
 * The form body, read no further than {@link MAX_FORM_BYTES} (413 past it), as strict UTF-8.
 * Does not check: the parameters (the grant handlers do).
 */
async function formText(request: Request): Promise<string> {
  const declared = Number(request.headers.get('content-length') ?? '0')
  if (!(declared <= MAX_FORM_BYTES)) throw new OAuthError('invalid_request', 413, 'form body too large')
  const reader = request.body?.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (let next = await reader?.read(); next !== undefined && !next.done; next = await reader?.read()) {
    size += next.value.byteLength
    if (size > MAX_FORM_BYTES) {
      await reader?.cancel()
      throw new OAuthError('invalid_request', 413, 'form body too large')
    }
    chunks.push(next.value)
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
  } catch {
    throw new OAuthError('invalid_request', 400, 'form body is not UTF-8')
  }
}

const NO_STORE = { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' }

/**
 * bastion as its own authorization server for machine clients, where no IdP exists:
 * - `POST /oauth/token`, `client_credentials`: client id = an API key's id, client secret = the
 *   whole key (`client_secret_basic` or `client_secret_post`) → an ES256 JWT access token
 *   (RFC 9068, audience = this resource, default 15 min) and a refresh token.
 * - `refresh_token`: rotation on every use (OAuth 2.1 §4.3.1); presenting a used refresh token
 *   revokes its whole family and is audited as an alert, unless it is the same client's retry
 *   within `refreshRetrySeconds` while the successor is unused: that gets the same successor
 *   and a fresh access token (the first answer may have been lost to a deadline or a dropped
 *   connection; FAPI 2.0 requires such a retry to succeed).
 * - `POST /oauth/revoke` (RFC 7009), metadata (RFC 8414) and the JWKS.
 * Does not check: end users (there is no authorization code grant: use an IdP for people).
 */
export class TokenService {
  readonly #o: TokenServiceOptions

  constructor(options: TokenServiceOptions) {
    this.#o = options
  }

  metadata(): Record<string, unknown> {
    const issuer = this.#o.issuer()
    return {
      issuer,
      token_endpoint: `${issuer}/oauth/token`,
      revocation_endpoint: `${issuer}/oauth/revoke`,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      grant_types_supported: ['client_credentials', 'refresh_token'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      scopes_supported: [...this.#o.scopesSupported],
      response_types_supported: [],
    }
  }

  /** Form body and authenticated client of a token or revocation request. */
  async #client(ctx: Exchange): Promise<{ form: URLSearchParams; principal: Principal; keyId: string }> {
    const request = ctx.http?.request
    if (request === undefined) throw new OAuthError('invalid_request', 400, 'HTTP only')
    if (request.method !== 'POST') throw new OAuthError('invalid_request', 405, 'POST only')
    if (!(request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded'))
      throw new OAuthError('invalid_request', 400, 'form-encoded body required')
    const form = new URLSearchParams(await formText(request))
    for (const [name] of form) if (form.getAll(name).length > 1) throw new OAuthError('invalid_request', 400, `repeated parameter ${name}`)
    const basic = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(request.headers.get('authorization') ?? '')?.[1]
    let id: string | undefined
    let secret: string | undefined
    if (basic !== undefined) {
      if (form.has('client_secret')) throw new OAuthError('invalid_request', 400, 'two client authentication methods')
      const decoded = Buffer.from(basic, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon < 0) throw new OAuthError('invalid_client', 401, 'malformed Basic credentials')
      try {
        id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '))
        secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '))
      } catch {
        throw new OAuthError('invalid_client', 401, 'malformed Basic credentials')
      }
    } else {
      id = form.get('client_id') ?? undefined
      secret = form.get('client_secret') ?? undefined
    }
    if (id === undefined || secret === undefined) throw new OAuthError('invalid_client', 401, 'client authentication required')
    const parsed = parseApiKey(secret)
    if (parsed === undefined || parsed.id !== id) throw new OAuthError('invalid_client', 401, 'client id and secret do not match')
    let principal: Principal
    try {
      principal = this.#o.apiKeys.verify(secret)
    } catch (error) {
      throw new OAuthError('invalid_client', 401, error instanceof Error ? error.message : 'invalid client')
    }
    ctx.principal = principal
    return { form, principal, keyId: parsed.id }
  }

  /** The token response: a new access token with the refresh token it goes with. */
  async #respond(principal: Principal, keyId: string, scopes: readonly string[], refreshToken: string): Promise<Record<string, unknown>> {
    const o = this.#o
    const { kid, key } = await o.keys.signer()
    const jti = randomUUID()
    const accessToken = await new SignJWT({
      client_id: keyId,
      scope: scopes.join(' '),
      roles: [...principal.roles],
      ...(principal.tenant === undefined ? {} : { tenant: principal.tenant }),
    })
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'at+jwt' })
      .setIssuer(o.issuer())
      .setSubject(keyId)
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

  /** `POST /oauth/token`. */
  async token(ctx: Exchange): Promise<Response> {
    ctx.method = 'oauth/token'
    try {
      const { form, principal, keyId } = await this.#client(ctx)
      const grant = form.get('grant_type')
      if (grant === 'client_credentials') {
        const scopes = this.#scopes(form.get('scope'), this.#o.scopesSupported)
        const family = newFamily()
        const refreshToken = await this.#o.store.issue({ family, keyId, scopes, expiresAt: Date.now() + this.#o.refreshTokenSeconds * 1000 })
        const body = await this.#respond(principal, keyId, scopes, refreshToken)
        ctx.audit.allow('token.issued')
        ctx.audit.note({ grant, family, scope: scopes.join(' ') })
        return new Response(JSON.stringify(body), { headers: NO_STORE })
      }
      if (grant === 'refresh_token') {
        const presented = form.get('refresh_token')
        if (presented === null) throw new OAuthError('invalid_request', 400, 'refresh_token missing')
        const used = await this.#o.store.use(presented, this.#o.refreshRetrySeconds * 1000)
        // A retry is honoured for the client the token was issued to only: from another, it is reuse.
        const reused = used.status === 'reused' ? used.family : used.status === 'ok' && used.retried && used.grant.keyId !== keyId ? used.grant.family : undefined
        if (reused !== undefined) {
          await this.#o.store.revokeFamily(reused, Date.now() + this.#o.refreshTokenSeconds * 1000)
          this.#o.audit.record({
            event: 'alert',
            alert: 'token.refresh_reused',
            requestId: ctx.requestId,
            principal: principal.id,
            family: reused,
            decision: 'deny',
            reason: 'ERR_AUTH_REVOKED',
          })
          ctx.audit.note({ family: reused, familyRevoked: true })
          throw new OAuthError('invalid_grant', 400, `refresh token reused: family ${reused} revoked`)
        }
        if (used.status !== 'ok') throw new OAuthError('invalid_grant', 400, 'unknown or expired refresh token')
        if (used.grant.keyId !== keyId) {
          await this.#o.store.revokeFamily(used.grant.family, used.grant.expiresAt)
          throw new OAuthError('invalid_grant', 400, `refresh token of another client (family ${used.grant.family} revoked)`)
        }
        // The new refresh token keeps the grant's scopes (RFC 6749 §6); `scope` narrows the access token.
        // On a retry the access token is a new one: none is stored, and its lifetime starts now.
        const scopes = this.#scopes(form.get('scope'), used.grant.scopes)
        const body = await this.#respond(principal, keyId, scopes, used.next)
        ctx.audit.allow('token.refreshed')
        ctx.audit.note({ grant, family: used.grant.family, scope: scopes.join(' '), ...(used.retried ? { retried: true } : {}) })
        return new Response(JSON.stringify(body), { headers: NO_STORE })
      }
      throw new OAuthError('unsupported_grant_type', 400, `grant_type ${JSON.stringify((grant ?? '').slice(0, 64))}`)
    } catch (error) {
      return this.#refuse(ctx, error, 'token.denied')
    }
  }

  /** `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known. */
  async revoke(ctx: Exchange): Promise<Response> {
    ctx.method = 'oauth/revoke'
    try {
      const { form, keyId } = await this.#client(ctx)
      const token = form.get('token')
      if (token === null) throw new OAuthError('invalid_request', 400, 'token missing')
      let what = 'unknown token'
      if (token.startsWith('bstr_')) {
        // RFC 7009 §2.1: only a token issued to the calling client is revoked.
        const owned = await this.#o.store.familyOf(token)
        if (owned !== undefined && owned.keyId === keyId) {
          await this.#o.store.revokeFamily(owned.family, Date.now() + this.#o.refreshTokenSeconds * 1000)
          what = `refresh family ${owned.family}`
        }
      } else {
        const claims = await this.#ownToken(token)
        if (claims !== undefined && claims.sub === keyId && typeof claims.jti === 'string') {
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
  async #ownToken(token: string): Promise<{ sub?: string; jti?: unknown; exp?: number } | undefined> {
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
    const code = error.error === 'invalid_client' ? 'ERR_AUTH_INVALID' : 'ERR_INVALID_REQUEST'
    ctx.audit.fail(new SecurityError(code, `${error.error}: ${error.detail}`), event)
    ctx.audit.note({ oauthError: error.error })
    const headers: Record<string, string> = { ...NO_STORE }
    if (error.status === 401) headers['www-authenticate'] = 'Basic realm="mcp-bastion"'
    return new Response(JSON.stringify({ error: error.error }), { status: error.status, headers })
  }
}
