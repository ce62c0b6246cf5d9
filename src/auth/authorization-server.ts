import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import type { Keyring } from '../protect/keyring.js'
import { parseGrant, type SignedInUser, type StoredGrant } from './grants.js'
import { ClientError, type ClientRegistry, type OAuthClient } from './oauth-clients.js'
import type { OAuthStore } from './oauth-store.js'
import { redirectMatches } from './redirect-uri.js'

/** A validated authorization request (RFC 6749 §4.1.1 with PKCE, RFC 8707 and the MCP rules). */
export interface AuthorizationRequest {
  readonly clientId: string
  readonly clientName: string
  readonly redirectUri: string
  /** Whether the request named it (OAuth 2.1 §4.1.3: then the token request must repeat it). */
  readonly redirectUriPresented: boolean
  readonly state: string
  readonly codeChallenge: string
  readonly scopes: readonly string[]
  readonly resource: string
}

/** What a code stands for; sealed into the code itself, so any replica can redeem it. */
export interface CodeGrant extends AuthorizationRequest {
  readonly id: string
  readonly user: SignedInUser
  readonly grantId: string
  readonly expiresAt: number
}

/**
 * An RFC 6749 §4.1.2.1 error. `redirect: false` when the client or redirect URI cannot be trusted:
 * the user sees an error page and nothing is sent anywhere (no open redirect).
 */
export class AuthorizeError extends Error {
  constructor(
    readonly error: 'invalid_request' | 'unauthorized_client' | 'access_denied' | 'unsupported_response_type' | 'invalid_scope' | 'server_error' | 'invalid_target',
    readonly detail: string,
    /** Where the error may be sent (the client and redirect URI were good); undefined: show it. */
    readonly to?: { readonly redirectUri: string; readonly state: string | null },
  ) {
    super(detail)
  }
}

export type { SignedInUser, StoredGrant }

const PKCE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/
const PKCE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/
const PARAMS = ['response_type', 'client_id', 'redirect_uri', 'state', 'code_challenge', 'code_challenge_method', 'scope', 'resource'] as const

export interface AuthorizationServerOptions {
  readonly issuer: () => string
  readonly resource: () => string
  readonly clients: ClientRegistry
  readonly store: OAuthStore
  readonly keyring: () => Keyring
  readonly scopesSupported: readonly string[]
  readonly codeSeconds: number
  readonly flowSeconds: number
  readonly rememberConsentSeconds: number
  readonly grantSeconds: number
}

/** Sealed-value purposes: a flow, a code and an upstream sign-in can never be swapped for each other. */
const FLOW = 'oauth-flow'
const CODE = 'oauth-code'

/** The S256 challenge of a verifier (RFC 7636 §4.2). */
export const s256 = (verifier: string): string => createHash('sha256').update(verifier, 'ascii').digest('base64url')

/** A grant's id: one per user and client, so consent is remembered per user × client. */
// Hex: an id an operator passes on a command line must never start with '-'.
export const grantIdOf = (sub: string, clientId: string): string => createHash('sha256').update(`${sub}\n${clientId}`).digest('hex').slice(0, 32)

/**
 * bastion's authorization endpoint logic, without HTTP: validating the request, carrying a flow
 * between pages (sealed under the keyring and bound to a browser cookie), remembering consent,
 * issuing single-use codes (sealed: any replica redeems them; redeemed once, recorded in the
 * store) and the grants operators list and revoke.
 * Does not check: who the user is (the sign-in methods), client authentication (the token endpoint).
 */
export class AuthorizationServer {
  readonly #o: AuthorizationServerOptions

  constructor(options: AuthorizationServerOptions) {
    this.#o = options
  }

  get clients(): ClientRegistry {
    return this.#o.clients
  }

