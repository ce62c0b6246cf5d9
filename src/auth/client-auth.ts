import { createLocalJWKSet, decodeJwt, type JSONWebKeySet, jwtVerify } from 'jose'
import type { SecurityErrorCode } from '../errors.js'
import type { Exchange } from '../pipeline/exchange.js'
import type { Principal } from '../principal.js'
import { parseApiKey } from './api-key.js'
import type { ApiKeyAuthenticator } from './authenticate.js'
import { ClientError, type ClientRegistry, type OAuthClient, secretMatches } from './oauth-clients.js'
import type { OAuthStore } from './oauth-store.js'
import { FetchRefused, freshFor, type SafeFetchOptions, safeFetch } from './safe-fetch.js'

/** An RFC 6749 §5.2 error: the only shape the token endpoints answer failures with. */
export class OAuthError extends Error {
  constructor(
    readonly error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unsupported_grant_type' | 'invalid_scope' | 'invalid_target' | 'unauthorized_client',
    readonly status: number,
    readonly detail: string,
    /** The audit's reason, where it says more than the OAuth error (a revoked key, a revoked grant). */
    readonly reason?: SecurityErrorCode,
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

/**
 * A POSTed `application/x-www-form-urlencoded` body, each parameter at most once (RFC 6749 §3.2).
 * @throws OAuthError
 */
export async function readForm(ctx: Exchange): Promise<URLSearchParams> {
  const request = ctx.http?.request
  if (request === undefined) throw new OAuthError('invalid_request', 400, 'HTTP only')
  if (request.method !== 'POST') throw new OAuthError('invalid_request', 405, 'POST only')
  if (!(request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded'))
    throw new OAuthError('invalid_request', 400, 'form-encoded body required')
  const form = new URLSearchParams(await formText(request))
  for (const [name] of form) if (form.getAll(name).length > 1) throw new OAuthError('invalid_request', 400, `repeated parameter ${name}`)
  return form
}

/** Who is calling the token endpoint: an API key (client credentials) or an OAuth client. */
export type TokenClient = { readonly kind: 'api-key'; readonly principal: Principal; readonly keyId: string } | { readonly kind: 'oauth'; readonly client: OAuthClient }

export interface ClientAuthDeps {
  readonly apiKeys: ApiKeyAuthenticator
  readonly clients: ClientRegistry | undefined
  readonly store: OAuthStore | undefined
  /** Audiences a `private_key_jwt` assertion may name: the token endpoint and the issuer. */
  readonly audiences: () => string[]
  readonly fetch: SafeFetchOptions
}

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/**
 * Authenticate the client of a token or revocation request (RFC 6749 §2.3, RFC 7523 §2.2):
 * - an API key: client id = the key's id, secret = the whole key (basic or post);
 * - an OAuth client by its registered method: `none` (a public client: `client_id` only, and
 *   then no secret may be sent), a client secret (basic or post, compared in constant time), or
 *   `private_key_jwt` (an assertion signed with a key of the client's JWKS, audience the token
 *   endpoint or the issuer, at most 5 minutes old, its `jti` used once).
 * Exactly one method per request.
 * Does not check: the grant (the grant handlers do).
 * @throws OAuthError invalid_client (401) or invalid_request
 */
export async function authenticateClient(form: URLSearchParams, request: Request, deps: ClientAuthDeps): Promise<TokenClient> {
  const basic = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(request.headers.get('authorization') ?? '')?.[1]
  const assertion = form.get('client_assertion')
  const methods = [basic !== undefined, form.has('client_secret'), assertion !== null].filter(Boolean).length
  if (methods > 1) throw new OAuthError('invalid_request', 400, 'two client authentication methods')
  let id: string | undefined
  let secret: string | undefined
  if (basic !== undefined) {
    const decoded = Buffer.from(basic, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) throw new OAuthError('invalid_client', 401, 'malformed Basic credentials')
    try {
      id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '))
      secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '))
    } catch {
      throw new OAuthError('invalid_client', 401, 'malformed Basic credentials')
    }
    const formId = form.get('client_id')
    if (formId !== null && formId !== id) throw new OAuthError('invalid_request', 400, 'client_id differs from the Basic credentials')
  } else {
    id = form.get('client_id') ?? undefined
    secret = form.get('client_secret') ?? undefined
  }
  if (assertion !== null) return privateKeyJwt(form, assertion, deps)
  if (id === undefined) throw new OAuthError('invalid_client', 401, 'client authentication required')
  if (secret !== undefined && parseApiKey(secret) !== undefined) {
    const parsed = parseApiKey(secret)
    if (parsed === undefined || parsed.id !== id) throw new OAuthError('invalid_client', 401, 'client id and secret do not match')
    try {
      return { kind: 'api-key', principal: deps.apiKeys.verify(secret), keyId: parsed.id }
    } catch (error) {
      throw new OAuthError('invalid_client', 401, error instanceof Error ? error.message : 'invalid client')
    }
  }
  const client = await resolveClient(deps, id)
  if (client.authMethod === 'none') {
    if (secret !== undefined) throw new OAuthError('invalid_client', 401, 'a public client sent a secret')
    return { kind: 'oauth', client }
  }
  if (client.authMethod === 'private_key_jwt') throw new OAuthError('invalid_client', 401, 'this client authenticates with private_key_jwt')
  if (secret === undefined || client.secretHash === undefined || !secretMatches(secret, client.secretHash))
    throw new OAuthError('invalid_client', 401, secret === undefined ? 'client secret required' : 'wrong client secret')
  return { kind: 'oauth', client }
}

async function resolveClient(deps: ClientAuthDeps, id: string): Promise<OAuthClient> {
  if (deps.clients === undefined) throw new OAuthError('invalid_client', 401, 'unknown client')
  try {
    return await deps.clients.resolve(id)
  } catch (error) {
    throw new OAuthError('invalid_client', 401, error instanceof ClientError ? error.message : 'unknown client')
  }
}

const jwksCache = new Map<string, { keys: ReturnType<typeof createLocalJWKSet>; until: number }>()

async function clientKeys(client: OAuthClient, fetchOptions: SafeFetchOptions): Promise<ReturnType<typeof createLocalJWKSet>> {
  if (client.jwks !== undefined) return createLocalJWKSet(client.jwks as JSONWebKeySet)
  if (client.jwksUri === undefined) throw new OAuthError('invalid_client', 401, 'client has no keys')
  const cached = jwksCache.get(client.jwksUri)
  if (cached !== undefined && cached.until > Date.now()) return cached.keys
  try {
    const response = await safeFetch(new URL(client.jwksUri), fetchOptions)
    if (response.status !== 200) throw new FetchRefused(`answered HTTP ${response.status}`)
    const set = JSON.parse(response.body.toString('utf8')) as JSONWebKeySet
    if (set === null || typeof set !== 'object' || !Array.isArray(set.keys)) throw new FetchRefused('not a JWK set')
    const keys = createLocalJWKSet(set)
    if (jwksCache.size > 1000) jwksCache.clear()
    jwksCache.set(client.jwksUri, { keys, until: Date.now() + Math.min(freshFor(response.headers, 3600), 3600) * 1000 })
    return keys
  } catch (error) {
    throw new OAuthError('invalid_client', 401, `client JWKS: ${error instanceof FetchRefused ? error.message : 'unusable'}`)
  }
}

async function privateKeyJwt(form: URLSearchParams, assertion: string, deps: ClientAuthDeps): Promise<TokenClient> {
  if (form.get('client_assertion_type') !== JWT_BEARER) throw new OAuthError('invalid_request', 400, `client_assertion_type must be ${JWT_BEARER}`)
  let claims: ReturnType<typeof decodeJwt>
  try {
    claims = decodeJwt(assertion)
  } catch {
    throw new OAuthError('invalid_client', 401, 'client_assertion is not a JWT')
  }
  const id = claims.iss
  if (typeof id !== 'string' || claims.sub !== id) throw new OAuthError('invalid_client', 401, 'client_assertion iss and sub must both be the client id')
  const formId = form.get('client_id')
  if (formId !== null && formId !== id) throw new OAuthError('invalid_client', 401, 'client_id differs from the assertion')
  const client = await resolveClient(deps, id)
  if (client.authMethod !== 'private_key_jwt') throw new OAuthError('invalid_client', 401, 'this client does not authenticate with private_key_jwt')
  const keys = await clientKeys(client, deps.fetch)
  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload']
  try {
    payload = (
      await jwtVerify(assertion, keys, {
        issuer: id,
        subject: id,
        audience: deps.audiences(),
        algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
        maxTokenAge: '5m',
        clockTolerance: 30,
        requiredClaims: ['exp', 'jti'],
      })
    ).payload
  } catch (error) {
    throw new OAuthError('invalid_client', 401, `client_assertion: ${error instanceof Error ? error.message : 'invalid'}`)
  }
  const jti = typeof payload.jti === 'string' ? payload.jti.slice(0, 200) : ''
  if (deps.store === undefined || jti === '') throw new OAuthError('invalid_client', 401, 'client_assertion jti missing')
  const earlier = await deps.store.once('assertion', `${id.slice(0, 200)}#${Buffer.from(jti).toString('base64url')}`.slice(0, 512), 1, ((payload.exp ?? 0) + 60) * 1000)
  if (earlier !== undefined) throw new OAuthError('invalid_client', 401, 'client_assertion replayed (jti seen before)')
  return { kind: 'oauth', client }
}
