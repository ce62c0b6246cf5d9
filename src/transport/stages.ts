import type { ServerContext } from '@modelcontextprotocol/server'
import { type AuthenticateOptions, authenticate, refuseQueryCredential } from '../auth/http-auth.js'
import type { ScopeRules } from '../auth/resource-metadata.js'
import { SecurityError, toSecurityError } from '../errors.js'
import { type BodyLimits, readBody } from '../limits/body-guard.js'
import { anonymousLimit, type RateLimitDeps, rateLimit } from '../limits/rate-guard.js'
import { authorizeArgs, authorizeTool, resolveTool, validateArgs } from '../pipeline/call-stages.js'
import { compose, type Guard } from '../pipeline/compose.js'
import type { Era, Exchange, Stage } from '../pipeline/exchange.js'
import type { CompiledPolicy } from '../policy/engine.js'
import type { ToolOutput, ToolRegistry } from '../tools/registry.js'
import { checkHostAndOrigin, type OriginPolicy } from './http/dns-rebinding.js'
import { checkHeaders } from './http/headers.js'
import { checkParamHeaders } from './http/param-headers.js'
import { checkRequestShape } from './http/request-shape.js'
import type { ServerDeps } from './mcp-server.js'
import { checkMessage } from './message.js'
import type { Wire } from './wire.js'

export interface StageDeps {
  readonly origins: OriginPolicy
  readonly body: BodyLimits
  readonly limits: RateLimitDeps
  readonly auth: AuthenticateOptions
  readonly registry: ToolRegistry
  readonly policy: () => CompiledPolicy
  readonly scopes: ScopeRules
  /** HTTP: which protocol era a request belongs to (the SDK's classifier). */
  readonly era: (x: Exchange) => Promise<Era>
  /** HTTP 2025-11-25: the session stage. */
  readonly session: Stage
}

/**
 * OpenTelemetry: time a stage (its own work, until it hands on or refuses) as a child span of the
 * request. Without tracing the stage runs as it is.
 */
function timed(name: string, stage: Stage): Stage {
  return async function timedStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const trace = x.trace
    if (trace === undefined) return stage(x, next)
    const start = performance.now()
    let marked = false
    const mark = (): void => {
      if (marked) return
      marked = true
      trace.mark(name, start)
    }
    try {
      return await stage(x, () => {
        mark()
        return next()
      })
    } finally {
      mark()
    }
  }
}

/** OpenTelemetry: open the request's span once the message is read (its parent may be in `params._meta`). */
function openTrace(): Stage {
  return async function openTraceStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    x.trace?.open(x.message)
    return next()
  }
}

/** HTTP: label the request with its protocol era. Does not check: anything; later stages branch on it. */
function classifyEra(era: (x: Exchange) => Promise<Era>): Stage {
  return async function classifyEraStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    if (x.http !== undefined) x.era = await era(x)
    return next()
  }
}

/**
 * THE request path: every MCP request over every transport goes through this list, in this order,
 * after the transport's outermost stage (`answerHttp` / `answerStdio`: render every refusal once,
 * write the one audit line). Stages marked HTTP pass a stdio exchange through untouched. Over HTTP
 * everything up to authentication reads headers only: the body is read after the caller is known,
 * so a refusal before it has no JSON-RPC id to echo (`null`, as for an unreadable body) and costs
 * no body memory. Over stdio the message was read before the list, as a line. After the
 * last stage the SDK dispatches the message, and its handler only runs the tool
 * (limits/execute.ts: concurrency caps, timeout, cancellation, output cap, PII, isolation).
 */
export function requestStages(d: StageDeps): Stage[] {
  return [
    checkHeaders(), //                            HTTP: one copy of each security header, no control characters
    checkHostAndOrigin(d.origins), //             HTTP: Host and Origin allowlists (DNS rebinding)
    checkRequestShape(), //                       HTTP: method, Content-Type, Accept
    refuseQueryCredential(), //                   HTTP: no credential in the URL
    anonymousLimit(d.limits), //                  HTTP: the address's bucket, charged by failed authentication
    timed('authenticate', authenticate(d.auth)), // who is calling, from this request's own credential (headers only)
    readBody(d.body), //                          HTTP: byte cap, strict UTF-8, depth cap, the one JSON parse
    openTrace(), //                               OpenTelemetry: the request's span, its parent from params._meta
    timed(
      'limits',
      rateLimit(d.limits, (n) => d.registry.get(n) !== undefined),
    ), // principal, tenant, global and tool buckets
    checkMessage(), //                            JSON-RPC envelope: what the SDK would refuse never reaches it
    classifyEra(d.era), //                        HTTP: 2026-07-28 or 2025-11-25
    d.session, //                                 HTTP 2025-11-25: the session exists and is this principal's
    resolveTool(d.registry), //                   tools/call: a registered tool, else not found
    timed('policy', authorizeTool(d.policy, d.scopes)), // may this principal use the tool at all; token scopes
    checkParamHeaders(), //                       HTTP 2026-07-28: Mcp-Param-* headers agree with the body
  ] // then the SDK parses the message and calls its tools/call handler, which runs callPath:
}

/**
 * The tool call itself, inside the SDK's handler, so that its refusals travel in the JSON-RPC
 * answer (a validation error in-band, an argument denial as a JSON-RPC error) rather than as an
 * HTTP status: validate → authorize the arguments → run (limits/execute.ts).
 */
export function callPath(policy: () => CompiledPolicy, run: (x: Exchange, mcp: ServerContext, canElicit: boolean) => Promise<ToolOutput>): ServerDeps['run'] {
  const stages: Stage[] = [
    validateArgs(), //                            the tool's schema; its output is the value the tool gets
    timed('policy', authorizeArgs(policy)), //    argument policy on exactly that value
  ]
  return (x, mcp, canElicit) => compose<Exchange, ToolOutput>(stages, (ex) => run(ex, mcp, canElicit))(x)
}

/** Add the request id (and any stage's headers) to an outgoing response. */
function stamp(x: Exchange, response: Response): Response {
  const extra = x.http?.responseHeaders
  extra?.set('x-request-id', x.requestId)
  try {
    for (const [name, value] of extra ?? []) response.headers.set(name, value)
    return response
  } catch {
    // Immutable headers (a Response from fetch): copy once.
    const headers = new Headers(response.headers)
    for (const [name, value] of extra ?? []) headers.set(name, value)
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers })
  }
}

/**
 * HTTP, outermost: whatever happens inside becomes one response rendered by the wire and one audit
 * line. An answer the SDK produced is re-rendered and committed as it leaves (`Wire.settleResponse`);
 * a refusal is committed here. If the line cannot be written the request fails closed with 503.
 * Does not check: anything; it renders and records.
 */
export function answerHttp(wire: Wire): Guard<Exchange, Response> {
  return async function answerHttpStage(x, next) {
    let response: Response
    try {
      // A sink known down refuses before anything runs: a 503 on every path, also for a
      // 2025-11-25 request whose event stream would otherwise have started (HTTP 200) first.
      if (!x.audit.available) throw new SecurityError('ERR_AUDIT_UNAVAILABLE', 'audit sink unavailable')
      response = await wire.settleResponse(x, await next())
    } catch (error) {
      const failure = toSecurityError(error)
      x.audit.fail(failure)
      response = wire.response(x, failure)
      try {
        await x.audit.commit({ status: response.status })
      } catch (auditFailure) {
        response = wire.response(x, toSecurityError(auditFailure))
      }
    }
    return stamp(x, response)
  }
}
