import { type AuthInfo, createMcpHandler, isLegacyRequest, type McpHttpHandler } from '@modelcontextprotocol/server'
import type { AuditLog } from '../../audit/audit-log.js'
import type { Authenticator } from '../../auth/authenticator.js'
import type { BruteForce } from '../../auth/brute-force.js'
import { authenticate, refuseQueryCredential } from '../../auth/http-auth.js'
import type { ResourceServer, ScopeRules } from '../../auth/resource-metadata.js'
import type { TokenService } from '../../auth/token-service.js'
import { SecurityError } from '../../errors.js'
import type { BodyLimits } from '../../limits/body-guard.js'
import { anonymousLimit, type RateLimitDeps, rateLimit } from '../../limits/rate-guard.js'
import { compose } from '../../pipeline/compose.js'
import { createExchange, type Exchange, requestIdFrom } from '../../pipeline/exchange.js'
import type { Metrics } from '../../pipeline/metrics.js'
import type { CompiledPolicy } from '../../policy/engine.js'
import type { RbacPolicy } from '../../policy/rbac.js'
import type { Tracing } from '../../telemetry/tracing.js'
import type { ToolRegistry } from '../../tools/registry.js'
import { buildServer, type ServerDeps, ServerPool } from '../mcp-server.js'
import { answerHttp, requestStages } from '../stages.js'
import { Wire } from '../wire.js'
import type { AuthorizePagesOptions } from './authorize-routes.js'
import { type ConsoleRouteOptions, consoleMethod, consolePageRefusals, consoleRouter } from './console-routes.js'
import { checkHostAndOrigin, type OriginPolicy } from './dns-rebinding.js'
import { checkHeaders } from './headers.js'
import { metricsTerminal } from './metrics-route.js'
import { oauthRouter } from './oauth-routes.js'
import type { RegistrationOptions } from './register-route.js'
import { LegacySessions, type SessionLimits } from './sessions.js'

export interface EdgeOptions {
  readonly serverDeps: ServerDeps
  readonly audit: AuditLog
  readonly authenticator: Authenticator
  readonly bruteForce: BruteForce
  /** Set when tokens are accepted: Protected Resource Metadata and OAuth challenges. */
  readonly resourceServer: ResourceServer | undefined
  readonly tokenService: TokenService | undefined
  /** The authorization endpoint's pages and client registration (with the token service). */
  readonly authorization?: { readonly pages: AuthorizePagesOptions; readonly registration: RegistrationOptions }
  readonly scopes: ScopeRules
  readonly registry: ToolRegistry
  readonly policy: () => CompiledPolicy
  /** Role permissions, for endpoints outside MCP (`/metrics`). */
  readonly grants: RbacPolicy
  readonly origins: OriginPolicy
  readonly body: BodyLimits
  readonly sessions: SessionLimits
  readonly limits: RateLimitDeps
  readonly metrics: Metrics
  /** Path of the MCP endpoint, default `/mcp`. */
  readonly path?: string
  /** Operator log for failures that have no request (SDK out-of-band errors). */
  readonly onError?: (error: Error) => void
  /** OpenTelemetry traces, when configured. */
  readonly tracing?: Tracing
  /** Each upstream's state (gateway), shown by `/healthz`: names and states only, never errors. */
  readonly upstreams?: () => Readonly<Record<string, string>>
  /** The operator console, when served (its script credential is authenticated like any client's). */
  readonly console?: Omit<ConsoleRouteOptions, 'authenticate' | 'rateLimit' | 'maxJsonDepth'>
}

export interface RequestInfo {
  readonly remoteAddress: string | undefined
  readonly secure: boolean
  readonly bodyTooLarge?: boolean
  /** What the listener found wrong with the raw header list (`null`: nothing; absent: not read). */
  readonly headerFault?: SecurityError | null
}

export interface Edge {
  fetch(request: Request, info: RequestInfo): Promise<Response>
  /** Answer (and audit) a request that cannot even be turned into a web Request: a bad request line or Host. */
  refuse(error: SecurityError, info: RequestInfo & { method: string }): Promise<Response>
  readonly sessions: LegacySessions
  readonly modern: McpHttpHandler
  close(): Promise<void>
}

/**
 * The HTTP edge: `/healthz`, `/metrics`, the OAuth documents, and `/mcp` through the one stage
 * list (transport/stages.ts), then the SDK: 2026-07-28 traffic to its stateless per-request
 * handler, 2025-era traffic to the principal's own session. The SDK's handlers find the exchange
 * of their request in a WeakMap keyed by the web Request the SDK hands them back.
 */
