import { createHash } from 'node:crypto'
import type { Context, Histogram, Span, TextMapGetter, TextMapPropagator, Tracer } from '@opentelemetry/api'
import { type LoadedConfig, readSecret } from '../config/load.js'
import { secureUrl } from '../config/urls.js'
import { redactText } from '../protect/redact.js'
import { VERSION } from '../version.js'

/**
 * OpenTelemetry traces, following the semantic conventions for MCP (GenAI conventions, Development
 * status): one SERVER span per request named `{mcp.method.name} {target}`, and one child span per
 * stage that costs (authenticate, limits, policy, tool, upstream). The trace context comes from
 * the request's `params._meta` (`traceparent`, `tracestate`), else the HTTP headers, and goes on to
 * upstreams the same two ways. Only `@opentelemetry/api` is loaded by default; the SDK and the
 * OTLP/HTTP exporter are loaded when `telemetry.otlp.endpoint` is set.
 * Does not record: arguments, results, credentials or session ids (a session id is hashed).
 */
export interface Tracing {
  readonly tracer: Tracer
  /** `mcp.server.operation.duration` (seconds), when metrics are exported. */
  readonly duration: Histogram | undefined
  readonly propagator: TextMapPropagator
  /** The API's context and span helpers (loaded with the rest). */
  readonly api: typeof import('@opentelemetry/api')
  /** Flush what is buffered and stop exporting. */
  shutdown(): Promise<void>
}

/** The tracing a config asks for, or undefined when `telemetry.otlp.endpoint` is not set. @throws ConfigError */
export async function startTracing(loaded: LoadedConfig, env: NodeJS.ProcessEnv): Promise<Tracing | undefined> {
  const otlp = loaded.config.telemetry.otlp
  if (otlp === undefined) return undefined
  const url = secureUrl(loaded, 'telemetry.otlp.endpoint', otlp.endpoint)
  const headers = Object.fromEntries(Object.entries(otlp.headers).map(([k, ref]) => [k, readSecret(loaded, ref, `telemetry.otlp.headers.${k}`, env)]))
  const [api, core, sdk, resources, exporter, metricsSdk, metricsExporter] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/sdk-metrics'),
    import('@opentelemetry/exporter-metrics-otlp-http'),
  ])
  const resource = resources.resourceFromAttributes({ 'service.name': loaded.config.telemetry.serviceName, 'service.version': VERSION })
  // Metrics go beside the traces (`…/v1/metrics` for `…/v1/traces`), or where configured.
  const metricsAt =
    otlp.metricsEndpoint === undefined
      ? url.pathname.endsWith('/v1/traces')
        ? new URL(url.href.replace(/\/v1\/traces$/, '/v1/metrics'))
        : undefined
      : secureUrl(loaded, 'telemetry.otlp.metricsEndpoint', otlp.metricsEndpoint)
  const meters =
    metricsAt === undefined
      ? undefined
      : new metricsSdk.MeterProvider({
          resource,
          readers: [
            new metricsSdk.PeriodicExportingMetricReader({
              exporter: new metricsExporter.OTLPMetricExporter({ url: metricsAt.href, headers, timeoutMillis: otlp.timeoutMs }),
              exportIntervalMillis: otlp.flushIntervalMs,
              exportTimeoutMillis: Math.min(otlp.timeoutMs, otlp.flushIntervalMs),
            }),
          ],
        })
  const duration = meters?.getMeter('mcp-bastion', VERSION).createHistogram('mcp.server.operation.duration', {
    unit: 's',
    description: 'MCP request duration as observed on the server, from the request until its answer',
    // The bucket boundaries the semantic conventions for MCP recommend.
    advice: { explicitBucketBoundaries: [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300] },
  })
  const provider = new sdk.TracerProvider({
    resource,
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter: new exporter.OTLPTraceExporter({ url: url.href, headers, timeoutMillis: otlp.timeoutMs }),
        scheduledDelayMillis: otlp.flushIntervalMs,
        // Full: spans are dropped (never requests slowed).
        maxQueueSize: 8192,
      }),
    ],
  })
  return {
    tracer: provider.getTracer('mcp-bastion', VERSION),
    duration,
    propagator: new core.W3CTraceContextPropagator(),
    api,
    shutdown: async () => {
      await Promise.all([provider.shutdown(), meters?.shutdown()])
    },
  }
}

const objectGetter: TextMapGetter<Record<string, unknown>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const v = carrier[key]
    return typeof v === 'string' ? v : undefined
  },
}
const headersGetter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
}

/** What a finished request reports on its span. */
export interface TraceOutcome {
  readonly method: string | undefined
  readonly tool: string | undefined
  readonly requestId: string
  readonly rpcId: string | number | null
  readonly transport: 'http' | 'stdio' | 'websocket'
  readonly era: 'modern' | 'legacy' | undefined
  readonly sessionId: string | undefined
  readonly principal: string | undefined
  readonly decision: 'allow' | 'deny' | 'error'
  readonly reason: string
  /** The JSON-RPC error code sent, when the answer was one. */
  readonly rpcCode: number | undefined
}

