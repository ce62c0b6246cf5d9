import { Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * Prometheus metrics of one bastion (its own registry: two bastions in one process never mix).
 * Labels are bucket, tool and code names from config and registrations, never principal ids or
 * input, so cardinality is bounded by configuration.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly rateLimited = new Counter({ name: 'bastion_rate_limited_total', help: 'Requests refused by a rate-limit bucket', labelNames: ['bucket'], registers: [this.registry] })
  readonly limiterErrors = new Counter({
    name: 'bastion_rate_limiter_errors_total',
    help: 'Rate-limit backend failures (requests failed closed, or admitted when dangerouslyFailOpen)',
    labelNames: ['backend', 'action'],
    registers: [this.registry],
  })
  readonly toolCalls = new Counter({ name: 'bastion_tool_calls_total', help: 'Tool calls by outcome code', labelNames: ['tool', 'code'], registers: [this.registry] })
  readonly toolSeconds = new Histogram({
    name: 'bastion_tool_duration_seconds',
    help: 'Tool run time',
    labelNames: ['tool'],
    buckets: [0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  })
  readonly inFlight = new Gauge({ name: 'bastion_tool_calls_in_flight', help: 'Tool calls running now in this process', registers: [this.registry] })
  readonly concurrencyRefused = new Counter({
    name: 'bastion_concurrency_refused_total',
    help: 'Tool calls refused by a concurrency cap',
    labelNames: ['cap'],
    registers: [this.registry],
  })

  /** Prometheus text exposition format. */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
