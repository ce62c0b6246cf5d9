import type { Logger } from 'pino'
import type { AuditLog } from '../audit/audit-log.js'
import { ConfigError, type LoadedConfig, readSecret, resolvePath, statePath } from '../config/load.js'
import { secureUrl } from '../config/urls.js'
import { weakSecretReason } from '../doctor/weak-secret.js'
import type { Keyring } from '../protect/keyring.js'
import { ApiKeyAuthenticator } from './authenticate.js'
import { Authenticator } from './authenticator.js'
import { AuthorizationServer } from './authorization-server.js'
import { BruteForce } from './brute-force.js'
import { listGrants, revokeGrant, type StoredGrant } from './grants.js'
import { Introspector } from './introspection.js'
import { type IssuerOptions, JwtVerifier, jwksFromFile, staticJwks } from './jwt.js'
import type { KeyStore } from './key-store.js'
import { ClientRegistry, hashSecret, type OAuthClient } from './oauth-clients.js'
import { FileOAuthStore, type OAuthStore, RedisOAuthStore } from './oauth-store.js'
import { OidcLogin } from './oidc-login.js'
import { redirectKind } from './redirect-uri.js'
import { FileRefreshStore, RedisRefreshStore, type RefreshStore } from './refresh-store.js'
import type { ResourceServer } from './resource-metadata.js'
import { SigningKeys } from './signing-keys.js'
import { TokenCache } from './token-cache.js'
import { TokenService } from './token-service.js'

export interface AuthSetup {
  readonly apiKeys: ApiKeyAuthenticator
  readonly authenticator: Authenticator
  readonly bruteForce: BruteForce
  readonly cache: TokenCache
  readonly resourceServer: ResourceServer | undefined
  readonly tokenService: TokenService | undefined
  readonly signingKeys: SigningKeys | undefined
  /** The authorization endpoint's logic, when the token service is on. */
  readonly authorization: AuthorizationServer | undefined
  /** Sign-in through an OpenID provider (auth.login.oidc). */
  readonly oidcLogin: OidcLogin | undefined
  /** The RFC 7591 initial access token, when registrations need one. */
  readonly registrationToken: string | undefined
  /** Standing grants (users' consents to clients), when the token service is on: the console lists and revokes them. */
  readonly grants: GrantAdmin | undefined
  close(): Promise<void>
}

/** Listing and revoking standing grants in the stores a running server holds open. */
export interface GrantAdmin {
  list(): Promise<StoredGrant[]>
  /** The grant revoked (its refresh families and access tokens too), or undefined when none has that id. */
  revoke(id: string): Promise<StoredGrant | undefined>
}

/**
 * The token service's stores, from config: refresh tokens and the authorization server's records,
 * in the state folder or in Redis (shared by replicas). The CLI opens the same ones.
 */
export function authorizationStores(
  loaded: LoadedConfig,
  env: NodeJS.ProcessEnv,
  onError?: (e: Error, what: string) => void,
): { refresh: RefreshStore; oauth: OAuthStore; ready(timeoutMs: number): Promise<boolean> } {
  const ts = loaded.config.auth.tokenService
  if (ts.store === 'redis' && ts.redis !== undefined) {
    const url = readSecret(loaded, ts.redis.url, 'auth.tokenService.redis.url', env)
    const refresh = new RedisRefreshStore(url, ts.redis.keyPrefix, (e) => onError?.(e, 'token store'))
    const oauth = new RedisOAuthStore(url, ts.redis.keyPrefix, (e) => onError?.(e, 'authorization store'))
    return { refresh, oauth, ready: async (ms) => (await Promise.all([refresh.ready(ms), oauth.ready(ms)])).every(Boolean) }
  }
  return {
    refresh: new FileRefreshStore(statePath(loaded, ts.refreshTokensFile)),
    oauth: new FileOAuthStore(statePath(loaded, ts.authorizationFile)),
    ready: async () => true,
  }
}

/**
 * Everything that turns a credential into a principal, from config: API keys, trusted JWT issuers,
 * introspection, bastion's own token service, the verified-token cache and brute-force counters.
 * @throws ConfigError naming the key, for unusable settings (short HS256 secrets, plain-HTTP key
 *   endpoints, unreadable key files)
 */