const attr = (value: string): string => redactText(value).slice(0, 256)

/** The attributes a span and the duration metric share (the conventions' low-cardinality ones). */
function commonAttributes(o: TraceOutcome): Record<string, string> {
  const tool =
    o.tool === undefined ? {} : o.method === 'prompts/get' ? { 'gen_ai.prompt.name': attr(o.tool) } : { 'gen_ai.tool.name': attr(o.tool), 'gen_ai.operation.name': 'execute_tool' }
  return {
    ...(o.method === undefined ? {} : { 'mcp.method.name': o.method }),
    'network.transport': o.transport === 'stdio' ? 'pipe' : 'tcp',
    ...(o.era === undefined ? {} : { 'mcp.protocol.version': o.era === 'modern' ? '2026-07-28' : '2025-11-25' }),
    ...tool,
    ...(o.reason === 'OK' ? {} : { 'error.type': o.reason }),
  }
}

/**
 * The trace of one exchange: stage timings are kept until the server span exists (it is opened
 * once the message is read, so that its parent can come from `params._meta`), then each becomes
 * a child span with its own start and end. Cheap: performance.now() pairs, no span before it is known.
 */
export class ExchangeTrace {
  readonly #tracing: Tracing
  readonly #startedAt: number
  readonly #headers: Headers | undefined
  readonly #marks: [string, number, number][] = []
  #span: Span | undefined
  #context: Context | undefined
  #ended = false

  constructor(tracing: Tracing, startedAt: number, headers: Headers | undefined) {
    this.#tracing = tracing
    this.#startedAt = startedAt
    this.#headers = headers
  }

  /** A stage that costs took [start, end) (performance.now() times). */
  mark(name: string, start: number, end = performance.now()): void {
    if (this.#ended) return
    if (this.#context === undefined) this.#marks.push([name, start, end])
    else this.#child(name, start, end)
  }

  /** Open the server span: parent from the message's `params._meta`, else the HTTP headers. */
  open(message: unknown): void {
    if (this.#span !== undefined) return
    const { api, propagator, tracer } = this.#tracing
    const meta = (message as { params?: { _meta?: unknown } } | undefined)?.params?._meta
    let parent = api.ROOT_CONTEXT
    if (meta !== null && typeof meta === 'object' && typeof (meta as Record<string, unknown>).traceparent === 'string')
      parent = propagator.extract(parent, meta as Record<string, unknown>, objectGetter)
    else if (this.#headers?.has('traceparent') === true) parent = propagator.extract(parent, this.#headers, headersGetter)
    this.#span = tracer.startSpan('mcp', { kind: api.SpanKind.SERVER, startTime: this.#startedAt }, parent)
    this.#context = api.trace.setSpan(parent, this.#span)
    for (const [name, start, end] of this.#marks.splice(0)) this.#child(name, start, end)
  }

  /** W3C trace context of this request's span, for a request it sends on (an upstream). */
  carrier(): Record<string, string> {
    const out: Record<string, string> = {}
    if (this.#context !== undefined) this.#tracing.propagator.inject(this.#context, out, { set: (c, k, v) => (c[k] = v) })
    return out
  }

  /** End the server span with what the request came to (after its audit line). */
  finish(o: TraceOutcome): void {
    // A 2025-11-25 call re-entered after asking the client for input: its first round's span stands.
    if (this.#ended) return
    this.#ended = true
    try {
      this.#end(o)
    } catch {
      // Tracing never fails a request.
    }
  }

  #end(o: TraceOutcome): void {
    this.open(undefined)
    const span = this.#span
    if (span === undefined) return
    const { api } = this.#tracing
    // Refused before its message was read: no method to name it by.
    const method = o.method
    span.updateName(method === undefined ? 'mcp' : o.tool === undefined ? method : `${method} ${o.tool}`)
    span.setAttributes({
      ...commonAttributes(o),
      'bastion.request_id': o.requestId,
      'bastion.decision': o.decision,
      'bastion.reason': o.reason,
      ...(o.rpcId === null ? {} : { 'jsonrpc.request.id': String(o.rpcId) }),
      ...(o.sessionId === undefined ? {} : { 'mcp.session.id': createHash('sha256').update(o.sessionId).digest('hex').slice(0, 16) }),
      ...(o.principal === undefined ? {} : { 'bastion.principal': attr(o.principal) }),
      ...(o.rpcCode === undefined ? {} : { 'rpc.response.status_code': String(o.rpcCode) }),
    })
    if (o.decision !== 'allow') span.setStatus({ code: api.SpanStatusCode.ERROR, message: o.reason })
    span.end()
    this.#tracing.duration?.record((performance.now() - this.#startedAt) / 1000, commonAttributes(o))
  }

  #child(name: string, start: number, end: number): void {
    const child = this.#tracing.tracer.startSpan(name, { kind: this.#tracing.api.SpanKind.INTERNAL, startTime: start }, this.#context)
    child.end(end)
  }
}
