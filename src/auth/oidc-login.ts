import { randomBytes } from 'node:crypto'
import { isLoopback } from '../config/urls.js'
import { SecurityError } from '../errors.js'
import type { SignedInUser } from './authorization-server.js'
import { claimAt, MAX_CLAIM_LENGTH } from './claims.js'

export interface OidcLoginOptions {
  readonly name: string
  readonly label: string
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: string | undefined
  readonly scopes: readonly string[]
  readonly claims: { readonly roles: string; readonly name: string }
  readonly defaultRoles: readonly string[]
  readonly timeoutMs: number
}

type Client = typeof import('openid-client')
type Configuration = Awaited<ReturnType<Client['discovery']>>

/** What the provider step carries from the redirect to the callback (sealed in the flow). */
export interface UpstreamCheck {
  readonly verifier: string
  readonly nonce: string
}

const PRINTABLE = /^[^\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]+$/u

/**
 * Sign-in through the company's OpenID provider: bastion is a relying party using the
 * authorization code flow with PKCE (S256) and a nonce (OpenID Connect Core §3.1), through
 * `openid-client`, loaded on first use. The provider's metadata is discovered on first use and
 * kept; plain HTTP only for a loopback issuer. The user becomes `user:<name>:<sub>` with the roles
 * of the configured claim plus the default roles.
 * Does not check: what the user may do (the roles go to policy), the provider's own MFA.
 */
export class OidcLogin {
  readonly #o: OidcLoginOptions
  #config: Promise<{ lib: Client; config: Configuration }> | undefined

  constructor(options: OidcLoginOptions) {
    this.#o = options
  }

  get label(): string {
    return this.#o.label
  }

  #discover(): Promise<{ lib: Client; config: Configuration }> {
    this.#config ??= (async () => {
      const lib = await import('openid-client')
      const issuer = new URL(this.#o.issuer)
      const insecure = issuer.protocol === 'http:' && isLoopback(issuer.hostname)
      const auth = this.#o.clientSecret === undefined ? lib.None() : lib.ClientSecretPost(this.#o.clientSecret)
      const config = await lib.discovery(issuer, this.#o.clientId, undefined, auth, {
        ...(insecure ? { execute: [lib.allowInsecureRequests] } : {}),
        timeout: Math.ceil(this.#o.timeoutMs / 1000),
      })
      return { lib, config }
    })().catch((error: unknown) => {
      this.#config = undefined
      throw new SecurityError('ERR_AUTH_UNAVAILABLE', `OpenID provider ${this.#o.issuer}: discovery failed: ${error instanceof Error ? error.message : 'error'}`)
    })
    return this.#config
  }

  /** The checks a flow carries to the callback: a fresh PKCE verifier and nonce. */
  newCheck(): UpstreamCheck {
    return { verifier: randomBytes(32).toString('base64url'), nonce: randomBytes(24).toString('base64url') }
  }

  /** The provider's authorization URL for this flow. */
  async authorizationUrl(callback: string, state: string, check: UpstreamCheck): Promise<string> {
    const { lib, config } = await this.#discover()
    const { verifier, nonce } = check
    const url = lib.buildAuthorizationUrl(config, {
      redirect_uri: callback,
      scope: this.#o.scopes.join(' '),
      code_challenge: await lib.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    })
    return url.href
  }

  /** The provider's issuer origin (the sign-in page's form may lead there). */
  get issuer(): string {
    return this.#o.issuer
  }

  /**
   * Redeem the provider's answer: its code, with our PKCE verifier, the expected state and
   * nonce; the ID token verified by openid-client (signature, issuer, audience, expiry, nonce).
   * @throws SecurityError ERR_AUTH_INVALID (a refused or forged answer), ERR_AUTH_UNAVAILABLE
   */
  async finish(currentUrl: URL, state: string, check: UpstreamCheck): Promise<SignedInUser> {
    const { lib, config } = await this.#discover()
    let claims: Record<string, unknown> | undefined
    try {
      const tokens = await lib.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: check.verifier,
        expectedNonce: check.nonce,
        expectedState: state,
        idTokenExpected: true,
      })
      claims = tokens.claims() as Record<string, unknown> | undefined
    } catch (error) {
      throw new SecurityError('ERR_AUTH_INVALID', `OpenID provider sign-in refused: ${error instanceof Error ? error.message.slice(0, 200) : 'error'}`)
    }
    const sub = claims?.sub
    if (claims === undefined || typeof sub !== 'string' || sub.length > MAX_CLAIM_LENGTH || !PRINTABLE.test(sub))
      throw new SecurityError('ERR_AUTH_INVALID', 'ID token has no usable sub')
    const rawRoles = claimAt(claims, this.#o.claims.roles)
    const roles = Array.isArray(rawRoles) ? rawRoles.filter((r): r is string => typeof r === 'string' && r.length <= MAX_CLAIM_LENGTH && PRINTABLE.test(r)) : []
    const rawName = claimAt(claims, this.#o.claims.name)
    const name = typeof rawName === 'string' && rawName.length <= MAX_CLAIM_LENGTH && PRINTABLE.test(rawName) ? rawName : sub
    return { sub: `user:${this.#o.name}:${sub}`, via: 'oidc', name, roles: [...new Set([...this.#o.defaultRoles, ...roles])] }
  }
}
