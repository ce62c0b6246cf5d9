import { SecurityError } from '../errors.js'
import type { Exchange, Stage } from '../pipeline/exchange.js'
import { parseJsonBody } from './json-body.js'

export interface BodyLimits {
  /** Largest accepted body in bytes (413 above). */
  readonly maxBytes: number
  /** Deepest accepted JSON nesting. */
  readonly maxDepth: number
}

/**
 * Size and depth limits, then the one JSON parse of an HTTP POST body. Runs before
 * authentication, so the cost an unauthenticated caller can impose is bounded by `maxBytes`.
 * Does not check: the JSON-RPC shape (the message stage does), arguments (the tool's schema does).
 */
export function readBody(limits: BodyLimits): Stage {
  return async function readBodyStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const http = x.http
    if (http === undefined || http.request.method !== 'POST') return next()
    if (http.bodyTooLarge) throw new SecurityError('ERR_BODY_TOO_LARGE', `body over ${limits.maxBytes} bytes`)
    const bytes = new Uint8Array(await http.request.arrayBuffer())
    x.message = parseJsonBody(bytes, limits)
    return next()
  }
}
