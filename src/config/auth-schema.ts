import { z } from 'zod'
import { secretRef } from './secret-ref.js'

const scope = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/, 'a scope token (RFC 6749 §3.3)')
const seconds = (min: number, max: number, fallback: number) => z.number().int().min(min).max(max).default(fallback)

/** A trusted token issuer: how its JWTs are verified and how their claims become a principal. */
export const issuerSchema = z
  .strictObject({
    /** Prefix of principal ids from this issuer (`<name>:<sub>`). */
    name: z
      .string()
      .regex(/^[a-z0-9_-]{1,32}$/, 'lower-case letters, digits, _ and -')
      .default('jwt'),
    /** Exact `iss` value. */
    issuer: z.string().min(1).max(2048),
    /** Accepted `aud` values. Default: this server's resource URI (RFC 8707). */
    audience: z.array(z.string().min(1)).min(1).optional(),
    algorithms: z.array(z.enum(['HS256', 'RS256', 'PS256', 'ES256', 'EdDSA'])).min(1),
    /** Keys: exactly one of a remote JWKS (HTTPS, or loopback), a local JWKS file, static keys, or an HS256 secret. */
    jwksUri: z.url().optional(),
    jwksFile: z.string().min(1).optional(),
    keys: z.array(z.union([z.strictObject({ pem: secretRef }), z.strictObject({ jwk: z.record(z.string(), z.unknown()) })])).optional(),
    secret: secretRef.optional(),
    /** Accept an HS256 secret that looks guessable (a published example, words, a repeated pattern): serve refuses one otherwise. */
    dangerouslyAllowWeakSecret: z.boolean().default(false),
    /** Require `typ: at+jwt` (RFC 9068). */
    requireTyp: z.boolean().default(false),
    clockSkewSeconds: seconds(0, 600, 60),
    /** Longest accepted `exp - iat`. */
    maxLifetimeSeconds: seconds(60, 31_536_000, 86_400),
    /** Claim paths (dot-separated) mapped to the principal. Scopes come from `scope` or `scp`. */
    claims: z
      .strictObject({
        roles: z.string().min(1).max(256).default('roles'),
        tenant: z.string().min(1).max(256).optional(),
      })
      .prefault({}),
    /** Roles every token of this issuer gets, besides those in its claims. */
    defaultRoles: z.array(z.string().min(1)).default([]),
    jwksCooldownSeconds: seconds(1, 3600, 30),
    jwksTimeoutMs: z.number().int().min(100).max(30_000).default(3000),
  })
  .superRefine((issuer, ctx) => {
    const sources = [issuer.jwksUri, issuer.jwksFile, issuer.keys, issuer.secret].filter((s) => s !== undefined).length
    if (sources !== 1) ctx.addIssue({ code: 'custom', path: [], message: 'give exactly one of jwksUri, jwksFile, keys, secret' })
    const hs = issuer.algorithms.includes('HS256')
    if (hs && issuer.secret === undefined) ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'HS256 needs secret (and only HS256 may use one)' })
    if (issuer.secret !== undefined && (!hs || issuer.algorithms.length > 1))
      ctx.addIssue({ code: 'custom', path: ['secret'], message: 'a shared secret allows HS256 only: list algorithms: [HS256]' })
  })

/** An RFC 7662 introspection endpoint for opaque tokens. */
export const introspectionSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/)
    .default('opaque'),
  endpoint: z.url(),
  clientId: z.string().min(1).max(512),
  clientSecret: secretRef,
  /** Accepted `aud` values; default: the resource URI. A response without `aud` is refused. */
  audience: z.array(z.string().min(1)).min(1).optional(),
  /** Longest time an answer is reused (never past the token's `exp`). */
  cacheSeconds: seconds(0, 3600, 60),
  timeoutMs: z.number().int().min(100).max(30_000).default(3000),
  claims: z.strictObject({ roles: z.string().min(1).max(256).default('roles'), tenant: z.string().min(1).max(256).optional() }).prefault({}),
  defaultRoles: z.array(z.string().min(1)).default([]),
})

