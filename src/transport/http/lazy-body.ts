import type { IncomingMessage } from 'node:http'
import { SecurityError } from '../../errors.js'

/**
 * A body left unread after the answer is drained (read and discarded, keeping the connection) only
 * when it is this small; a larger or unsized one is not read: the connection is closed instead.
 */
const DRAIN_MAX_BYTES = 16 * 1024

/** How long a client refused the in-flight body budget should wait (a hint). */
const BUDGET_RETRY_MS = 1000

/** Bytes of request bodies in flight, shared by the requests of one listener. */
export class BodyBudget {
  #used = 0
  constructor(readonly max: number) {}
  /** Take `bytes` if they fit; false (nothing taken) if not. */
  take(bytes: number): boolean {
    if (this.#used + bytes > this.max) return false
    this.#used += bytes
    return true
  }
  give(bytes: number): void {
    this.#used -= bytes
  }
}

/** `content-length` as a number; undefined when absent (chunked) or not a plain decimal (Node's parser refused those). */
export function declaredLength(req: IncomingMessage): number | undefined {
  const value = req.headers['content-length']
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined
}

/** What is left of a body nobody read: none, small enough to drain, or to close the connection on. */
export type Unread = 'none' | 'drain' | 'close'

export function unreadBody(req: IncomingMessage): Unread {
  if (req.complete) return 'none'
  const declared = declaredLength(req)
  if (declared === 0 || (declared === undefined && req.headers['transfer-encoding'] === undefined)) return 'none'
  return declared !== undefined && declared <= DRAIN_MAX_BYTES ? 'drain' : 'close'
}

/**
 * The body of a Node request as a web stream that reads the socket only when pulled: nothing is
 * read before the body stage asks. The byte cap and the in-flight budget are checked as it reads;
 * either ends the stream with the refusal (a SecurityError the body stage rethrows).
 */
export class LazyBody {
  readonly stream: ReadableStream<Uint8Array>
  #taken = 0
  #started = false
  #failed = false
  readonly #req: IncomingMessage
  readonly #budget: BodyBudget

  constructor(req: IncomingMessage, declared: number | undefined, maxBytes: number, budget: BodyBudget) {
    this.#req = req
    this.#budget = budget
    let size = 0
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined
    const fail = (error: Error): void => {
      this.#failed = true
      detach()
      req.pause()
      controller?.error(error)
    }
    const take = (bytes: number): boolean => {
      if (!budget.take(bytes)) {
        fail(new SecurityError('ERR_CONCURRENCY_LIMIT', `request bodies in flight would pass ${budget.max} bytes`, { retryAfterMs: BUDGET_RETRY_MS }))
        return false
      }
      this.#taken += bytes
      return true
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.byteLength
      if (size > maxBytes) {
        fail(new SecurityError('ERR_BODY_TOO_LARGE', `body over ${maxBytes} bytes`))
        return
      }
      // A declared length was taken whole before reading; a chunked body takes its bytes as they come.
      if (declared === undefined && !take(chunk.byteLength)) return
      controller?.enqueue(chunk)
      if ((controller?.desiredSize ?? 0) <= 0) req.pause()
    }
    const onEnd = (): void => {
      detach()
      controller?.close()
    }
    const onAborted = (): void => fail(new Error('the client closed the connection before the body was read'))
    const detach = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onAborted)
      req.off('aborted', onAborted)
    }
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          controller = c
        },
        pull: () => {
          if (!this.#started) {
            this.#started = true
            if (declared !== undefined && !take(declared)) return
            req.on('data', onData)
            req.on('end', onEnd)
            req.on('error', onAborted)
            req.on('aborted', onAborted)
          }
          req.resume()
        },
        cancel: () => {
          this.#failed = true
          detach()
          req.pause()
        },
      },
      // 0: pull (and so the first read of the socket) only when the body stage reads.
      { highWaterMark: 0 },
    )
  }

  /** What is left unread once the answer is decided. */
  unread(): Unread {
    if (this.#req.complete) return 'none'
    return this.#started || this.#failed ? 'close' : unreadBody(this.#req)
  }

  /** Give the budget back: the answer is written (or the request failed). */
  release(): void {
    this.#budget.give(this.#taken)
    this.#taken = 0
  }
}
