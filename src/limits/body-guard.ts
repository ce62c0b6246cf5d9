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
 * Size and depth limits, then the one JSON parse of an HTTP POST body. Runs after authentication:
 * the body of a request refused before it is never read (the Node listener reads the socket only
 * when this stage pulls the stream, and closes the connection on a large unread body). A declared
 * length over the cap is refused without reading; an undeclared one is read up to the cap and no
 * further. A refusal the stream itself ends with (the listener's in-flight budget, its byte cap)
 * is rethrown as it is.
 * Does not check: the JSON-RPC shape (the message stage does), arguments (the tool's schema does).
 */
export function readBody(limits: BodyLimits): Stage {
  return async function readBodyStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const http = x.http
    if (http === undefined || http.request.method !== 'POST') return next()
    const declared = Number(http.request.headers.get('content-length') ?? Number.NaN)
    if (http.bodyTooLarge || declared > limits.maxBytes) throw new SecurityError('ERR_BODY_TOO_LARGE', `body over ${limits.maxBytes} bytes`)
    x.message = parseJsonBody(await readBytes(http.request.body, limits.maxBytes), limits)
    return next()
  }
}

/**
 * A body stream's bytes, up to `maxBytes` (one past it is a refusal; the rest is not read).
 * @throws SecurityError ERR_BODY_TOO_LARGE, ERR_INVALID_REQUEST (the stream broke off)
 */
export async function readBytes(body: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<Uint8Array> {
  if (body === null) return new Uint8Array(0)
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined)
        throw new SecurityError('ERR_BODY_TOO_LARGE', `body over ${maxBytes} bytes`)
      }
      chunks.push(value)
    }
  } catch (error) {
    if (error instanceof SecurityError) throw error
    throw new SecurityError('ERR_INVALID_REQUEST', 'the request body was not received in full', { cause: error })
  } finally {
    reader.releaseLock()
  }
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0]
  return Buffer.concat(chunks, size)
}