export const oauthShape = {
  /** Canonical URI of this MCP server (RFC 8707): the audience tokens must name. Default: the served URL. */
  resource: z.url().optional(),
  /** Listed in Protected Resource Metadata. Default: the trusted issuers (and bastion's own token service). */
  authorizationServers: z.array(z.url()).optional(),
  scopes: z
    .strictObject({
      /** Advertised in metadata and in the 401 challenge. */
      supported: z.array(scope).default([]),
      /** A broader scope implies narrower ones: `mcp:admin: [mcp:tools, mcp:read]`. */
      implies: z.record(scope, z.array(scope)).default({}),
    })
    .prefault({}),
  issuers: z.array(issuerSchema).default([]),
  introspection: z.array(introspectionSchema).max(1).default([]),
  /** Verified tokens kept so repeat calls skip the signature check. */
  tokenCache: z.strictObject({ maxEntries: z.number().int().min(0).max(1_000_000).default(10_000) }).prefault({}),
  tokenService: z
    .strictObject({
      /**
       * bastion as an OAuth 2.1 authorization server: `/oauth/authorize` (authorization code + PKCE,
       * sign-in and consent pages) and `/oauth/token` (that grant, `client_credentials` for API keys,
       * rotating refresh tokens).
       */
      enabled: z.boolean().default(true),
      /** Lifetime of an authorization code (single use). */
      authorizationCodeSeconds: seconds(10, 600, 60),
      accessTokenSeconds: seconds(60, 86_400, 900),
      refreshTokenSeconds: seconds(300, 31_536_000, 2_592_000),
      /** A refresh token presented again this soon after its rotation, by the same client, gets the same new one (0: never). */
      refreshRetrySeconds: seconds(0, 60, 10),
      /** Refresh tokens: the state directory, or Redis shared by replicas. */
      store: z.enum(['embedded', 'redis']).default('embedded'),
      redis: z.strictObject({ url: secretRef, keyPrefix: z.string().max(64).default('bastion:tokens:') }).optional(),
      signingKeysFile: z.string().min(1).default('signing-keys.json'),
      refreshTokensFile: z.string().min(1).default('refresh-tokens.json'),
      /** Registered clients, users' grants and redeemed codes (embedded store; Redis with store: redis). */
      authorizationFile: z.string().min(1).default('authorization.json'),
    })
    .refine((t) => t.store !== 'redis' || t.redis !== undefined, 'store: redis needs redis.url')
    .prefault({}),
  /** How people sign in at `/oauth/authorize`: with an API key, or through the company's OpenID provider. */
  login: z
    .strictObject({
      /** Paste a `bst_…` key: the token carries that key's roles, and revoking the key ends its grants. */
      apiKey: z.boolean().default(true),
      /** bastion as an OpenID Connect relying party (authorization code, PKCE, nonce). */
      oidc: z
        .strictObject({
          /** Prefix of user ids from this provider (`user:<name>:<sub>`). */
          name: z
            .string()
            .regex(/^[a-z0-9_-]{1,32}$/, 'lower-case letters, digits, _ and -')
            .default('sso'),
          /** Shown on the sign-in button. */
          label: z.string().min(1).max(64).default('Sign in with your company account'),
          issuer: z.url(),
          clientId: z.string().min(1).max(512),
          clientSecret: secretRef.optional(),
          scopes: z.array(scope).default(['openid', 'email', 'profile']),
          /** Claim paths (dot-separated) of the ID token / userinfo mapped to the user. */
          claims: z
            .strictObject({
              roles: z.string().min(1).max(256).default('roles'),
              name: z.string().min(1).max(256).default('email'),
            })
            .prefault({}),
          defaultRoles: z.array(z.string().min(1)).default([]),
          timeoutMs: z.number().int().min(100).max(30_000).default(5000),
        })
        .optional(),
      /** How long a sign-in flow (page to redirect) may take. */
      flowSeconds: seconds(60, 3600, 600),
      /** A user's consent to a client and scopes is remembered this long (0: ask every time). */
      rememberConsentSeconds: seconds(0, 31_536_000, 2_592_000),
    })
    .refine((l) => l.apiKey || l.oidc !== undefined, 'enable apiKey or configure oidc: nobody could sign in')
    .prefault({}),
  /** OAuth clients of the authorization server. */
  clients: z
    .strictObject({
      /** Client ID Metadata Documents: a `client_id` that is an HTTPS URL is fetched and validated. */
      metadataDocuments: z.boolean().default(true),
      /** Hosts (exact, or `*.example.com`) whose metadata documents are accepted; empty: any public host. */
      allowedDomains: z.array(z.string().regex(/^(\*\.)?[a-z0-9.-]{1,253}$/, 'a host name or *.domain')).default([]),
      /** Development only: fetch metadata documents from loopback addresses, over plain HTTP too. */
      dangerouslyAllowLoopbackMetadata: z.boolean().default(false),
      metadataTimeoutMs: z.number().int().min(100).max(30_000).default(5000),
      /** Largest metadata document read. */
      metadataMaxBytes: z.number().int().min(1024).max(1_048_576).default(5120),
      /** Longest a fetched document is reused (less when its Cache-Control says so). */
      metadataCacheSeconds: seconds(0, 86_400, 3600),
      /**
       * Dynamic Client Registration (RFC 7591) for clients without metadata documents: `off`;
       * `loopback` (the default): only native clients whose redirect URIs are all loopback (RFC 8252
       * §7.3), whose codes cannot be sent to anyone else's machine; `on`: any HTTPS redirect too.
       */
      registration: z
        .strictObject({
          mode: z.enum(['off', 'loopback', 'on']).default('loopback'),
          /** Require `Authorization: Bearer <this>` on registration requests (RFC 7591 §3). */
          initialAccessToken: secretRef.optional(),
          /** Registrations per client address per minute. */
          perMinute: z.number().int().min(1).max(10_000).default(10),
          /** A registration not used this long is forgotten. */
          unusedSeconds: seconds(3600, 31_536_000, 2_592_000),
          maxClients: z.number().int().min(1).max(1_000_000).default(10_000),
        })
        .prefault({}),
      /** Pre-registered clients. */
      registered: z
        .array(
          z.strictObject({
            clientId: z.string().regex(/^[A-Za-z0-9._~:-]{1,128}$/, 'letters, digits and . _ ~ : -'),
            name: z.string().min(1).max(200),
            redirectUris: z.array(z.url()).min(1),
            /** Confidential clients authenticate with this (client_secret_basic or client_secret_post); none: a public client (PKCE only). */
            secret: secretRef.optional(),
          }),
        )
        .default([]),
    })
    .prefault({}),
  /** Failed authentications: slowed, then blocked, per client address and per credential id. */
  bruteForce: z
    .strictObject({
      windowSeconds: seconds(1, 86_400, 600),
      slowAfter: z.number().int().min(1).max(1000).default(5),
      delayMs: z.number().int().min(0).max(10_000).default(250),
      maxDelayMs: z.number().int().min(0).max(30_000).default(2000),
      blockAfter: z.number().int().min(1).max(10_000).default(20),
      blockSeconds: seconds(1, 86_400, 300),
    })
    .prefault({}),
}