export function createEdge(options: EdgeOptions): Edge {
  const path = options.path ?? '/mcp'
  const { serverDeps, audit } = options
  const wire = new Wire(options.resourceServer)
  const exchanges = new WeakMap<Request, Exchange>()
  const exchangeOf = (req: Request | undefined): Exchange => {
    const x = req === undefined ? undefined : exchanges.get(req)
    if (x === undefined) throw new SecurityError('ERR_INTERNAL', 'SDK handler called for a request bastion did not admit')
    return x
  }
  const idle = new ServerPool(() => buildServer(serverDeps, (ctx) => exchangeOf(ctx.http?.req), 'modern'))
  const modern = createMcpHandler(
    // Instances are reused, not built per request: the SDK seeds each exchange's protocol version
    // and client identity itself, and the handlers find their exchange by the request they serve.
    () => idle.take(),
    { legacy: 'reject', maxRequestBodySize: options.body.maxBytes, ...(options.onError === undefined ? {} : { onerror: options.onError }) },
  )
  const sessions = new LegacySessions(
    options.sessions,
    // A session serves the principal that created it (the session stage checks the binding on
    // every request); its handlers decide for the exchange of each request, found by its Request.
    () => buildServer(serverDeps, (ctx) => exchangeOf(ctx.http?.req), 'legacy'),
    (event) => {
      try {
        audit.record({ event: 'session.closed', principal: event.principalId, decision: 'allow', reason: 'OK', session: event.id, cause: event.reason })
      } catch (error) {
        options.onError?.(error instanceof Error ? error : new Error(String(error)))
      }
    },
  )

  const auth = { authenticator: options.authenticator, bruteForce: options.bruteForce, audit }
  const answer = answerHttp(wire)
  const stages = requestStages({
    origins: options.origins,
    body: options.body,
    limits: options.limits,
    auth,
    registry: options.registry,
    policy: options.policy,
    scopes: options.scopes,
    session: sessions.check(),
    // GET and DELETE are 2025-11-25 session operations; a POST is classified by the SDK itself, so
    // that bastion and the SDK never disagree.
    era: async (x) => (x.http?.request.method !== 'POST' || (await isLegacyRequest(x.http.request, x.message)) ? 'legacy' : 'modern'),
  })
  const mcp = compose<Exchange, Response>([answer, ...stages], async function dispatchToSdk(x) {
    const principal = x.principal
    const request = x.http?.request
    if (principal === undefined || request === undefined) throw new SecurityError('ERR_INTERNAL', 'dispatch reached unauthenticated')
    exchanges.set(request, x)
    // The SDK's AuthInfo wants a token; handlers never need the credential, so it never gets one.
    const authInfo: AuthInfo = { token: '[not-forwarded]', clientId: principal.id, scopes: [] }
    if (x.era === 'modern') return modern.fetch(request, { authInfo, parsedBody: x.message })
    return sessions.handle(x, authInfo)
  })
  const metricsRoute = compose<Exchange, Response>(
    [answer, checkHeaders(), checkHostAndOrigin(options.origins), refuseQueryCredential(), anonymousLimit(options.limits), authenticate(auth)],
    metricsTerminal(options.metrics, options.grants),
  )
  const oauth = oauthRouter({
    audit,
    origins: options.origins,
    resourceServer: options.resourceServer,
    tokenService: options.tokenService,
    bruteForce: options.bruteForce,
    wire,
    pages: options.authorization?.pages,
    registration: options.authorization?.registration,
  })
  const consoleOptions = options.console
  const consolePath = consoleOptions?.path
  const consoleRoute =
    consoleOptions === undefined
      ? undefined
      : compose<Exchange, Response>(
          [consolePageRefusals(consoleOptions.path), answer, checkHeaders(), checkHostAndOrigin(options.origins), refuseQueryCredential(), anonymousLimit(options.limits)],
          consoleRouter({ ...consoleOptions, authenticate: authenticate(auth), rateLimit: rateLimit(options.limits, () => false), maxJsonDepth: options.body.maxDepth }),
        )
  const notFound = compose<Exchange, Response>([answer, checkHeaders()], async () => {
    throw new SecurityError('ERR_NOT_FOUND', 'no route')
  })
  const exchange = (request: Request, url: URL, info: RequestInfo): Exchange =>
    createExchange({
      requestId: requestIdFrom(request.headers.get('x-request-id'), (id) => audit.survives(id)),
      transport: 'http',
      remoteAddress: info.remoteAddress,
      signal: request.signal,
      audit,
      http: { request, url, bodyTooLarge: info.bodyTooLarge === true, headerFault: info.headerFault, responseHeaders: new Headers() },
      tracing: options.tracing,
    })

  return {
    sessions,
    modern,
    async fetch(request, info) {
      const url = new URL(request.url)
      if (info.secure) url.protocol = 'https:'
      const x = exchange(request, url, info)
      try {
        if (url.pathname === '/healthz' && (request.method === 'GET' || request.method === 'HEAD')) {
          const upstreams = options.upstreams?.()
          return new Response(
            JSON.stringify(upstreams === undefined ? { status: 'ok' } : { status: Object.values(upstreams).every((s) => s === 'up') ? 'ok' : 'degraded', upstreams }),
            { headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-request-id': x.requestId } },
          )
        }
        if (url.pathname === path) return await mcp(x)
        if (url.pathname === '/metrics') return await metricsRoute(x)
        if (consoleRoute !== undefined && (url.pathname === consolePath || url.pathname.startsWith(`${consolePath}/`))) {
          // Named before any stage runs, so that a refusal before the console's own routes (Host, Origin) is found by its method too.
          x.method = consoleMethod(url.pathname.slice(consolePath?.length ?? 0))
          return await consoleRoute(x)
        }
        return await (oauth(x) ?? notFound(x))
      } catch (error) {
        // Only reachable if the outermost stage itself threw: fail closed without detail.
        options.onError?.(error instanceof Error ? error : new Error(String(error)))
        return wire.response(x, new SecurityError('ERR_INTERNAL', 'edge failure'))
      }
    },
    async refuse(error, info) {
      const request = new Request('http://invalid.invalid/', { method: 'GET' })
      const x = exchange(request, new URL(request.url), info)
      x.method = info.method.slice(0, 16)
      return compose<Exchange, Response>([answer], async () => {
        throw error
      })(x)
    },
    async close() {
      await sessions.closeAll()
      await modern.close()
    },
  }
}
