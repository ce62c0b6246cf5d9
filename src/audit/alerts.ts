import { createHmac } from 'node:crypto'
import type { Logger } from 'pino'
import type { AuditFields } from './audit-log.js'

export interface AlertRule {
  readonly id: string
  /** Audit event to count (`auth.failure`, `authz.denied`, `limit.exceeded`, …). */
  readonly event: string
  /** Optionally only lines with this reason code. */
  readonly reason?: string | undefined
  /** Count per client address, per principal, or per upstream server (gateway events). */
  readonly by: 'remote' | 'principal' | 'upstream'
  readonly threshold: number
  readonly windowSeconds: number
}

export interface Webhook {
  readonly url: URL
  readonly timeoutMs: number
  /** HMAC-SHA256 of the body, sent as `x-bastion-signature: sha256=<hex>`. */
  readonly secret: string | undefined
}

export interface Alert {
  readonly alert: string
  readonly subject: string
  readonly count: number
  readonly windowSeconds: number
  readonly since: string
}

/**
 * Thresholds over the audit trail: N matching lines for one address or principal within a window
 * raise one alert (an `alert` audit line, and a POST to the webhook if configured), then stay
 * quiet for that subject until the window has passed. Counters are bounded and per process.
 * Does not check: delivery (a webhook that fails is logged and counted, never retried, and never
 * fails a request: alerts report, they do not decide).
 */
export class AlertEngine {
  readonly #rules: readonly AlertRule[]
  readonly #webhook: Webhook | undefined
  readonly #log: Logger | undefined
  readonly #now: () => number
  readonly #hits = new Map<string, number[]>()
  readonly #quietUntil = new Map<string, number>()
  #record: ((fields: AuditFields) => void) | undefined
  /** Webhook deliveries in flight (tests and shutdown wait for them). */
  readonly pending = new Set<Promise<void>>()
  failures = 0

  constructor(rules: readonly AlertRule[], webhook: Webhook | undefined, log?: Logger, now: () => number = Date.now) {
    this.#rules = rules
    this.#webhook = webhook
    this.#log = log
    this.#now = now
  }

  /** Where alert lines go (the audit log this engine observes). */
  attach(record: (fields: AuditFields) => void): void {
    this.#record = record
  }

  observe(fields: AuditFields): void {
    if (fields.event === 'alert') return
    const now = this.#now()
    for (const rule of this.#rules) {
      if (fields.event !== rule.event || (rule.reason !== undefined && fields.reason !== rule.reason)) continue
      const subject = rule.by === 'remote' ? fields.remote : rule.by === 'upstream' ? fields.upstream : fields.principal
      if (typeof subject !== 'string' || subject === '') continue
      const key = `${rule.id}\u0000${subject}`
      const since = now - rule.windowSeconds * 1000
      const hits = (this.#hits.get(key) ?? []).filter((t) => t > since)
      hits.push(now)
      if (this.#hits.size > 50_000) this.#hits.clear()
      this.#hits.set(key, hits)
      if (hits.length < rule.threshold || (this.#quietUntil.get(key) ?? 0) > now) continue
      this.#quietUntil.set(key, now + rule.windowSeconds * 1000)
      this.#raise({ alert: rule.id, subject: `${rule.by} ${subject}`, count: hits.length, windowSeconds: rule.windowSeconds, since: new Date(hits[0] ?? now).toISOString() })
    }
  }

  #raise(alert: Alert): void {
    try {
      this.#record?.({ event: 'alert', decision: 'deny', reason: 'ALERT', ...alert })
    } catch (error) {
      this.#log?.error({ err: { message: error instanceof Error ? error.message : 'error' }, alert: alert.alert }, 'alert could not be audited')
    }
    const hook = this.#webhook
    if (hook === undefined) return
    const body = JSON.stringify({ source: 'mcp-bastion', ...alert })
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (hook.secret !== undefined) headers['x-bastion-signature'] = `sha256=${createHmac('sha256', hook.secret).update(body).digest('hex')}`
    const delivery = fetch(hook.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(hook.timeoutMs), redirect: 'error' })
      .then(async (res) => {
        await res.arrayBuffer()
        if (!res.ok) throw new Error(`status ${res.status}`)
      })
      .catch((error: unknown) => {
        this.failures += 1
        this.#log?.warn({ err: { message: error instanceof Error ? error.message : 'error' }, alert: alert.alert }, 'alert webhook failed')
      })
      .finally(() => {
        this.pending.delete(delivery)
      })
    this.pending.add(delivery)
  }
}
