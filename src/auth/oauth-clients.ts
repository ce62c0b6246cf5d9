import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { OAuthStore } from './oauth-store.js'
import { isNativeRedirect, redirectKind } from './redirect-uri.js'
import { FetchRefused, freshFor, type SafeFetchOptions, safeFetch } from './safe-fetch.js'

export type ClientAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'

/** An OAuth client of the authorization server, however it became known. */
export interface OAuthClient {
  readonly id: string
  readonly name: string
  /** `metadata-document` (CIMD), `registered` (RFC 7591), `configured` (auth.clients.registered). */
  readonly source: 'metadata-document' | 'registered' | 'configured'
  readonly redirectUris: readonly string[]
  readonly authMethod: ClientAuthMethod
  /** SHA-256 (hex) of the client secret, for the secret methods. */
  readonly secretHash?: string
  /** private_key_jwt: where the client's public keys are (its metadata document's `jwks_uri`) or the keys. */
  readonly jwksUri?: string
  readonly jwks?: { keys: unknown[] }
  /** The client's home page (`client_uri`), shown on the consent page. */
  readonly uri?: string
}

/** Why a client is unknown or unusable: the text goes to the audit line and the error page. */
export class ClientError extends Error {
  override readonly name = 'ClientError'
}

export const hashSecret = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex')

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(presented: string, hash: string): boolean {
  const a = Buffer.from(hashSecret(presented), 'hex')
  const b = Buffer.from(/^[0-9a-f]{64}$/.test(hash) ? hash : '0'.repeat(64), 'hex')
  return timingSafeEqual(a, b)
}

/**
 * Is this a Client ID Metadata Document URL: HTTPS (or loopback HTTP with the development
 * allowance), a path other than `/`, no fragment, user information or dot segments?
 */
export function isMetadataDocumentUrl(id: string, allowLoopback: boolean): boolean {
  if (id.length > 2048) return false
  let url: URL
  try {
    url = new URL(id)
  } catch {
    return false
  }
  if (url.href !== id) return false
  const loopbackHttp = allowLoopback && url.protocol === 'http:' && redirectKind(`${url.origin}/`) === 'loopback'
  if (url.protocol !== 'https:' && !loopbackHttp) return false
  if (url.pathname === '/' || url.hash !== '' || id.includes('#') || url.username !== '' || url.password !== '') return false
  return !/\/\.\.?(\/|$)/.test(url.pathname)
}

export interface ClientRegistryOptions {
  readonly configured: readonly OAuthClient[]
  readonly store: OAuthStore
  readonly metadataDocuments: boolean
  readonly allowedDomains: readonly string[]
  readonly fetch: SafeFetchOptions
  readonly cacheSeconds: number
  readonly registration: { readonly mode: 'off' | 'loopback' | 'on'; readonly unusedSeconds: number; readonly maxClients: number }
  /** Audit a metadata document fetch (ok or failed). */
  readonly onFetch: (clientId: string, outcome: { ok: true } | { ok: false; why: string }) => void
}

const GRANTS = new Set(['authorization_code', 'refresh_token'])
const MAX_CACHED = 1000

/**
 * Every client the authorization server knows: configured ones, RFC 7591 registrations, and
 * Client ID Metadata Documents fetched on first use (SSRF-safe, see safeFetch) and cached per
 * their Cache-Control, capped. Does not check: redirect URIs of a request (see redirect-uri.ts)
 * or client authentication (the token endpoint does).
 */
export class ClientRegistry {
  readonly #o: ClientRegistryOptions
  readonly #configured: Map<string, OAuthClient>
  readonly #cache = new Map<string, { client: OAuthClient; until: number }>()

  constructor(options: ClientRegistryOptions) {
    this.#o = options
    this.#configured = new Map(options.configured.map((c) => [c.id, c]))
  }

  get registrationMode(): 'off' | 'loopback' | 'on' {
    return this.#o.registration.mode
  }

