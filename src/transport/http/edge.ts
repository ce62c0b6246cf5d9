import { createMcpHandler, type McpHttpHandler } from '@modelcontextprotocol/server'
import type { AuditLog } from '../../audit/audit-log.js'
import { httpAudit } from '../../audit/http-audit.js'
import type { Authenticator } from '../../auth/authenticator.js'
import type { BruteForce } from '../../auth/brute-force.js'
import { authenticateGuard, queryCredentialGuard } from '../../auth/http-auth.js'
import type { ResourceServer, ScopeRules } from '../../auth/resource-metadata.js'
import type { TokenService } from '../../auth/token-service.js'
import { SecurityError } from '../../errors.js'
import { type BodyLimits, bodyGuard } from '../../limits/body-guard.js'
import { anonymousLimitGuard, type RateLimitDeps, rateLimitGuard } from '../../limits/rate-guard.js'
import { compose } from '../../pipeline/compose.js'
import { createContext, requestIdFrom } from '../../pipeline/context.js'
import type { Metrics } from '../../pipeline/metrics.js'
import type { CompiledPolicy } from '../../policy/engine.js'
import type { RbacPolicy } from '../../policy/rbac.js'
import { toolGateGuard } from '../../policy/tool-gate.js'
import type { ToolRegistry } from '../../tools/registry.js'
import { buildServer, type ServerDeps } from '../mcp-server.js'
import type { HttpContext, HttpGuard } from './context.js'
import { contextFromAuthInfo, dispatch, eraGuard } from './dispatch.js'
import { dnsRebindingGuard, type OriginPolicy } from './dns-rebinding.js'
import { metricsTerminal } from './metrics-route.js'
import { oauthRouter } from './oauth-routes.js'
import { requestShapeGuard } from './request-shape.js'
import { errorResponse, finalizeResponse } from './responses.js'
import { LegacySessions, type SessionLimits } from './sessions.js'

export interface EdgeOptions {
  readonly serverDeps: ServerDeps
  readonly audit: AuditLog
  readonly authenticator: Authenticator
  readonly bruteForce: BruteForce
  /** Set when tokens are accepted: Protected Resource Metadata and OAuth challenges. */
  readonly resourceServer: ResourceServer | undefined
  readonly tokenService: TokenService | undefined
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
}

export interface RequestInfo {
  readonly remoteAddress: string | undefined
  readonly secure: boolean
  readonly bodyTooLarge?: boolean
}

export interface Edge {
  fetch(request: Request, info: RequestInfo): Promise<Response>
  readonly sessions: LegacySessions
  readonly modern: McpHttpHandler
  close(): Promise<void>
}

/**
 * The HTTP edge: `/healthz`, `/metrics`, and `/mcp` through the guard pipeline in fixed order —
 * audit → origin/host → request shape → body limits and parse → anonymous limit → authenticate →
 * rate limit → era → tool gate → SDK.
 */
export function createEdge(options: EdgeOptions): Edge {
  const path = options.path ?? '/mcp'
  const { serverDeps, audit } = options
  const contextOf = (handlerCtx: Parameters<Parameters<typeof buildServer>[2]>[0]) => ({ ctx: contextFromAuthInfo(handlerCtx.http?.authInfo), auditHere: false })
  const modern = createMcpHandler(
    (mcpCtx) => {
      const ctx = contextFromAuthInfo(mcpCtx.authInfo)
      if (ctx.principal === undefined) throw new SecurityError('ERR_INTERNAL', 'server factory without a principal')
      return buildServer(serverDeps, ctx.principal, contextOf, 'modern')
    },
    { legacy: 'reject', maxRequestBodySize: options.body.maxBytes, ...(options.onError === undefined ? {} : { onerror: options.onError }) },
  )
  const sessions = new LegacySessions(
    options.sessions,
    // A session serves the principal that created it; the binding is checked on every request.
    (principal) => buildServer(serverDeps, principal, contextOf, 'legacy'),
    (event) => {
      try {
        audit.record({ event: 'session.closed', principal: event.principalId, decision: 'allow', reason: 'OK', session: event.id, cause: event.reason })
      } catch (error) {
        options.onError?.(error instanceof Error ? error : new Error(String(error)))
      }
    },
  )

  const auth = { authenticator: options.authenticator, bruteForce: options.bruteForce, audit }
  const oauth = oauthRouter({ audit, origins: options.origins, resourceServer: options.resourceServer, tokenService: options.tokenService, bruteForce: options.bruteForce })
  const guards: HttpGuard[] = [
    httpAudit(audit),
    dnsRebindingGuard(options.origins),
    requestShapeGuard(),
    bodyGuard(options.body),
    queryCredentialGuard(),
    anonymousLimitGuard(options.limits),
    authenticateGuard(auth),
    rateLimitGuard(options.limits, (name) => options.registry.get(name) !== undefined),
    eraGuard(),
    toolGateGuard(options.registry, options.policy, options.scopes),
  ]
  const mcpPipeline = compose<HttpContext, Response>(guards, dispatch(modern, sessions))
  const metricsPipeline = compose<HttpContext, Response>(
    [httpAudit(audit), dnsRebindingGuard(options.origins), queryCredentialGuard(), anonymousLimitGuard(options.limits), authenticateGuard(auth)],
    metricsTerminal(options.metrics, options.grants),
  )
  const notFound = compose<HttpContext, Response>([httpAudit(audit)], async () => {
    throw new SecurityError('ERR_NOT_FOUND', 'no route')
  })

  return {
    sessions,
    modern,
    async fetch(request, info) {
      const url = new URL(request.url)
      if (info.secure) url.protocol = 'https:'
      const ctx: HttpContext = Object.assign(
        createContext({ requestId: requestIdFrom(request.headers.get('x-request-id')), transport: 'http', remoteAddress: info.remoteAddress, signal: request.signal }),
        { request, url, body: undefined, bodyTooLarge: info.bodyTooLarge === true, responseHeaders: new Headers(), resourceServer: options.resourceServer },
      )
      if (url.pathname === '/healthz' && (request.method === 'GET' || request.method === 'HEAD')) {
        return finalizeResponse(ctx, Response.json({ status: 'ok' }, { headers: { 'cache-control': 'no-store' } }))
      }
      try {
        if (url.pathname === path) return await mcpPipeline(ctx)
        if (url.pathname === '/metrics') return await metricsPipeline(ctx)
        return await (oauth(ctx) ?? notFound(ctx))
      } catch (error) {
        // Only reachable if the audit stage itself threw: fail closed without detail.
        options.onError?.(error instanceof Error ? error : new Error(String(error)))
        return finalizeResponse(ctx, errorResponse(ctx, new SecurityError('ERR_INTERNAL', 'edge failure')))
      }
    },
    async close() {
      await sessions.closeAll()
      await modern.close()
    },
  }
}