  /**
   * Validate an authorization request. Client and redirect URI first: until both are known good,
   * errors are shown, never redirected. Then, redirected with `state` and `iss`: response type,
   * state, PKCE S256, resource, scopes.
   * @throws AuthorizeError
   */
  async validate(params: URLSearchParams): Promise<{ request: AuthorizationRequest; client: OAuthClient }> {
    for (const name of PARAMS) if (params.getAll(name).length > 1) throw new AuthorizeError('invalid_request', `repeated parameter ${name}`)
    const clientId = params.get('client_id')
    if (clientId === null || clientId === '') throw new AuthorizeError('invalid_request', 'client_id missing')
    let client: OAuthClient
    try {
      client = await this.#o.clients.resolve(clientId)
    } catch (error) {
      throw new AuthorizeError('unauthorized_client', error instanceof ClientError ? error.message : 'client unavailable')
    }
    const presented = params.get('redirect_uri')
    let redirectUri: string
    if (presented === null) {
      // OAuth 2.1 §4.1.1: optional only when the client registered exactly one.
      const [only, ...more] = client.redirectUris
      if (only === undefined || more.length > 0) throw new AuthorizeError('invalid_request', 'redirect_uri missing (the client registered several)')
      redirectUri = only
    } else {
      if (!client.redirectUris.some((r) => redirectMatches(r, presented))) throw new AuthorizeError('invalid_request', 'redirect_uri is not one the client registered')
      redirectUri = presented
    }
    const state = params.get('state')
    const fail = (error: AuthorizeError['error'], detail: string): never => {
      throw new AuthorizeError(error, detail, { redirectUri, state })
    }
    if (params.get('response_type') !== 'code') fail('unsupported_response_type', 'response_type must be code')
    if (state === null || state === '' || state.length > 1024) fail('invalid_request', 'state missing or longer than 1024 characters')
    const challenge = params.get('code_challenge')
    if (challenge === null) fail('invalid_request', 'code_challenge missing: PKCE is required')
    if (params.get('code_challenge_method') !== 'S256') fail('invalid_request', 'code_challenge_method must be S256')
    if (!PKCE_CHALLENGE.test(challenge ?? '')) fail('invalid_request', 'code_challenge is not a base64url SHA-256')
    const resource = params.get('resource')
    if (resource === null) fail('invalid_target', 'resource missing (RFC 8707)')
    if (resource !== this.#o.resource()) fail('invalid_target', 'resource is not this server')
    const scopes = this.#scopes(params.get('scope'), fail)
    return {
      client,
      request: {
        clientId: client.id,
        clientName: client.name,
        redirectUri,
        redirectUriPresented: presented !== null,
        state: state ?? '',
        codeChallenge: challenge ?? '',
        scopes,
        resource: resource ?? '',
      },
    }
  }

  #scopes(requested: string | null, fail: (e: 'invalid_scope', d: string) => never): string[] {
    if (requested === null || requested.trim() === '') return []
    // Refresh tokens are always issued: `offline_access` (asked by some clients though never
    // advertised here) adds nothing and is left out rather than refused.
    const asked = [...new Set(requested.split(' ').filter((s) => s.length > 0 && (s !== 'offline_access' || this.#o.scopesSupported.includes(s))))]
    const unknown = asked.filter((s) => !this.#o.scopesSupported.includes(s))
    if (unknown.length > 0) fail('invalid_scope', `scopes not available: ${unknown.join(' ').slice(0, 200)}`)
    return asked
  }

  /** The redirect carrying a result or an error: `state` round-tripped and `iss` always (RFC 9207). */
  responseUrl(redirectUri: string, state: string | null, params: Record<string, string>): string {
    const url = new URL(redirectUri)
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
    if (state !== null && state !== '') url.searchParams.set('state', state)
    url.searchParams.set('iss', this.#o.issuer())
    return url.href
  }

  /** A new browser binding: the cookie value, and its hash that goes into the sealed flow. */
  newBinding(): { cookie: string; hash: string } {
    const cookie = randomBytes(32).toString('base64url')
    return { cookie, hash: createHash('sha256').update(cookie).digest('base64url') }
  }

  /** Seal a flow's state for the next page (or the upstream provider's `state`). */
  seal(flow: FlowState): string {
    return this.#o.keyring().encrypt(JSON.stringify(flow), FLOW)
  }

  /**
   * Open a sealed flow; it must be unexpired and bound to this browser's cookie for it (`cookieOf`
   * finds the cookie of a flow id, which is known only once the flow is open: it is sealed).
   * @throws AuthorizeError (shown, never redirected: the flow cannot be trusted)
   */
  open(sealed: string | null, cookieOf: (flowId: string) => string | undefined): FlowState {
    if (sealed === null || sealed.length > 16_384) throw new AuthorizeError('invalid_request', 'flow missing')
    let flow: FlowState
    try {
      flow = JSON.parse(this.#o.keyring().decrypt(sealed, FLOW)) as FlowState
    } catch {
      throw new AuthorizeError('invalid_request', 'flow is not one this server made')
    }
    if (typeof flow.id !== 'string' || typeof flow.expiresAt !== 'number' || flow.expiresAt <= Date.now())
      throw new AuthorizeError('invalid_request', 'sign-in took too long: start again from the application')
    // Each flow has a cookie of its own: two sign-ins at once in one browser do not undo each other.
    const presented = createHash('sha256')
      .update(cookieOf(flow.id) ?? '')
      .digest()
    const bound = Buffer.from(typeof flow.binding === 'string' ? flow.binding : '', 'base64url')
    if (bound.length !== presented.length || !timingSafeEqual(bound, presented))
      throw new AuthorizeError('invalid_request', 'this sign-in was started in another browser or its cookie is missing (CSRF)')
    return flow
  }

  /** A fresh flow for a validated request. */
  startFlow(request: AuthorizationRequest, binding: string): FlowState {
    return { id: randomUUID(), request, binding, expiresAt: Date.now() + this.#o.flowSeconds * 1000 }
  }

  /**
   * A flow ends with one code: a consent (or sign-in) page posted again gets nothing more.
   * @throws AuthorizeError (shown) when this flow already issued its code
   */
  async spend(flow: FlowState): Promise<void> {
    const earlier = await this.#o.store.once('flow', flow.id, 1, flow.expiresAt + 60_000)
    if (earlier !== undefined) throw new AuthorizeError('invalid_request', 'this sign-in was already completed: start again from the application')
  }

  /** Has this user already consented to this client for (at least) these scopes? */
  async consented(user: SignedInUser, request: AuthorizationRequest): Promise<boolean> {
    if (this.#o.rememberConsentSeconds === 0) return false
    const grant = parseGrant(await this.#o.store.get('grant', grantIdOf(user.sub, request.clientId)))
    if (grant === undefined || grant.user.sub !== user.sub || grant.clientId !== request.clientId) return false
    return request.scopes.every((s) => grant.scopes.includes(s)) && grant.lastUsedAt + this.#o.rememberConsentSeconds * 1000 > Date.now()
  }

  /** Record consent (merging scopes with an earlier grant) and issue the code. */
  async issueCode(user: SignedInUser, request: AuthorizationRequest): Promise<string> {
    const grantId = grantIdOf(user.sub, request.clientId)
    const before = parseGrant(await this.#o.store.get('grant', grantId))
    const now = Date.now()
    const grant: StoredGrant = {
      id: grantId,
      user,
      clientId: request.clientId,
      clientName: request.clientName,
      scopes: [...new Set([...(before?.scopes ?? []), ...request.scopes])],
      createdAt: before?.createdAt ?? now,
      lastUsedAt: now,
      families: before?.families ?? [],
    }
    await this.#o.store.put('grant', grantId, grant, now + this.#o.grantSeconds * 1000)
    const code: CodeGrant = { ...request, id: randomUUID(), user, grantId, expiresAt: now + this.#o.codeSeconds * 1000 }
    return this.#o.keyring().encrypt(JSON.stringify(code), CODE)
  }

  /**
   * Redeem a code once (OAuth 2.1 §4.1.3): the client, redirect URI and PKCE verifier must match
   * what it was issued for. `first` is false when it was redeemed before, with what that
   * redemption issued (the caller revokes it).
   * @throws Error with an `invalid_grant` / `invalid_request` detail
   */
  async redeem(
    code: string,
    clientId: string,
    redirectUri: string | null,
    verifier: string | null,
    issued: RedemptionRecord,
  ): Promise<{ first: true; grant: CodeGrant } | { first: false; earlier: RedemptionRecord | undefined; grant: CodeGrant }> {
    let grant: CodeGrant
    try {
      grant = JSON.parse(this.#o.keyring().decrypt(code, CODE)) as CodeGrant
    } catch {
      throw new GrantError('invalid_grant', 'unknown authorization code')
    }
    if (grant.clientId !== clientId) throw new GrantError('invalid_grant', 'code issued to another client')
    if (grant.expiresAt <= Date.now()) throw new GrantError('invalid_grant', 'authorization code expired')
    if (redirectUri === null ? grant.redirectUriPresented !== false : redirectUri !== grant.redirectUri)
      throw new GrantError('invalid_grant', 'redirect_uri does not match the authorization request')
    if (verifier === null || !PKCE_VERIFIER.test(verifier)) throw new GrantError('invalid_grant', 'code_verifier missing or malformed')
    const a = Buffer.from(s256(verifier))
    const b = Buffer.from(grant.codeChallenge)
    if (a.length !== b.length || !timingSafeEqual(a, b)) throw new GrantError('invalid_grant', 'code_verifier does not match the code_challenge')
    // Remembered past the code's life, so a late replay is still recognised as one.
    const earlier = await this.#o.store.once('code', grant.id, issued, grant.expiresAt + 3_600_000)
    if (earlier !== undefined) return { first: false, earlier: parseRedemption(earlier), grant }
    return { first: true, grant }
  }

  /** The grant a refresh token was issued under, if it still stands. */
  async grant(id: string): Promise<StoredGrant | undefined> {
    return parseGrant(await this.#o.store.get('grant', id))
  }

  /** Note a refresh family under its grant (so revoking the grant revokes it). */
  async addFamily(grantId: string, family: string): Promise<void> {
    const grant = await this.grant(grantId)
    if (grant === undefined) return
    const families = [...grant.families.slice(-49), family]
    await this.#o.store.put('grant', grantId, { ...grant, families, lastUsedAt: Date.now() }, Date.now() + this.#o.grantSeconds * 1000)
  }
}

/** What the token endpoint issued for a code: revoked if the code is ever presented again. */
export interface RedemptionRecord {
  readonly family: string
  readonly jti: string
  readonly until: number
}

/** A token endpoint refusal with its RFC 6749 §5.2 code. */
export class GrantError extends Error {
  constructor(
    readonly error: 'invalid_grant' | 'invalid_request',
    readonly detail: string,
  ) {
    super(detail)
  }
}

/** The state a flow carries between pages; sealed, never trusted from the browser otherwise. */
export interface FlowState {
  /** Spent once, when the flow's code is issued. */
  readonly id: string
  readonly request: AuthorizationRequest
  /** base64url SHA-256 of the browser's flow cookie. */
  readonly binding: string
  readonly expiresAt: number
  readonly user?: SignedInUser
  /** OpenID sign-in in progress: PKCE verifier and nonce for the provider. */
  readonly upstream?: { readonly verifier: string; readonly nonce: string }
}

function parseRedemption(value: unknown): RedemptionRecord | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const r = value as RedemptionRecord
  return typeof r.family === 'string' && typeof r.jti === 'string' && typeof r.until === 'number' ? r : undefined
}
