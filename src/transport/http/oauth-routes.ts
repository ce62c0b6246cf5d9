import type { AuditLog } from '../../audit/audit-log.js'
import type { BruteForce } from '../../auth/brute-force.js'
import { addressSubject, countFailure, refuseIfBlocked, refuseQueryCredential } from '../../auth/http-auth.js'
import { metadataUrl, protectedResourceMetadata, type ResourceServer } from '../../auth/resource-metadata.js'
import type { TokenService } from '../../auth/token-service.js'
import { SecurityError } from '../../errors.js'
import { compose } from '../../pipeline/compose.js'
import type { Exchange } from '../../pipeline/exchange.js'
import { answerHttp } from '../stages.js'
import type { Wire } from '../wire.js'
import { type AuthorizePagesOptions, authorizePages } from './authorize-routes.js'
import { checkHostAndOrigin, type OriginPolicy } from './dns-rebinding.js'
import { checkHeaders } from './headers.js'
import { pageRefusals } from './page-refusals.js'
import { type RegistrationOptions, registerTerminal } from './register-route.js'

export interface OAuthRouteOptions {
  readonly audit: AuditLog
  /** The authorization endpoint's pages and the registration endpoint, with the token service. */
  readonly pages: AuthorizePagesOptions | undefined
  readonly registration: RegistrationOptions | undefined
  readonly origins: OriginPolicy
  readonly resourceServer: ResourceServer | undefined
  readonly tokenService: TokenService | undefined
  readonly bruteForce: BruteForce
  readonly wire: Wire
}

type Route = (x: Exchange) => Promise<Response>

const PUBLIC_JSON = { 'content-type': 'application/json', 'cache-control': 'max-age=300', 'access-control-allow-origin': '*' }

function getOnly(x: Exchange): void {
  const method = x.http?.request.method ?? ''
  if (method !== 'GET' && method !== 'HEAD') throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `${method.slice(0, 16)} ${x.http?.url.pathname ?? ''}`)
}

/**
 * The OAuth endpoints, outside the MCP pipeline and without authentication of their own:
 * Protected Resource Metadata (RFC 9728) at the well-known path and its MCP-path-suffixed form;
 * with the token service, its metadata (RFC 8414), JWKS, token and revocation endpoints.
 * Every request is audited; client authentication failures at the token endpoints count toward
 * the brute-force blocks. Returns undefined for any other path.
 */
export function oauthRouter(options: OAuthRouteOptions): (ctx: Exchange) => Promise<Response> | undefined {
  const routes = new Map<string, Route>()
  const base = [answerHttp(options.wire), checkHeaders(), checkHostAndOrigin(options.origins)]
  /** A public, cacheable JSON document answering GET (and HEAD). */
  const document = (method: string, body: () => unknown): Route =>
    compose<Exchange, Response>(base, async (ctx) => {
      getOnly(ctx)
      ctx.method = method
      return new Response(JSON.stringify(body()), { headers: PUBLIC_JSON })
    })
  const rs = options.resourceServer
  if (rs !== undefined) {
    const prm = document('oauth/protected-resource', () => {
      if (rs.resource() === '') throw new SecurityError('ERR_INTERNAL', 'resource URI unknown: set auth.resource when embedding the edge')
      return protectedResourceMetadata(rs)
    })
    routes.set('/.well-known/oauth-protected-resource', prm)
    // The resource's own metadata path is known only once the server listens: matched per request.
    routes.set('prm-suffixed', prm)
  }
  const ts = options.tokenService
  if (ts !== undefined) {
    routes.set(
      '/.well-known/oauth-authorization-server',
      document('oauth/metadata', () => ts.metadata()),
    )
    routes.set(
      '/.well-known/jwks.json',
      document('oauth/jwks', () => ts.jwks()),
    )
    const guarded = (run: Route): Route =>
      compose<Exchange, Response>([...base, refuseQueryCredential()], async (ctx) => {
        const subject = addressSubject(ctx)
        refuseIfBlocked(options.bruteForce, subject)
        const response = await run(ctx)
        // Failed client authentication counts like any other; the token endpoint answers at once.
        if (response.status === 401) countFailure(options.bruteForce, options.audit, ctx, [subject])
        return response
      })
    routes.set(
      '/oauth/token',
      guarded((ctx) => ts.token(ctx)),
    )
    routes.set(
      '/oauth/revoke',
      guarded((ctx) => ts.revoke(ctx)),
    )
  }
  if (options.pages !== undefined) {
    const pages = authorizePages(options.pages)
    const refused = pageRefusals({ title: 'Sign-in failed', heading: 'This sign-in cannot continue' })
    routes.set(
      '/oauth/authorize',
      compose<Exchange, Response>([refused, ...base, refuseQueryCredential()], (x) => pages.authorize(x)),
    )
    if (options.pages.oidc !== undefined)
      routes.set(
        '/oauth/callback',
        compose<Exchange, Response>([refused, ...base], (x) => pages.callback(x)),
      )
  }
  const registration = options.registration
  if (registration !== undefined && registration.clients.registrationMode !== 'off') {
    routes.set('/oauth/register', compose<Exchange, Response>(base, registerTerminal(registration)))
  }
  return (ctx) => {
    const pathname = ctx.http?.url.pathname ?? ''
    const route = routes.get(pathname)
    if (route !== undefined) return route(ctx)
    const resource = rs?.resource() ?? ''
    if (resource !== '' && pathname === new URL(metadataUrl(resource)).pathname) return routes.get('prm-suffixed')?.(ctx)
    return undefined
  }
}
