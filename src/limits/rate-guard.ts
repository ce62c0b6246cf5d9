import { SecurityError, toSecurityError, WIRE } from '../errors.js'
import { type Exchange, type Stage, toolNameOf } from '../pipeline/exchange.js'
import type { Metrics } from '../pipeline/metrics.js'
import type { RateLimiter } from './memory-limiter.js'
import type { RatePlan } from './rate-plan.js'
import type { Charge } from './token-bucket.js'

export interface RateLimitDeps {
  readonly limiter: RateLimiter
  readonly plan: RatePlan
  readonly metrics: Metrics
  /** Admit when the backend is down (audited as `limits: fail-open`). Default: refuse. */
  readonly dangerouslyFailOpen: boolean
}

/**
 * Charge a request to its buckets. A refusal throws ERR_RATE_LIMITED naming the bucket, with the
 * exact wait; the audit line gets both. A backend failure throws ERR_LIMITS_UNAVAILABLE (503)
 * unless the operator opted out, in which case the request passes and its audit line says so.
 */
export async function charge(deps: RateLimitDeps, x: Exchange, charges: readonly Charge[], peek = false): Promise<void> {
  let decision: Awaited<ReturnType<RateLimiter['take']>>
  try {
    decision = await deps.limiter.take(charges, peek)
  } catch (error) {
    const failure = toSecurityError(error)
    if (!deps.dangerouslyFailOpen) {
      deps.metrics.limiterErrors.inc({ backend: deps.limiter.backend, action: 'refused' })
      throw failure.code === 'ERR_LIMITS_UNAVAILABLE' ? failure : new SecurityError('ERR_LIMITS_UNAVAILABLE', `rate limiter failed: ${failure.message}`, { cause: error })
    }
    deps.metrics.limiterErrors.inc({ backend: deps.limiter.backend, action: 'admitted' })
    x.audit.note({ limits: 'fail-open', limitsError: failure.message.slice(0, 200) })
    return
  }
  if (decision.admitted) return
  deps.metrics.rateLimited.inc({ bucket: decision.bucket })
  x.audit.note({ bucket: decision.bucket, retryAfterMs: decision.retryAfterMs })
  throw new SecurityError('ERR_RATE_LIMITED', `bucket ${decision.bucket} is empty; retry in ${decision.retryAfterMs} ms`, { retryAfterMs: decision.retryAfterMs })
}

/**
 * Before authentication: a client address whose anonymous bucket is empty is refused before any
 * credential is verified; each failed authentication takes a token from it. Authenticated
 * requests cost it nothing, so many users behind one address are limited by their own buckets.
 * Does not check: who the caller is (authentication does), authenticated request rates.
 */
export function anonymousLimit(deps: RateLimitDeps): Stage {
  return async function anonymousLimitStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    if (x.http === undefined) return next()
    const charges = deps.plan.anonymous(x.remoteAddress)
    await charge(deps, x, charges, true)
    try {
      return await next()
    } catch (error) {
      if (x.principal === undefined && error instanceof SecurityError && WIRE[error.code].http === 401) {
        // Best effort: the request is refused either way; a backend failure here must not turn
        // the authentication failure into a different answer.
        await deps.limiter.take(charges).catch(() => undefined)
      }
      throw error
    }
  }
}

/**
 * After authentication: charge every message (JSON-RPC requests, notifications, responses, stream
 * GETs and DELETEs alike: none is free to serve) to the principal's, tenant's and global buckets,
 * and a `tools/call` of a registered tool also its cost, tier and own bucket, all or nothing; a
 * refusal is HTTP 429 with `Retry-After`.
 * Does not check: unregistered tool names (charged like any request; the resolve stage answers
 * not-found), requests in flight (the concurrency cap does).
 */
export function rateLimit(deps: RateLimitDeps, isTool: (name: string) => boolean): Stage {
  return async function rateLimitStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const principal = x.principal
    if (principal === undefined) throw new SecurityError('ERR_INTERNAL', 'rate limit stage reached unauthenticated')
    const named = toolNameOf(x.message)
    await charge(deps, x, deps.plan.forRequest(principal, named !== undefined && isTool(named) ? named : undefined))
    return next()
  }
}
