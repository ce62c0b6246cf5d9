import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { SecurityError } from '../../errors.js'
import { TEXT_BODIES } from '../wire.js'
import type { Edge } from './edge.js'
import { headerFault, requestLineError } from './headers.js'
import { BodyBudget, declaredLength, LazyBody, type Unread, unreadBody } from './lazy-body.js'

export interface ListenerOptions {
  /** Largest body a request may have (413 above). */
  readonly maxBodyBytes: number
  /**
   * Bytes of request bodies being read or served at once, all requests together: a body that would
   * pass it is refused (429, `Retry-After`) before a byte of it is read.
   */
  readonly maxBodyBytesInFlight: number
  readonly secure: boolean
  readonly onError?: (error: Error) => void
}

/**
 * Node glue: `IncomingMessage` → web `Request`, the edge, then the `Response` back onto the socket
 * with backpressure. The body is not read here: the request's body is a stream that reads the
 * socket only when the body stage pulls it, which is after authentication, so a request that is
 * refused before (no credential, a bad one, a blocked address) costs no body memory. Its unread
 * body is then drained if it is small, else the connection is closed after the answer. Each body
 * read takes its bytes (declared, or as they come) from the in-flight budget until its answer is
 * written.
 * Does not check: what the body holds (the body stage parses it once).
 */
export function nodeListener(edge: Edge, options: ListenerOptions) {
  const budget = new BodyBudget(options.maxBodyBytesInFlight)
  return function bastionListener(req: IncomingMessage, res: ServerResponse): void {
    handle(edge, options, budget, req, res).catch((error: unknown) => {
      options.onError?.(error instanceof Error ? error : new Error(String(error)))
      if (!res.headersSent)
        res.writeHead(500, { 'content-type': 'application/json', connection: 'close' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}')
      else res.destroy()
    })
  }
}

async function handle(edge: Edge, options: ListenerOptions, budget: BodyBudget, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const abort = new AbortController()
  res.on('close', () => {
    if (!res.writableFinished) abort.abort()
  })
  const base = { remoteAddress: req.socket.remoteAddress, secure: options.secure }
  // A request line or Host that no URL can be built from is refused here, through the edge's
  // renderer and audit, before anything else reads it.
  const malformed = requestLineError(req.method, req.url, req.headersDistinct.host ?? [])
  if (malformed !== undefined) {
    await writeResponse(res, await edge.refuse(malformed, { ...base, method: req.method ?? '' }), abort.signal, unreadBody(req))
    return
  }
  const declared = declaredLength(req)
  const bodyTooLarge = declared !== undefined && declared > options.maxBodyBytes
  const body = req.method === 'GET' || req.method === 'HEAD' || bodyTooLarge || declared === 0 ? undefined : new LazyBody(req, declared, options.maxBodyBytes, budget)
  try {
    const request = toRequest(req, abort.signal, body)
    const response = await edge.fetch(request, { ...base, bodyTooLarge, headerFault: headerFault(req.rawHeaders) })
    await writeResponse(res, response, abort.signal, body === undefined ? unreadBody(req) : body.unread())
  } finally {
    body?.release()
  }
}

/** The web Request of a Node request whose request line and Host were checked (`requestLineError`). */
function toRequest(req: IncomingMessage, signal: AbortSignal, body: LazyBody | undefined): Request {
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name.startsWith(':')) continue
    if (Array.isArray(value)) for (const v of value) headers.append(name, v)
    else headers.set(name, value)
  }
  if (body === undefined) {
    headers.delete('content-length')
    headers.delete('transfer-encoding')
  }
  const init: RequestInit & { duplex?: 'half' } = { method: req.method ?? 'GET', headers, signal }
  if (body !== undefined) {
    init.body = body.stream
    init.duplex = 'half'
  }
  return new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, init)
}

/**
 * Write the answer. A body left unread is drained by Node when small (`drain`); otherwise the
 * answer says `connection: close` and the socket is closed after it, the body never read.
 * An event stream's headers go out at once: a 2025-11-25 GET stream may carry nothing for a while.
 */
async function writeResponse(res: ServerResponse, response: Response, signal: AbortSignal, unread: Unread): Promise<void> {
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie') headers[name] = response.headers.getSetCookie()
    else headers[name] = value
  }
  if (unread === 'close') headers.connection = 'close'
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
  if ((response.headers.get('content-type') ?? '').startsWith('text/event-stream')) res.flushHeaders()
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

/** Answer a refusal on a bare socket (no ServerResponse exists), through the edge's renderer and audit. */
export function refuseOnSocket(edge: Edge, socket: Socket, refusal: SecurityError, options: { secure: boolean; method: string }): void {
  edge
    .refuse(refusal, { remoteAddress: socket.remoteAddress, secure: options.secure, method: options.method })
    .then(async (response) => {
      const body = await response.text()
      const head = [`HTTP/1.1 ${response.status} ${response.statusText || 'Bad Request'}`, 'connection: close', `content-length: ${Buffer.byteLength(body)}`]
      for (const [name, value] of response.headers) head.push(`${name}: ${value}`)
      socket.end(`${head.join('\r\n')}\r\n\r\n${body}`)
    })
    .catch(() => socket.destroy())
}

/**
 * Requests Node's own parser refuses (a control character in a header, a malformed request line):
 * answered 400 with the one error shape and audited through the edge, instead of Node's bare reply.
 */
export function clientErrorListener(edge: Edge, options: { secure: boolean }) {
  return function bastionClientError(error: Error & { code?: string }, socket: Socket): void {
    if (!socket.writable || error.code?.startsWith('ERR_HTTP_REQUEST_TIMEOUT') === true) {
      socket.destroy()
      return
    }
    // llhttp's codes: HPE_HEADER_OVERFLOW, HPE_INVALID_HEADER_TOKEN (a control character in a header), …
    const refusal = error.code?.includes('HEADER')
      ? new SecurityError('ERR_HEADER_INVALID', `malformed request headers (${error.code})`, { expose: 'malformed request headers' })
      : new SecurityError('ERR_INVALID_REQUEST', `unparseable HTTP request (${error.code ?? 'parse error'})`)
    refuseOnSocket(edge, socket, refusal, { secure: options.secure, method: '' })
  }
}

/** `CONNECT` (which Node hands over as a raw socket, not a request): never served, 405 and audited. */
export function connectListener(edge: Edge, options: { secure: boolean }) {
  return function bastionConnect(_req: IncomingMessage, socket: Socket): void {
    refuseOnSocket(edge, socket, new SecurityError('ERR_METHOD_NOT_ALLOWED', 'method CONNECT is never served'), { secure: options.secure, method: 'CONNECT' })
  }
}
