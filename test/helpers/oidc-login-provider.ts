import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import Provider from 'oidc-provider'

/** The people who can sign in at the login provider (any password): their roles claim. */
export const LOGIN_ACCOUNTS: Readonly<Record<string, { readonly email: string; readonly roles: readonly string[] }>> = {
  alice: { email: 'alice@example.test', roles: ['admin'] },
  bob: { email: 'bob@example.test', roles: ['reader'] },
}

/** bastion's client at the provider: a confidential client (client_secret_post, as openid-client sends it). */
export const LOGIN_CLIENT = { clientId: 'bastion', clientSecret: 'bastion-login-secret-0123456789abcdef' }

export interface LoginIdp {
  readonly issuer: string
  /**
   * Register bastion as the relying party and start answering: its callback is known only once it
   * listens, and it discovers the provider on first use, so the provider is built afterwards.
   */
  serve(redirectUri: string): void
  close(): Promise<void>
}

/**
 * A real OpenID provider (`oidc-provider`) on 127.0.0.1 for interactive sign-in: the authorization
 * code flow with PKCE, its development login and consent pages (any login from
 * {@link LOGIN_ACCOUNTS}, any password), ES256 ID tokens that carry `email` and a `roles` claim
 * when the `roles` scope is asked for (`conformIdTokenClaims: false`: in the ID token itself, not
 * only at userinfo, because bastion reads the ID token).
 */
export async function startLoginIdp(): Promise<LoginIdp> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk: JWK = { ...(await exportJWK(privateKey)), kid: 'login-es256', alg: 'ES256', use: 'sig' }
  const server: Server = createServer((_req, res) => {
    res.statusCode = 503
    res.end('not serving yet')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    issuer,
    serve(redirectUri) {
      const provider = new Provider(issuer, {
        clients: [
          {
            client_id: LOGIN_CLIENT.clientId,
            client_secret: LOGIN_CLIENT.clientSecret,
            redirect_uris: [redirectUri],
            response_types: ['code'],
            grant_types: ['authorization_code'],
            token_endpoint_auth_method: 'client_secret_post',
            id_token_signed_response_alg: 'ES256',
          },
        ],
        jwks: { keys: [jwk] },
        cookies: { keys: ['login-idp-cookie-key-0123456789abcdef'] },
        scopes: ['openid', 'email', 'profile', 'roles'],
        claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], roles: ['roles'] },
        conformIdTokenClaims: false,
        features: { devInteractions: { enabled: true } },
        findAccount: async (_ctx: unknown, id: string) => {
          const account = Object.hasOwn(LOGIN_ACCOUNTS, id) ? LOGIN_ACCOUNTS[id] : undefined
          if (account === undefined) return undefined
          return { accountId: id, claims: async () => ({ sub: id, email: account.email, email_verified: true, roles: [...account.roles] }) }
        },
      } as never)
      server.removeAllListeners('request')
      server.on('request', provider.callback())
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    },
  }
}
