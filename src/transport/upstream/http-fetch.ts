import { AsyncLocalStorage } from 'node:async_hooks'

/** Per call: headers that say who is calling (the signed identity header), and how to fail the call at once. */
export interface CallContext {
  readonly headers: Readonly<Record<string, string>>
  /** An answer to this call broke a limit: the call fails now (the client would wait for the rest). */
  readonly fail: (error: Error) => void
}

export const callContext = new AsyncLocalStorage<CallContext>()

export interface UpstreamFetchOptions {
  /** Time allowed until the answer's headers arrive. */
  readonly connectTimeoutMs: number
  /** Largest JSON answer, or SSE event, in bytes. */
  readonly maxMessageBytes: number
  /** Bastion's own credential and other static headers. */
  readonly headers: Readonly<Record<string, string>>
}

export class UpstreamHttpError extends Error {
  override readonly name = 'UpstreamHttpError'
}

const MAX_REDIRECTS = 3

/** A body that errors once it passes the cap: per event for SSE (a stream may live for hours), in total otherwise. */
function capped(body: ReadableStream<Uint8Array>, max: number, perEvent: boolean, call: CallContext | undefined): ReadableStream<Uint8Array> {
  let count = 0
  // SSE: an event ends at a blank line; a line ends at LF, CR or CRLF (the HTML standard's event stream).
  let lineEmpty = true
  let last = 0
  const over = (controller: TransformStreamDefaultController<Uint8Array>): void => {
    const error = new UpstreamHttpError(`upstream answered more than ${max} bytes`)
    controller.error(error)
    call?.fail(error)
  }
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (perEvent) {
          for (const byte of chunk) {
            if (byte === 0x0a || byte === 0x0d) {
              // The LF of a CRLF ends the same line as its CR.
              if (!(byte === 0x0a && last === 0x0d)) {
                if (lineEmpty) count = 0
                lineEmpty = true
              }
            } else {
              lineEmpty = false
              // Checked byte by byte: one chunk may hold many events, or one huge one.
              if (++count > max) return over(controller)
            }
            last = byte
          }
        } else {
          count += chunk.length
          if (count > max) return over(controller)
        }
        controller.enqueue(chunk)
      },
    }),
  )
}

/**
 * The fetch an HTTP upstream's client uses: bastion's own headers (never the caller's), a
 * deadline for the answer to start, redirects followed only within the upstream's origin, and a
 * size cap on what is read. TLS is verified by the platform (there is no opt-out).
 * Does not check: what the answer means (the MCP client parses it).
 */
export function upstreamFetch(options: UpstreamFetchOptions): (url: string | URL, init?: RequestInit) => Promise<Response> {
  return async function fetchUpstream(url, init = {}) {
    let target = new URL(url)
    const origin = target.origin
    const headers = new Headers(init.headers)
    // The client may carry headers of its own (protocol version, session): bastion's replace any of the same name.
    for (const [name, value] of Object.entries(options.headers)) headers.set(name, value)
    const call = callContext.getStore()
    for (const [name, value] of Object.entries(call?.headers ?? {})) headers.set(name, value)
    for (let hop = 0; ; hop++) {
      // Until the headers arrive only: the body of a long call (or the listening stream) may take longer.
      const deadline = new AbortController()
      const timer = setTimeout(() => deadline.abort(), options.connectTimeoutMs)
      const signal = init.signal == null ? deadline.signal : AbortSignal.any([init.signal, deadline.signal])
      let response: Response
      try {
        response = await fetch(target, { ...init, headers, signal, redirect: 'manual' })
      } catch (error) {
        if (deadline.signal.aborted) throw new UpstreamHttpError(`upstream did not answer within ${options.connectTimeoutMs} ms`)
        throw error
      } finally {
        clearTimeout(timer)
      }
      if (response.status >= 300 && response.status < 400 && response.headers.has('location')) {
        await response.body?.cancel()
        const next = new URL(response.headers.get('location') as string, target)
        if (next.origin !== origin) throw new UpstreamHttpError(`upstream redirected to another origin (${next.origin}): refused`)
        if (hop >= MAX_REDIRECTS) throw new UpstreamHttpError('upstream redirected too many times')
        target = next
        continue
      }
      const length = Number(response.headers.get('content-length') ?? 'NaN')
      const sse = (response.headers.get('content-type') ?? '').startsWith('text/event-stream')
      if (!sse && length > options.maxMessageBytes) {
        await response.body?.cancel()
        const error = new UpstreamHttpError(`upstream answered ${length} bytes, over ${options.maxMessageBytes}`)
        call?.fail(error)
        throw error
      }
      if (response.body === null) return response
      return new Response(capped(response.body, options.maxMessageBytes, sse, call), { status: response.status, statusText: response.statusText, headers: response.headers })
    }
  }
}
