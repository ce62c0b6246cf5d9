import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { SecurityError } from '../../errors.js'
import { TEXT_BODIES } from '../wire.js'
import type { Edge } from './edge.js'
import { headerFault, requestLineError } from './headers.js'

/**
 * Node glue: `IncomingMessage` → web `Request` (the raw body bytes, bounded by the limit), the
 * edge, then the `Response` back onto the socket with backpressure. A body over the limit is not
 * read further; the edge answers 413 (audited) and the connection is closed.
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
  // A request line or Host that no URL can be built from is refused here, through the edge's
  // renderer and audit, before anything else reads it.
  const malformed = requestLineError(req.method, req.url, req.headersDistinct.host ?? [])
  if (malformed !== undefined) {
    req.resume()
    await writeResponse(res, await edge.refuse(malformed, { ...base, method: req.method ?? '' }), abort.signal)
    return
  }
  const body = await readBody(req, options.maxBodyBytes)
  const bodyTooLarge = body === 'too-large'
  const request = toRequest(req, abort.signal, bodyTooLarge ? undefined : body)
  const response = await edge.fetch(request, { ...base, bodyTooLarge, headerFault: headerFault(req.rawHeaders) })
  await writeResponse(res, response, abort.signal)
}

/**
 * The body's bytes exactly as sent, or `too-large` as soon as they pass the limit (the rest is not
 * read). Not decoded here: the body stage decodes once, strictly (a lenient decoder here would
 * drop a byte-order mark and mend invalid UTF-8 before bastion could refuse them).
 */
function readBody(req: IncomingMessage, maxBytes: number): Promise<Uint8Array | undefined | 'too-large'> {
  if (req.method === 'GET' || req.method === 'HEAD') return Promise.resolve(undefined)
  if (Number(req.headers['content-length']) > maxBytes) return Promise.resolve('too-large')
  // Events, not `for await`: the async iterator costs a promise per chunk on every request.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.byteLength
      if (size > maxBytes) {
        done()
        resolve('too-large')
        return
      }
      chunks.push(chunk)
    }
    const onEnd = (): void => {
      done()
      resolve(size === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size))
    }
    const onError = (error: Error): void => {
      done()
      reject(error)
    }
    const done = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
    }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
  })
}

/** The web Request of a Node request whose request line and Host were checked (`requestLineError`). */
function toRequest(req: IncomingMessage, signal: AbortSignal, body: Uint8Array | undefined): Request {
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
  return new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers, signal, ...(body === undefined ? {} : { body }) })
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

/** Answer a refusal on a bare socket (no ServerResponse exists), through the edge's renderer and audit. */
function refuseOnSocket(edge: Edge, socket: Socket, refusal: SecurityError, options: { secure: boolean; method: string }): void {
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
