import { readFileSync } from 'node:fs'
import { connect } from 'node:net'

/** A header as it goes on the wire: name and value exactly as given (repeats and odd bytes survive). */
export type RawHeader = readonly [name: string, value: string]

export interface RawResponse {
  readonly status: number
  /** Lowercase names; a repeated header keeps every value. */
  readonly headers: ReadonlyMap<string, readonly string[]>
  readonly body: string
  /** Everything the server wrote, for leak checks. */
  readonly raw: string
}

export interface RawRequest {
  readonly method?: string
  readonly target?: string
  readonly headers: readonly RawHeader[]
  /** Sent as given; `Content-Length` is always computed from it (the server must never wait on a lie). */
  readonly body?: string | Buffer
}

/** The bytes of an HTTP/1.1 request. Header values are written as UTF-8, `Connection: close` last. */
export function requestBytes(r: RawRequest): Buffer {
  const body = r.body === undefined ? Buffer.alloc(0) : typeof r.body === 'string' ? Buffer.from(r.body, 'utf8') : r.body
  const head = [`${r.method ?? 'POST'} ${r.target ?? '/mcp'} HTTP/1.1`]
  for (const [name, value] of r.headers) head.push(`${name}: ${value}`)
  if (r.body !== undefined || (r.method ?? 'POST') === 'POST') head.push(`content-length: ${body.length}`)
  head.push('connection: close')
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'utf8'), body])
}

function dechunk(body: Buffer): Buffer | undefined {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = body.indexOf('\r\n', at)
    if (eol < 0) return undefined
    const size = Number.parseInt(body.subarray(at, eol).toString('latin1'), 16)
    if (!Number.isFinite(size)) return undefined
    if (size === 0) return Buffer.concat(parts)
    if (body.length < eol + 2 + size + 2) return undefined
    parts.push(body.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
}

function parse(bytes: Buffer, closed: boolean): RawResponse | undefined {
  const end = bytes.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? Number.NaN)
  const headers = new Map<string, string[]>()
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).trim().toLowerCase()
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()])
  }
  const rest = bytes.subarray(end + 4)
  const length = headers.get('content-length')?.[0]
  let body: Buffer | undefined
  if (length !== undefined) body = rest.length >= Number(length) ? rest.subarray(0, Number(length)) : undefined
  else if (headers.get('transfer-encoding')?.[0]?.toLowerCase() === 'chunked') body = dechunk(rest)
  // No framing (a HEAD answer, or a body delimited by the close): complete once the server closes.
  else if (closed) body = rest
  if (body === undefined) return undefined
  return { status, headers, body: body.toString('utf8'), raw: bytes.toString('latin1') }
}

/**
 * One request over a fresh TCP connection to 127.0.0.1. Resolves when the response is complete
 * (by Content-Length or the last chunk) or the server closes; rejects on timeout or a socket that
 * closes before a status line.
 */
export function rawRequest(port: number, bytes: Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let done = false
    const finish = (error?: Error): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      const all = Buffer.concat(chunks)
      const parsed = parse(all, true)
      if (parsed !== undefined) resolve(parsed)
      else reject(error ?? new Error(`no complete HTTP response (${all.length} bytes: ${JSON.stringify(all.toString('latin1').slice(0, 200))})`))
    }
    const timer = setTimeout(() => finish(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs)
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      if (parse(Buffer.concat(chunks), false) !== undefined) finish()
    })
    socket.on('end', () => finish())
    socket.on('close', () => finish())
    // A server that answers and closes before reading the whole request resets the connection; what it wrote still counts.
    socket.on('error', (error) => finish(error))
    // Not end(): a half-closed connection makes Node abort a request still being answered.
    socket.write(bytes)
  })
}

/** The one header value of a response, or undefined. */
export const header = (res: RawResponse, name: string): string | undefined => res.headers.get(name)?.[0]

/** JSON-RPC messages of a response: the JSON body, or every `data:` event of an event stream. */
export function messagesOf(res: RawResponse): Record<string, unknown>[] {
  const type = header(res, 'content-type') ?? ''
  if (type.startsWith('text/event-stream'))
    return res.body
      .split('\n')
      .filter((l) => l.startsWith('data: ') && l.length > 6)
      .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>)
  if (res.body.length === 0) return []
  return [JSON.parse(res.body) as Record<string, unknown>]
}

/**
 * The audit file read incrementally: each call to `since()` of a mark returns only lines written
 * after it, without re-reading the whole file (thousands of requests share one server).
 */
export class AuditTail {
  readonly #path: string
  readonly #lines: Record<string, unknown>[] = []
  #offset = 0
  #partial = Buffer.alloc(0)

  constructor(path: string) {
    this.#path = path
  }

  #read(): void {
    const bytes = readFileSync(this.#path)
    if (bytes.length <= this.#offset) return
    // Bytes, not text, until a line is whole: a read may end inside a multi-byte character.
    const fresh = Buffer.concat([this.#partial, bytes.subarray(this.#offset)])
    this.#offset = bytes.length
    const end = fresh.lastIndexOf(0x0a)
    this.#partial = fresh.subarray(end + 1)
    for (const l of fresh.subarray(0, Math.max(0, end)).toString('utf8').split('\n')) if (l.length > 0) this.#lines.push(JSON.parse(l) as Record<string, unknown>)
  }

  /** A position; the function returns the lines written after it. */
  mark(): () => Record<string, unknown>[] {
    this.#read()
    const start = this.#lines.length
    return () => {
      this.#read()
      return this.#lines.slice(start)
    }
  }
}
