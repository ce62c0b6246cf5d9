import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { type NodeIncomingMessageLike, toWebRequest } from '@modelcontextprotocol/node'
import { SecurityError } from '../../errors.js'
import { TEXT_BODIES } from '../wire.js'
import type { Edge } from './edge.js'
import { headerFault, requestLineError } from './headers.js'

/**
 * Node glue: `IncomingMessage` → web `Request` (the SDK's node adapter, body bounded by the limit),
 * the edge, then the `Response` back onto the socket with backpressure. A body over the limit is
 * not read further; the edge answers 413 (audited) and the connection is closed.
 */
export function nodeListener(edge: Edge, options: { maxBodyBytes: number; secure: boolean; onError?: (error: Error) => void }) {
  return function bastionListener(req: IncomingMessage, res: ServerResponse): void {
    handle(edge, options, req, res).catch((error: unknown) => {
      options.onError?.(error instanceof Error ? error : new Error(String(error)))
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}')
      else res.destroy()
    })
  }
}

async function handle(edge: Edge, options: { maxBodyBytes: number; secure: boolean }, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const abort = new AbortController()
  res.on('close', () => {
    if (!res.writableFinished) abort.abort()
  })
  const base = { remoteAddress: req.socket.remoteAddress, secure: options.secure }
  const hosts: string[] = []
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]?.toLowerCase() === 'host') hosts.push(req.rawHeaders[i + 1] ?? '')
  // A request line or Host that no URL can be built from is refused here, through the edge's
  // renderer and audit, before anything else reads it.
  const malformed = requestLineError(req.method, req.url, hosts)
  if (malformed !== undefined) {
    req.resume()
    await writeResponse(res, await edge.refuse(malformed, { ...base, method: req.method ?? '' }), abort.signal)
    return
  }
  let request: Request
  let bodyTooLarge = false
  try {
    request = await toWebRequest(req as NodeIncomingMessageLike, undefined, { signal: abort.signal, maxRequestBodySize: options.maxBodyBytes })
  } catch (error) {
    if (!(error instanceof Error) || error.name !== 'RequestBodyTooLargeError') throw error
    bodyTooLarge = true
    request = headersOnly(req, abort.signal)
  }
  const response = await edge.fetch(request, { ...base, bodyTooLarge, headerFault: headerFault(req.rawHeaders) })
  await writeResponse(res, response, abort.signal)
}

/** The request without its body, for answering 413 through the edge. */
function headersOnly(req: IncomingMessage, signal: AbortSignal): Request {
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name.startsWith(':')) continue
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else headers.set(name, value)
  }
  headers.delete('content-length')
  headers.delete('transfer-encoding')
  const host = req.headers.host ?? 'localhost'
  return new Request(`http://${host}${req.url ?? '/'}`, { method: req.method ?? 'POST', headers, signal })
}

async function writeResponse(res: ServerResponse, response: Response, signal: AbortSignal): Promise<void> {
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie') headers[name] = response.headers.getSetCookie()
    else headers[name] = value
  }
  res.writeHead(response.status, headers)
  const text = TEXT_BODIES.get(response)
  if (text !== undefined) {
    res.end(text)
    return
  }
  if (response.body === null) {
    res.end()
    return
  }
  const reader = response.body.getReader()
  // The abort listener is removed when the write ends: a listener left on the request's signal
  // keeps this response (and its request) reachable for as long as the signal lives.
  let onAbort: (() => void) | undefined
  const closed = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined)
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), closed])
      if (next === undefined || next.done) break
      if (!res.write(next.value)) await Promise.race([new Promise<void>((resolve) => res.once('drain', () => resolve())), closed])
    }
  } catch {
    // The client went away or the stream failed: nothing more to send.
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
    if (signal.aborted) await reader.cancel().catch(() => undefined)
    res.end()
  }
}

/**
 * Requests Node's own parser refuses (a control character in a header, a malformed request line):
 * answered 400 with the one error shape and audited through the edge, instead of Node's bare reply.
 */
export function clientErrorListener(edge: Edge, options: { secure: boolean }) {
  return function bastionClientError(error: Error & { code?: string }, socket: Socket): void {
    if (!socket.writable || error.code?.startsWith('ERR_HTTP_REQUEST_TIMEOUT')) {
      socket.destroy()
      return
    }
    const refusal =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? new SecurityError('ERR_HEADER_INVALID', 'request headers too large', { expose: 'request headers too large' })
        : new SecurityError('ERR_INVALID_REQUEST', `unparseable HTTP request (${error.code ?? 'parse error'})`)
    edge
      .refuse(refusal, { remoteAddress: socket.remoteAddress, secure: options.secure, method: '' })
      .then(async (response) => {
        const body = await response.text()
        const head = ['HTTP/1.1 400 Bad Request', 'connection: close', `content-length: ${Buffer.byteLength(body)}`]
        for (const [name, value] of response.headers) head.push(`${name}: ${value}`)
        socket.end(`${head.join('\r\n')}\r\n\r\n${body}`)
      })
      .catch(() => socket.destroy())
  }
}
