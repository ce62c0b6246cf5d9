import { SecurityError } from '../../errors.js'
import type { Exchange, Stage } from '../../pipeline/exchange.js'

/** Does an Accept header admit this media type (RFC 9110 §12.5.1, ignoring q=0 exclusions)? */
export function accepts(accept: string | null, type: string): boolean {
  if (accept === null) return false
  const [major] = type.split('/')
  for (const part of accept.split(',')) {
    const [rangeRaw, ...params] = part.split(';')
    const range = rangeRaw?.trim().toLowerCase()
    if (params.some((p) => /^\s*q\s*=\s*0(\.0*)?\s*$/i.test(p))) continue
    if (range === type || range === '*/*' || range === `${major}/*`) return true
  }
  return false
}

/**
 * Streamable HTTP request shape: POST carries `Content-Type: application/json` (415 otherwise)
 * and accepts both JSON and SSE (406); GET accepts SSE; DELETE needs nothing; other methods 405.
 * Does not check: the body (the body stage does), the session id (the session stage does).
 */
export function checkRequestShape(): Stage {
  return async function checkRequestShapeStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const http = x.http
    if (http === undefined) return next()
    const { method, headers } = http.request
    if (method === 'POST') {
      const contentType = headers.get('content-type')
      const essence = contentType?.split(';')[0]?.trim().toLowerCase()
      if (essence !== 'application/json') throw new SecurityError('ERR_UNSUPPORTED_MEDIA_TYPE', `POST with content-type ${JSON.stringify((contentType ?? '(none)').slice(0, 100))}`)
      const accept = headers.get('accept')
      if (!accepts(accept, 'application/json') || !accepts(accept, 'text/event-stream'))
        throw new SecurityError('ERR_NOT_ACCEPTABLE', 'POST Accept lacks application/json or text/event-stream')
    } else if (method === 'GET') {
      if (!accepts(headers.get('accept'), 'text/event-stream')) throw new SecurityError('ERR_NOT_ACCEPTABLE', 'GET Accept lacks text/event-stream')
    } else if (method !== 'DELETE') {
      http.responseHeaders.set('allow', 'GET, POST, DELETE')
      throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `method ${method.slice(0, 16)} on /mcp`)
    }
    return next()
  }
}