export async function setupAuth(input: {
  loaded: LoadedConfig
  env: NodeJS.ProcessEnv
  keys: KeyStore
  audit: AuditLog
  log: Logger
  /** This server's resource URI, once known. */
  resource: () => string | undefined
  keyring: () => Keyring
}): Promise<AuthSetup> {
  const { loaded, env } = input
  const { auth } = loaded.config
  const source = loaded.source
  const apiKeys = new ApiKeyAuthenticator(input.keys)
  const resource = (): string => input.resource() ?? ''
  const audienceOf = (configured: readonly string[] | undefined) => (configured === undefined ? () => [resource()].filter((r) => r !== '') : () => configured)
  const issuers = auth.issuers.map((c, i): IssuerOptions => {
    const where = `auth.issuers.${i}`
    let keys: IssuerOptions['keys']
    try {
      if (c.jwksUri !== undefined) keys = { remote: secureUrl(loaded, `${where}.jwksUri`, c.jwksUri), cooldownMs: c.jwksCooldownSeconds * 1000, timeoutMs: c.jwksTimeoutMs }
      else if (c.jwksFile !== undefined) keys = { jwks: jwksFromFile(resolvePath(loaded, c.jwksFile)) }
      else if (c.keys !== undefined)
        keys = { jwks: staticJwks(c.keys.map((k, j) => ('pem' in k ? { pem: readSecret(loaded, k.pem, `${where}.keys.${j}.pem`, env) } : { jwk: k.jwk }))) }
      else {
        if (c.secret === undefined) throw new ConfigError(`config ${source}: ${where}: give jwksUri, jwksFile, keys or secret`)
        const secret = Buffer.from(readSecret(loaded, c.secret, `${where}.secret`, env), 'utf8')
        // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
        if (secret.length < 32) throw new ConfigError(`config ${source}: ${where}.secret: an HS256 secret must be at least 32 bytes (got ${secret.length})`)
        const weak = c.dangerouslyAllowWeakSecret ? undefined : weakSecretReason(secret.toString('utf8'))
        if (weak !== undefined)
          throw new ConfigError(`config ${source}: ${where}.secret: refused, ${weak}; use a random one (openssl rand -base64 32), or set ${where}.dangerouslyAllowWeakSecret: true`)
        keys = { secret: new Uint8Array(secret) }
      }
    } catch (error) {
      if (error instanceof ConfigError) throw error
      throw new ConfigError(`config ${source}: ${where}: ${error instanceof Error ? error.message : 'unusable keys'}`)
    }
    return {
      name: c.name,
      issuer: c.issuer,
      audience: audienceOf(c.audience),
      algorithms: c.algorithms,
      keys,
      requireTyp: c.requireTyp,
      clockSkewSeconds: c.clockSkewSeconds,
      maxLifetimeSeconds: c.maxLifetimeSeconds,
      claims: c.claims,
      defaultRoles: c.defaultRoles,
    }
  })
  const ts = auth.tokenService
  let signingKeys: SigningKeys | undefined
  let store: RefreshStore | undefined
  let oauthStore: OAuthStore | undefined
  const selfIssuer = (): string => {
    const r = resource()
    return r === '' ? '' : new URL(r).origin
  }
  if (ts.enabled) {
    signingKeys = new SigningKeys(statePath(loaded, ts.signingKeysFile), ts.accessTokenSeconds, input.keyring)
    await signingKeys.init()
    const stores = authorizationStores(loaded, env, (e, what) => input.log.warn({ err: { message: e.message } }, what))
    if (!(await stores.ready(2000))) input.log.warn('token store: Redis is not reachable; the token endpoints fail closed until it is')
    store = stores.refresh
    oauthStore = stores.oauth
  }
  let authorization: AuthorizationServer | undefined
  const clientsConfig = auth.clients
  if (clientsConfig.dangerouslyAllowLoopbackMetadata)
    input.log.warn('auth.clients.dangerouslyAllowLoopbackMetadata: client metadata documents are fetched from loopback addresses, over plain HTTP too (development only)')
  const fetchOptions = { timeoutMs: clientsConfig.metadataTimeoutMs, maxBytes: clientsConfig.metadataMaxBytes, allowLoopback: clientsConfig.dangerouslyAllowLoopbackMetadata }
  if (oauthStore !== undefined) {
    const configured = clientsConfig.registered.map((c, i): OAuthClient => {
      for (const [j, uri] of c.redirectUris.entries()) {
        const kind = redirectKind(uri)
        if (typeof kind === 'object') throw new ConfigError(`config ${source}: auth.clients.registered.${i}.redirectUris.${j}: ${kind.refused}`)
      }
      const secret = c.secret === undefined ? undefined : readSecret(loaded, c.secret, `auth.clients.registered.${i}.secret`, env)
      if (secret !== undefined && secret.length < 32) throw new ConfigError(`config ${source}: auth.clients.registered.${i}.secret: at least 32 characters`)
      return {
        id: c.clientId,
        name: c.name,
        source: 'configured',
        redirectUris: c.redirectUris,
        authMethod: secret === undefined ? 'none' : 'client_secret_basic',
        ...(secret === undefined ? {} : { secretHash: hashSecret(secret) }),
      }
    })
    const audit = input.audit
    const clients = new ClientRegistry({
      configured,
      store: oauthStore,
      metadataDocuments: clientsConfig.metadataDocuments,
      allowedDomains: clientsConfig.allowedDomains,
      fetch: fetchOptions,
      cacheSeconds: clientsConfig.metadataCacheSeconds,
      registration: clientsConfig.registration,
      onFetch: (clientId, outcome) =>
        audit.record({
          event: outcome.ok ? 'oauth.client_fetched' : 'oauth.client_fetch_failed',
          principal: `client:${clientId.slice(0, 200)}`,
          decision: outcome.ok ? 'allow' : 'deny',
          reason: outcome.ok ? 'OK' : 'ERR_AUTH_INVALID',
          ...(outcome.ok ? {} : { cause: outcome.why }),
        }),
    })
    authorization = new AuthorizationServer({
      issuer: selfIssuer,
      resource,
      clients,
      store: oauthStore,
      keyring: input.keyring,
      scopesSupported: auth.scopes.supported,
      codeSeconds: ts.authorizationCodeSeconds,
      flowSeconds: auth.login.flowSeconds,
      rememberConsentSeconds: auth.login.rememberConsentSeconds,
      grantSeconds: ts.refreshTokenSeconds,
    })
  }
  const keysForSelf = signingKeys
  const jwt =
    issuers.length > 0 || keysForSelf !== undefined
      ? new JwtVerifier(
          issuers,
          keysForSelf === undefined
            ? undefined
            : {
                issuer: selfIssuer,
                options: {
                  name: 'key',
                  issuer: 'self',
                  audience: () => [resource()].filter((r) => r !== ''),
                  algorithms: ['ES256'],
                  keys: { resolver: keysForSelf.keySet() },
                  requireTyp: true,
                  clockSkewSeconds: 30,
                  maxLifetimeSeconds: ts.accessTokenSeconds,
                  claims: { roles: 'roles', tenant: 'tenant' },
                  defaultRoles: [],
                },
              },
        )
      : undefined
  const introspection = auth.introspection[0]
  const introspector =
    introspection === undefined
      ? undefined
      : new Introspector({
          name: introspection.name,
          endpoint: secureUrl(loaded, 'auth.introspection.0.endpoint', introspection.endpoint),
          clientId: introspection.clientId,
          clientSecret: readSecret(loaded, introspection.clientSecret, 'auth.introspection.0.clientSecret', env),
          audience: audienceOf(introspection.audience),
          cacheSeconds: introspection.cacheSeconds,
          timeoutMs: introspection.timeoutMs,
          claims: introspection.claims,
          defaultRoles: introspection.defaultRoles,
        })
  const cache = new TokenCache(auth.tokenCache.maxEntries)
  const revocations = store
  const authenticator = new Authenticator({
    apiKeys,
    jwt,
    introspection: introspector,
    cache,
    isRevoked: revocations === undefined ? async () => false : (jti) => revocations.isRevoked(jti),
    isFamilyRevoked: revocations === undefined ? async () => false : (family) => revocations.isFamilyRevoked(family),
  })
  const tokensAccepted = jwt !== undefined || introspector !== undefined
  const resourceServer: ResourceServer | undefined = tokensAccepted
    ? {
        resource,
        authorizationServers: () => auth.authorizationServers ?? [...auth.issuers.map((i) => i.issuer), ...(ts.enabled ? [selfIssuer()] : [])],
        scopesSupported: auth.scopes.supported,
        implies: new Map(Object.entries(auth.scopes.implies)),
      }
    : undefined
  const oidc = auth.login.oidc
  const oidcLogin =
    oidc === undefined || authorization === undefined
      ? undefined
      : new OidcLogin({
          name: oidc.name,
          label: oidc.label,
          // Checked (HTTPS, or loopback HTTP), then used exactly as configured: it must equal the provider's `issuer`.
          issuer: secureUrl(loaded, 'auth.login.oidc.issuer', oidc.issuer) && oidc.issuer,
          clientId: oidc.clientId,
          clientSecret: oidc.clientSecret === undefined ? undefined : readSecret(loaded, oidc.clientSecret, 'auth.login.oidc.clientSecret', env),
          scopes: oidc.scopes,
          claims: oidc.claims,
          defaultRoles: oidc.defaultRoles,
          timeoutMs: oidc.timeoutMs,
        })
  const iat = clientsConfig.registration.initialAccessToken
  const registrationToken = iat === undefined ? undefined : readSecret(loaded, iat, 'auth.clients.registration.initialAccessToken', env)
  const tokenService =
    signingKeys === undefined || store === undefined
      ? undefined
      : new TokenService({
          issuer: selfIssuer,
          resource,
          keys: signingKeys,
          store,
          apiKeys,
          accessTokenSeconds: ts.accessTokenSeconds,
          refreshTokenSeconds: ts.refreshTokenSeconds,
          refreshRetrySeconds: ts.refreshRetrySeconds,
          scopesSupported: auth.scopes.supported,
          cache,
          audit: input.audit,
          authorization,
          oauthStore,
          fetch: fetchOptions,
          registration: clientsConfig.registration.mode !== 'off',
          metadataDocuments: clientsConfig.metadataDocuments,
        })
  return {
    apiKeys,
    authenticator,
    bruteForce: new BruteForce(auth.bruteForce),
    cache,
    resourceServer,
    tokenService,
    signingKeys,
    authorization,
    oidcLogin,
    registrationToken,
    grants:
      store === undefined || oauthStore === undefined
        ? undefined
        : {
            list: () => listGrants(oauthStore),
            revoke: (id) => revokeGrant(oauthStore, store, id, ts),
          },
    close: async () => {
      await store?.close()
      await oauthStore?.close()
    },
  }
}
