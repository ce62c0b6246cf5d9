import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import Provider from 'oidc-provider'

export interface TestIdp {
  readonly issuer: string
  readonly port: number
  /** A client_credentials access token for a client, with a resource indicator and scopes. */
  token(client: 'svc' | 'svc-opaque' | 'svc-readonly', scope: string, resource?: string): Promise<string>
  stop(): Promise<void>
  start(): Promise<void>
}

export const IDP_SECRETS = {
  svc: 'svc-secret-0123456789abcdef0123456789',
  'svc-opaque': 'opaque-secret-0123456789abcdef012345',
  'svc-readonly': 'ro-secret-0123456789abcdef0123456789',
  rs: 'rs-secret-0123456789abcdef0123456789ab',
}

/**
 * A real OpenID provider (`oidc-provider`) on 127.0.0.1: client credentials with resource
 * indicators (RFC 8707), JWT (ES256) or opaque access tokens, JWKS and introspection (RFC 7662,
 * for the `rs` client). `stop()` and `start()` simulate an outage on the same port.
 */
export async function startIdp(resource: string): Promise<TestIdp> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk: JWK = { ...(await exportJWK(privateKey)), kid: 'idp-es256', alg: 'ES256', use: 'sig' }
  let server: Server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const issuer = `http://127.0.0.1:${port}`
  const client = (id: keyof typeof IDP_SECRETS, grants: string[]) => ({
    client_id: id,
    client_secret: IDP_SECRETS[id],
    grant_types: grants,
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  })
  const provider = new Provider(issuer, {
    clients: [client('svc', ['client_credentials']), client('svc-opaque', ['client_credentials']), client('svc-readonly', ['client_credentials']), client('rs', [])],
    jwks: { keys: [jwk] },
    scopes: ['mcp:tools', 'mcp:read', 'mcp:admin'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // Only the resource server's own client may introspect.
      introspection: { enabled: true, allowedPolicy: async (ctx: { oidc: { client?: { clientId: string } } }) => ctx.oidc.client?.clientId === 'rs' },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, indicator: string, c: { clientId: string }) => ({
          scope: c.clientId === 'svc-readonly' ? 'mcp:read' : 'mcp:tools mcp:read mcp:admin',
          audience: indicator,
          accessTokenTTL: 300,
          accessTokenFormat: c.clientId === 'svc-opaque' ? 'opaque' : 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    ttl: { ClientCredentials: 300, AccessToken: 300 },
    extraTokenClaims: async (_ctx: unknown, token: { clientId?: string }) => ({ roles: token.clientId === 'svc-readonly' ? ['reader'] : ['admin'] }),
  } as never)
  const listener = provider.callback()
  server.on('request', listener)
  return {
    issuer,
    port,
    async token(id, scope, res = resource) {
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${id}:${IDP_SECRETS[id]}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource: res }).toString(),
      })
      const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string }
      if (body.access_token === undefined) throw new Error(`idp token: ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`)
      return body.access_token
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    },
    async start() {
      server = createServer(listener)
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    },
  }
}
