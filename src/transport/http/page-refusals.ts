import { isSecurityErrorCode, type SecurityErrorCode, WIRE } from '../../errors.js'
import type { Guard } from '../../pipeline/compose.js'
import type { Exchange } from '../../pipeline/exchange.js'
import { html, page, type SafeHtml } from './pages.js'

export interface PageRefusalOptions {
  readonly title: string
  readonly heading: string
  /** What the person reads for a code (default: the wire table's text). */
  readonly text?: (code: SecurityErrorCode) => string
  /** Below the request id: where to go next. */
  readonly footer?: SafeHtml
  /** Headers of the refusal the page carries too (default `retry-after`, `x-request-id`). */
  readonly keepHeaders?: readonly string[]
  /** Requests whose answers stay JSON (an API under the same path). */
  readonly keepJson?: (x: Exchange) => boolean
}

/**
 * Outermost on routes that answer a person: a refusal the shared stages rendered as JSON (a foreign
 * Origin, a Host not allowed, a blocked address, a role missing, the audit sink down) is shown as
 * an error page with the same status, code and request id (already audited once). The text comes
 * from the code the answer carries, never from the body's words.
 * Does not check: anything.
 */
export function pageRefusals(o: PageRefusalOptions): Guard<Exchange, Response> {
  return async function pageRefusalsStage(x, next) {
    const response = await next()
    if (response.status < 400 || o.keepJson?.(x) === true || !(response.headers.get('content-type') ?? '').startsWith('application/json')) return response
    let text = 'the request was refused'
    let code = ''
    try {
      const body = (await response.clone().json()) as { error?: { data?: { code?: unknown } } }
      const carried = body.error?.data?.code
      if (isSecurityErrorCode(carried)) {
        code = carried
        text = o.text?.(carried) ?? WIRE[carried].text
      }
    } catch {
      // Not the wire's JSON: the generic text.
    }
    const headers: Record<string, string> = {}
    for (const name of o.keepHeaders ?? ['retry-after', 'x-request-id']) {
      const value = response.headers.get(name)
      if (value !== null) headers[name] = value
    }
    return page({
      status: response.status,
      title: o.title,
      headers,
      body: html`<main id="error"><h1>${o.heading}</h1><p class="bad">${text}${code === '' ? '' : ` (${code})`}.</p><p class="muted">Request id <code>${x.requestId}</code>.</p>${o.footer ?? html``}</main>`,
    })
  }
}
