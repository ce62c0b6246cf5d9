import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { freePort } from '../helpers/processes.js'
import { callModern, connect, JSON_HEADERS, MODERN_META, modernHeaders, rpcBody, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

// A local OTLP/HTTP receiver: what the exporter sends, as JSON (OTLP/JSON, the exporter's encoding).
interface OtlpValue {
  stringValue?: string
  intValue?: string | number
}
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: { key: string; value: OtlpValue }[]
  status?: { code?: number; message?: string }
}
let receiver: Server
let bodies: string[] = []
const metrics: string[] = []
const spans = (): OtlpSpan[] =>
  bodies.flatMap((b) => (JSON.parse(b) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }).resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))
const attrs = (s: OtlpSpan): Record<string, string> => Object.fromEntries(s.attributes.map((a) => [a.key, String(a.value.stringValue ?? a.value.intValue)]))

let server: TestServer
const SECRET_ARG = 'do-not-export-this-argument-7f3a'
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT = '00f067aa0ba902b7'

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => {
      body += c.toString()
    })
    req.on('end', () => {
      if (req.url === '/v1/traces') bodies.push(body)
      if (req.url === '/v1/metrics') metrics.push(body)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/v1/traces`
  server = await startServer({ telemetry: { otlp: { endpoint, flushIntervalMs: 100 } } }, (b) => {
    b.tool({
      name: 'traced',
      description: 'returns the trace context it would send on',
      permissions: ['files:read'],
      input: z.object({ text: z.string() }),
      run: async (_args, ctx) => ({ content: [{ type: 'text', text: JSON.stringify(ctx.trace?.context ?? {}) }] }),
    })
  })
}, 60_000)

afterAll(async () => {
  await server?.close()
  await new Promise((r) => receiver.close(r))
})

beforeEach(() => {
  bodies = []
})

describe('OpenTelemetry traces (OTLP/HTTP to a local receiver)', () => {
  it('one SERVER span per call, its parent from params._meta, a child span per stage that costs; nothing secret exported', async () => {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'traced'), authorization: `Bearer ${server.keys.admin}` },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 41,
        method: 'tools/call',
        params: { name: 'traced', arguments: { text: SECRET_ARG }, _meta: { ...MODERN_META, traceparent: `00-${TRACE}-${PARENT}-01` } },
      }),
    })
    const body = await rpcBody(res)
    const sentOn = JSON.parse(((body.result as { content: { text: string }[] }).content[0]?.text ?? '{}') as string) as { traceparent?: string }
    await waitFor(() => spans().some((s) => s.name === 'tools/call traced'), { what: 'the span', timeoutMs: 10_000 })
    const all = spans().filter((s) => s.traceId === TRACE)
    const root = all.find((s) => s.name === 'tools/call traced')
    expect(root).toBeDefined()
    if (root === undefined) return
    expect(root.parentSpanId).toBe(PARENT)
    expect(root.kind).toBe(2) // SERVER
    expect(attrs(root)).toMatchObject({
      'mcp.method.name': 'tools/call',
      'gen_ai.tool.name': 'traced',
      'gen_ai.operation.name': 'execute_tool',
      'jsonrpc.request.id': '41',
      'mcp.protocol.version': '2026-07-28',
      'network.transport': 'tcp',
      'bastion.decision': 'allow',
      'bastion.reason': 'OK',
    })
    const children = all.filter((s) => s.parentSpanId === root.spanId).map((s) => s.name)
    expect(children).toEqual(expect.arrayContaining(['authenticate', 'limits', 'policy', 'tool']))
    // The tool's trace context to send on names this call's span.
    expect(sentOn.traceparent).toBe(`00-${TRACE}-${root.spanId}-01`)
    const exported = bodies.join('')
    expect(exported).not.toContain(SECRET_ARG)
    expect(exported).not.toContain(server.keys.admin)
    expect(exported).not.toContain(server.keys.admin.slice(21))
  })

  it('a refusal is a span too: error status and type, its parent from the traceparent header', async () => {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: {
        ...JSON_HEADERS,
        ...modernHeaders('tools/call', 'traced'),
        authorization: 'Bearer bst_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
        traceparent: `00-${TRACE}-${PARENT}-01`,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'traced', arguments: { text: 'x' }, _meta: MODERN_META } }),
    })
    expect(res.status).toBe(401)
    await waitFor(() => spans().some((s) => attrs(s)['error.type'] === 'ERR_AUTH_INVALID'), { what: 'the span', timeoutMs: 10_000 })
    const refused = spans().find((s) => attrs(s)['error.type'] === 'ERR_AUTH_INVALID')
    expect(refused).toMatchObject({ traceId: TRACE, parentSpanId: PARENT, name: 'mcp', status: { code: 2 } })
    expect(attrs(refused as OtlpSpan)).toMatchObject({ 'bastion.decision': 'deny', 'rpc.response.status_code': '-31401' })
    expect(spans().some((s) => s.parentSpanId === refused?.spanId && s.name === 'authenticate')).toBe(true)
  })

  it('a 2025-11-25 session call is traced with its era and a hashed session id; without a parent it starts a trace', async () => {
    const client = await connect(server.url, 'legacy', { authorization: `Bearer ${server.keys.admin}` })
    try {
      await client.callTool({ name: 'traced', arguments: { text: 'x' } })
    } finally {
      await client.close()
    }
    const legacy = (s: OtlpSpan): boolean => s.name === 'tools/call traced' && attrs(s)['mcp.protocol.version'] === '2025-11-25'
    await waitFor(() => spans().some(legacy), { what: 'the span', timeoutMs: 10_000 })
    const span = spans().find(legacy)
    expect(span?.parentSpanId ?? '').toBe('')
    const a = attrs(span as OtlpSpan)
    expect(a['mcp.protocol.version']).toBe('2025-11-25')
    expect(a['mcp.session.id']).toMatch(/^[0-9a-f]{16}$/)
  })

  it('mcp.server.operation.duration: a histogram in seconds by method, tool and error type, beside the traces', async () => {
    await callModern(server.url, server.keys.admin, 'traced', { text: 'm' })
    type Point = { attributes: { key: string; value: OtlpValue }[]; count: string | number; explicitBounds: number[] }
    type Body = { resourceMetrics: { scopeMetrics: { metrics: { name: string; unit: string; histogram?: { dataPoints: Point[] } }[] }[] }[] }
    const points = (): Point[] =>
      metrics.flatMap((b) =>
        (JSON.parse(b) as Body).resourceMetrics.flatMap((r) =>
          r.scopeMetrics.flatMap((sm) => sm.metrics.filter((m) => m.name === 'mcp.server.operation.duration' && m.unit === 's').flatMap((m) => m.histogram?.dataPoints ?? [])),
        ),
      )
    const labels = (p: Point) => Object.fromEntries(p.attributes.map((a) => [a.key, a.value.stringValue]))
    // The 2026-07-28 call's series (another test's 2025-11-25 call has its own).
    const mine = (p: Point) => labels(p)['gen_ai.tool.name'] === 'traced' && labels(p)['mcp.protocol.version'] === '2026-07-28' && labels(p)['error.type'] === undefined
    await waitFor(() => points().some(mine), { what: 'the duration metric', timeoutMs: 10_000 })
    const point = points().find(mine)
    expect(labels(point as Point)).toMatchObject({ 'mcp.method.name': 'tools/call', 'network.transport': 'tcp', 'mcp.protocol.version': '2026-07-28' })
    expect(Number(point?.count)).toBeGreaterThanOrEqual(1)
    expect(point?.explicitBounds.slice(0, 3)).toEqual([0.01, 0.02, 0.05])
    // Principals, request ids and arguments are not metric attributes.
    expect(metrics.join('')).not.toMatch(/bastion\.principal|bastion\.request_id|do-not-export/)
  })

  it('a collector that is down delays no request and fails none', async () => {
    const down = await startServer({ telemetry: { otlp: { endpoint: `http://127.0.0.1:${await freePort()}/v1/traces`, flushIntervalMs: 50, timeoutMs: 500 } } })
    try {
      for (let i = 0; i < 5; i++) {
        const started = performance.now()
        const { res, body } = await callModern(down.url, down.keys.admin, 'read_file', { path: 'nope.txt' })
        expect(res.status).toBe(200)
        expect(body.result).toBeDefined()
        expect(performance.now() - started).toBeLessThan(2000)
        await new Promise((r) => setTimeout(r, 60))
      }
    } finally {
      await down.close()
    }
  })
})