  /** @throws ClientError */
  async resolve(clientId: string): Promise<OAuthClient> {
    const configured = this.#configured.get(clientId)
    if (configured !== undefined) return configured
    if (clientId.startsWith('dcr_')) {
      const stored = parseStoredClient(await this.#o.store.get('client', clientId))
      if (stored === undefined) throw new ClientError('unknown or expired registered client')
      // Expiring when unused: every use moves the expiry on.
      await this.#o.store.put('client', clientId, stored, Date.now() + this.#o.registration.unusedSeconds * 1000)
      return stored
    }
    if (isMetadataDocumentUrl(clientId, this.#o.fetch.allowLoopback)) {
      if (!this.#o.metadataDocuments) throw new ClientError('client metadata documents are disabled')
      return this.#metadataDocument(clientId)
    }
    throw new ClientError('unknown client')
  }

  async #metadataDocument(clientId: string): Promise<OAuthClient> {
    const now = Date.now()
    const cached = this.#cache.get(clientId)
    if (cached !== undefined && cached.until > now) return cached.client
    const url = new URL(clientId)
    if (!this.#domainAllowed(url.hostname)) throw new ClientError(`metadata document host ${url.hostname} is not in auth.clients.allowedDomains`)
    let client: OAuthClient
    let seconds: number
    try {
      const response = await safeFetch(url, this.#o.fetch)
      if (response.status !== 200) throw new ClientError(`metadata document answered HTTP ${response.status}`)
      client = parseMetadataDocument(clientId, response.body)
      seconds = freshFor(response.headers, this.#o.cacheSeconds)
      this.#o.onFetch(clientId, { ok: true })
    } catch (error) {
      const why = error instanceof ClientError || error instanceof FetchRefused ? error.message : 'metadata document fetch failed'
      this.#o.onFetch(clientId, { ok: false, why })
      throw new ClientError(`client metadata document: ${why}`)
    }
    if (seconds > 0) {
      if (this.#cache.size >= MAX_CACHED) this.#cache.delete(this.#cache.keys().next().value ?? '')
      this.#cache.set(clientId, { client, until: now + seconds * 1000 })
    }
    return client
  }

  #domainAllowed(host: string): boolean {
    const allowed = this.#o.allowedDomains
    if (allowed.length === 0) return true
    return allowed.some((d) => (d.startsWith('*.') ? host.endsWith(d.slice(1)) && host.length > d.length - 1 : host === d))
  }

  /**
   * RFC 7591 §3.1: validate and store a registration. Returns the response body (with the secret,
   * once, for a confidential client). @throws ClientError with an RFC 7591 §3.2.2 error code prefix
   */
  async register(metadata: unknown): Promise<Record<string, unknown>> {
    const mode = this.#o.registration.mode
    if (mode === 'off') throw new ClientError('invalid_client_metadata: registration is off')
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw new ClientError('invalid_client_metadata: not a JSON object')
    const m = metadata as Record<string, unknown>
    const redirectUris = m.redirect_uris
    if (!Array.isArray(redirectUris) || redirectUris.length === 0 || redirectUris.length > 10 || !redirectUris.every((u) => typeof u === 'string'))
      throw new ClientError('invalid_redirect_uri: redirect_uris must list 1 to 10 URIs')
    for (const uri of redirectUris as string[]) {
      const kind = redirectKind(uri)
      if (typeof kind === 'object') throw new ClientError(`invalid_redirect_uri: ${kind.refused}`)
      if (mode === 'loopback' && !isNativeRedirect(uri))
        throw new ClientError('invalid_redirect_uri: this server registers native clients only (loopback or private-use redirect URIs)')
    }
    const method = m.token_endpoint_auth_method ?? 'none'
    if (method !== 'none' && method !== 'client_secret_basic' && method !== 'client_secret_post')
      throw new ClientError('invalid_client_metadata: token_endpoint_auth_method must be none, client_secret_basic or client_secret_post')
    checkGrants(m)
    const name = typeof m.client_name === 'string' && m.client_name.trim() !== '' ? m.client_name.trim().slice(0, 100) : 'unnamed client'
    const uri = typeof m.client_uri === 'string' && redirectKind(m.client_uri) === 'https' ? m.client_uri : undefined
    const existing = await this.#o.store.list('client')
    if (existing.length >= this.#o.registration.maxClients) throw new ClientError('invalid_client_metadata: too many registered clients')
    const id = `dcr_${randomBytes(16).toString('base64url')}`
    const secret = method === 'none' ? undefined : `bscs_${randomBytes(32).toString('base64url')}`
    const client: OAuthClient = {
      id,
      name,
      source: 'registered',
      redirectUris: redirectUris as string[],
      authMethod: method,
      ...(secret === undefined ? {} : { secretHash: hashSecret(secret) }),
      ...(uri === undefined ? {} : { uri }),
    }
    await this.#o.store.put('client', id, client, Date.now() + this.#o.registration.unusedSeconds * 1000)
    return {
      client_id: id,
      client_id_issued_at: Math.floor(Date.now() / 1000),
      ...(secret === undefined ? {} : { client_secret: secret, client_secret_expires_at: 0 }),
      client_name: name,
      redirect_uris: client.redirectUris,
      token_endpoint_auth_method: method,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      ...(uri === undefined ? {} : { client_uri: uri }),
    }
  }
}

function checkGrants(m: Record<string, unknown>): void {
  const grants = m.grant_types ?? ['authorization_code']
  if (!Array.isArray(grants) || !grants.every((g) => typeof g === 'string' && GRANTS.has(g)))
    throw new ClientError('invalid_client_metadata: grant_types may hold authorization_code and refresh_token only')
  const responses = m.response_types ?? ['code']
  if (!Array.isArray(responses) || !responses.every((r) => r === 'code')) throw new ClientError('invalid_client_metadata: response_types may hold code only')
}

function parseStoredClient(value: unknown): OAuthClient | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const c = value as OAuthClient
  if (typeof c.id !== 'string' || typeof c.name !== 'string' || !Array.isArray(c.redirectUris) || typeof c.authMethod !== 'string') return undefined
  return c
}

/**
 * A Client ID Metadata Document, validated: a JSON object whose `client_id` equals the URL it was
 * fetched from exactly, with acceptable `redirect_uris`, a public-client or `private_key_jwt`
 * authentication method (a document cannot hold a shared secret), and code-flow grants only.
 * @throws ClientError
 */
export function parseMetadataDocument(url: string, body: Buffer): OAuthClient {
  let doc: unknown
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch {
    throw new ClientError('not a JSON document')
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ClientError('not a JSON object')
  const d = doc as Record<string, unknown>
  if (d.client_id !== url) throw new ClientError('its client_id is not the URL it was fetched from')
  const redirectUris = d.redirect_uris
  if (!Array.isArray(redirectUris) || redirectUris.length === 0 || redirectUris.length > 20 || !redirectUris.every((u) => typeof u === 'string'))
    throw new ClientError('redirect_uris must list 1 to 20 URIs')
  for (const uri of redirectUris as string[]) {
    const kind = redirectKind(uri)
    if (typeof kind === 'object') throw new ClientError(`redirect URI refused: ${kind.refused}`)
  }
  const method = d.token_endpoint_auth_method ?? 'none'
  if (method !== 'none' && method !== 'private_key_jwt') throw new ClientError('token_endpoint_auth_method must be none or private_key_jwt')
  if (d.client_secret !== undefined) throw new ClientError('a metadata document must not hold a client_secret')
  checkGrants(d)
  let jwksUri: string | undefined
  let jwks: { keys: unknown[] } | undefined
  if (method === 'private_key_jwt') {
    if (typeof d.jwks_uri === 'string' && redirectKind(d.jwks_uri) === 'https') jwksUri = d.jwks_uri
    else if (d.jwks !== null && typeof d.jwks === 'object' && Array.isArray((d.jwks as { keys?: unknown }).keys)) jwks = d.jwks as { keys: unknown[] }
    else throw new ClientError('private_key_jwt needs an https jwks_uri or jwks')
  }
  const name = typeof d.client_name === 'string' && d.client_name.trim() !== '' ? d.client_name.trim().slice(0, 100) : new URL(url).hostname
  const uri = typeof d.client_uri === 'string' && redirectKind(d.client_uri) === 'https' ? d.client_uri : undefined
  return {
    id: url,
    name,
    source: 'metadata-document',
    redirectUris: redirectUris as string[],
    authMethod: method,
    ...(jwksUri === undefined ? {} : { jwksUri }),
    ...(jwks === undefined ? {} : { jwks }),
    ...(uri === undefined ? {} : { uri }),
  }
}
