import { SecurityError } from '../errors.js'
import type { HttpGuard } from '../transport/http/context.js'
import { rpcMethodOf } from '../transport/http/context.js'
import { parseJsonBody } from './json-body.js'

export interface BodyLimits {
  /** Largest accepted body in bytes (413 above). */
  readonly maxBytes: number
  /** Deepest accepted JSON nesting. */
  readonly maxDepth: number
}

/**
 * Size and depth limits, then the one JSON parse of the body. Runs before authentication, so the
 * cost an unauthenticated caller can impose is bounded by `maxBytes`.
 * Does not check: the JSON-RPC shape beyond the method name (the SDK does), arguments (the
 * tool's schema does).
 */
export function bodyGuard(limits: BodyLimits): HttpGuard {
  return async function bodyGuardStage(ctx, next) {
    if (ctx.request.method !== 'POST') return next()
    if (ctx.bodyTooLarge) throw new SecurityError('ERR_BODY_TOO_LARGE', `body over ${limits.maxBytes} bytes`)
    const text = await ctx.request.text()
    ctx.body = parseJsonBody(text, limits)
    if (Array.isArray(ctx.body)) throw new SecurityError('ERR_INVALID_REQUEST', 'JSON-RPC batches are not accepted (removed in MCP 2025-06-18)')
    ctx.method = rpcMethodOf(ctx.body)
    return next()
  }
}
