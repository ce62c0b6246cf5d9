import { toSecurityError } from '../errors.js'
import { failureOutcome } from '../pipeline/context.js'
import type { HttpGuard } from '../transport/http/context.js'
import { errorResponse, finalizeResponse } from '../transport/http/responses.js'
import { type AuditLog, eventFor } from './audit-log.js'

function auditOnEnd(response: Response, record: () => void): Response {
  const body = response.body
  if (body === null) return response
  let done = false
  const once = (): void => {
    if (done) return
    done = true
    try {
      record()
    } catch {
      // The response is already on the wire; the sink's failure is reported by the next request.
    }
  }
  const reader = body.getReader()
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done: end, value } = await reader.read()
      if (!end) return controller.enqueue(value)
      once()
      controller.close()
    },
    async cancel(reason) {
      once()
      await reader.cancel(reason)
    },
  })
  return new Response(stream, { status: response.status, statusText: response.statusText, headers: response.headers })
}

/**
 * Outermost stage: turns every throw into the one error shape, writes the request's single audit
 * line (unless an inner stage already wrote it), and stamps the request id on the response.
 * If the line cannot be written the request fails closed with 503, whatever was decided.
 * Does not check: anything; it records.
 */
export function httpAudit(audit: AuditLog): HttpGuard {
  return async function httpAuditGuard(ctx, next) {
    let response: Response
    try {
      response = await next()
    } catch (error) {
      const failure = toSecurityError(error)
      ctx.outcome = failureOutcome(ctx.outcome, eventFor(failure.code), failure)
      response = errorResponse(ctx, failure)
    }
    if (!ctx.audited && ctx.method === 'tools/call' && response.body !== null && response.headers.get('content-type')?.startsWith('text/event-stream')) {
      // A streamed tools/call: the call pipeline writes the line when the tool finishes. If the
      // SDK answered on the stream without running the pipeline, write the line when it ends.
      return finalizeResponse(
        ctx,
        auditOnEnd(response, () => {
          if (!ctx.audited) audit.recordRequest(ctx, { status: response.status })
        }),
      )
    }
    if (!ctx.audited) {
      try {
        audit.recordRequest(ctx, { status: response.status })
        await audit.flush()
      } catch (error) {
        await response.body?.cancel().catch(() => undefined)
        response = errorResponse(ctx, toSecurityError(error))
      }
    }
    return finalizeResponse(ctx, response)
  }
}
