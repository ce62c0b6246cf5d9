import type { SecurityErrorCode } from '../errors.js'
import { toSecurityError } from '../errors.js'
import type { HttpGuard } from '../transport/http/context.js'
import { errorResponse, finalizeResponse } from '../transport/http/responses.js'
import type { AuditLog } from './audit-log.js'

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
  const wrapped = body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ flush: once }))
  const reader = wrapped.getReader()
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done: end, value } = await reader.read()
      if (end) controller.close()
      else controller.enqueue(value)
    },
    async cancel(reason) {
      once()
      await reader.cancel(reason)
    },
  })
  return new Response(stream, { status: response.status, statusText: response.statusText, headers: response.headers })
}

/** The audit event name for a refusal code. */
export function eventFor(code: SecurityErrorCode): string {
  switch (code) {
    case 'ERR_AUTH_MISSING':
    case 'ERR_AUTH_INVALID':
    case 'ERR_AUTH_EXPIRED':
    case 'ERR_AUTH_REVOKED':
      return 'auth.failure'
    case 'ERR_FORBIDDEN':
    case 'ERR_SESSION_FORBIDDEN':
      return 'authz.denied'
    case 'ERR_BODY_TOO_LARGE':
    case 'ERR_JSON_TOO_DEEP':
    case 'ERR_SESSION_LIMIT':
      return 'limit.exceeded'
    case 'ERR_ORIGIN_FORBIDDEN':
    case 'ERR_HOST_FORBIDDEN':
      return 'origin.rejected'
    case 'ERR_VALIDATION':
      return 'validation.failed'
    case 'ERR_INTERNAL':
    case 'ERR_AUDIT_UNAVAILABLE':
      return 'error'
    default:
      return 'request.rejected'
  }
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
      ctx.outcome = {
        event: eventFor(failure.code),
        decision: failure.code === 'ERR_INTERNAL' || failure.code === 'ERR_AUDIT_UNAVAILABLE' ? 'error' : 'deny',
        reason: failure.code,
        detail: failure.message,
        ...(ctx.outcome.extra === undefined ? {} : { extra: ctx.outcome.extra }),
      }
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
      } catch (error) {
        await response.body?.cancel().catch(() => undefined)
        response = errorResponse(ctx, toSecurityError(error))
      }
    }
    return finalizeResponse(ctx, response)
  }
}
