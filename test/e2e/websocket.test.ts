import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { WebSocketClientTransport } from '@modelcontextprotocol/sdk/client/websocket.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { z } from 'zod'
import { MODERN_META, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

let server: TestServer
let wsUrl: string
beforeAll(async () => {
  server = await startServer({
    server: { websocket: { enabled: true, authTimeoutMs: 300, messagesPerSecond: 100_000, burst: 100_000, maxInFlight: 2000 }, maxBodyBytes: 64 * 1024 },
    limits: { principal: { rate: '100000/min' } },
  })
  wsUrl = server.url.replace('http:', 'ws:').replace(/\/mcp$/, '/mcp/ws')
}, 60_000)
afterAll(async () => {
  await server?.close()
})

const INIT = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'ws-test', version: '1' } } }
const INITIALIZED = { jsonrpc: '2.0', method: 'notifications/initialized' }
const READ = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'read_file', arguments: { path: 'notes/todo.txt' } } })

/** A connection and the messages it receives, by id. */
function open(
  protocols: string | string[],
  headers: Record<string, string> = {},
): Promise<{ ws: WebSocket; answer(id: number): Promise<Record<string, unknown>>; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(wsUrl, protocols, { headers })
  const got = new Map<number, Record<string, unknown>>()
  const waiting = new Map<number, (m: Record<string, unknown>) => void>()
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as Record<string, unknown>
    const id = m.id as number
    const w = waiting.get(id)
    if (w !== undefined) w(m)
    else got.set(id, m)
  })
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: String(reason) })))
  return new Promise((ok, fail) => {
    ws.once('open', () =>
      ok({
        ws,
        closed,
        answer: (id) => {
          const have = got.get(id)
          return have !== undefined ? Promise.resolve(have) : new Promise((r) => waiting.set(id, r))
        },
      }),
    )
    ws.once('unexpected-response', (_req, res) => fail(Object.assign(new Error(`upgrade refused ${res.statusCode}`), { status: res.statusCode })))
    ws.once('error', fail)
  })
}

const text = (m: Record<string, unknown>): string => JSON.stringify(m.result ?? m.error)

describe('MCP over WebSocket', () => {
  it('the credential in the upgrade request (Authorization), then every message through the stage list, one audit line each', async () => {
    const mark = server.mark()
    const c = await open('mcp', { authorization: `Bearer ${server.keys.reader}` })
    c.ws.send(JSON.stringify(INIT))
    expect(text(await c.answer(1))).toContain('"protocolVersion":"2025-11-25"')
    c.ws.send(JSON.stringify(INITIALIZED))
    c.ws.send(JSON.stringify(READ(2)))
    expect(text(await c.answer(2))).toContain('try read_file on notes/todo.txt')
    // A tool this key may not use is refused, as over HTTP.
    c.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'write_file', arguments: { path: 'x', content: 'y' } } }))
    expect((await c.answer(3)).error).toMatchObject({ data: { code: 'ERR_FORBIDDEN' } })
    c.ws.close()
    await c.closed
    const lines = mark().filter((l) => l.transport === 'websocket' && l.method !== undefined)
    expect(lines.map((l) => [l.method, l.reason])).toEqual([
      ['initialize', 'OK'],
      ['notifications/initialized', 'OK'],
      ['tools/call', 'OK'],
      ['tools/call', 'ERR_FORBIDDEN'],
    ])
    expect(lines.every((l) => typeof l.remote === 'string')).toBe(true)
  })

  it('the credential as a bearer.<token> subprotocol (browsers), or in the first message', async () => {
    for (const [protocols, first] of [
      [['mcp', `bearer.${server.keys.reader}`], undefined],
      ['mcp', { jsonrpc: '2.0', method: 'bastion/authenticate', params: { credential: server.keys.reader } }],
    ] as const) {
      const c = await open(protocols as string | string[])
      if (first !== undefined) c.ws.send(JSON.stringify(first))
      c.ws.send(JSON.stringify(INIT))
      c.ws.send(JSON.stringify(INITIALIZED))
      c.ws.send(JSON.stringify(READ(2)))
      expect(text(await c.answer(2))).toContain('try read_file on notes/todo.txt')
      c.ws.close()
    }
  })

  it('no credential: closed after authTimeoutMs (1008), audited; a first message that is not authentication: closed at once', async () => {
    const mark = server.mark()
    const idle = await open('mcp')
    const started = performance.now()
    expect(await idle.closed).toEqual({ code: 1008, reason: 'authentication required' })
    expect(performance.now() - started).toBeGreaterThanOrEqual(250)
    const eager = await open('mcp')
    eager.ws.send(JSON.stringify(INIT))
    expect(await eager.closed).toEqual({ code: 1008, reason: 'authentication required' })
    await waitFor(() => mark().filter((l) => l.transport === 'websocket' && l.reason === 'ERR_AUTH_MISSING').length === 2, { what: 'two refusal lines' })
  })

  it('a refused credential closes the connection (1008), one audit line', async () => {
    const mark = server.mark()
    const c = await open('mcp', { authorization: `Bearer bst_0123456789abcdef_${'A'.repeat(43)}` })
    expect(await c.closed).toEqual({ code: 1008, reason: 'invalid credentials' })
    await waitFor(() => mark().some((l) => l.transport === 'websocket' && l.reason === 'ERR_AUTH_INVALID'), { what: 'the refusal line' })
  })

  it('the upgrade is refused for a foreign Origin (cross-site WebSocket hijacking), a query credential, an unknown path', async () => {
    const mark = server.mark()
    await expect(open('mcp', { origin: 'https://evil.example', authorization: `Bearer ${server.keys.reader}` })).rejects.toMatchObject({ status: 403 })
    const query = new WebSocket(`${wsUrl}?api_key=${server.keys.reader}`, 'mcp')
    const status = await new Promise((r) => {
      query.once('unexpected-response', (_q, res) => r(res.statusCode))
      query.once('error', () => r('error'))
    })
    expect(status).toBe(400)
    await waitFor(() => mark().some((l) => l.reason === 'ERR_ORIGIN_FORBIDDEN'), { what: 'the origin refusal line' })
    expect(JSON.stringify(mark())).not.toContain(server.keys.reader)
  })

  it('a message over server.maxBodyBytes closes the connection (1009); a binary one (1003)', async () => {
    const big = await open('mcp', { authorization: `Bearer ${server.keys.reader}` })
    big.ws.send('x'.repeat(65 * 1024))
    expect((await big.closed).code).toBe(1009)
    const binary = await open('mcp', { authorization: `Bearer ${server.keys.reader}` })
    binary.ws.send(Buffer.from([1, 2, 3]))
    expect((await binary.closed).code).toBe(1003)
  })

  it('a key revoked while connected is refused at its next message', async () => {
    const { key, stored } = server.bastion.keys.create({ name: 'short-lived', roles: ['reader'], expiresAt: null })
    const c = await open('mcp', { authorization: `Bearer ${key}` })
    c.ws.send(JSON.stringify(INIT))
    await c.answer(1)
    c.ws.send(JSON.stringify(INITIALIZED))
    c.ws.send(JSON.stringify(READ(2)))
    expect(text(await c.answer(2))).toContain('try read_file')
    server.bastion.keys.revoke(stored.id)
    c.ws.send(JSON.stringify(READ(3)))
    expect((await c.answer(3)).error).toMatchObject({ data: { code: 'ERR_AUTH_REVOKED' } })
    c.ws.close()
  })

  it('1,000 messages on one connection: 1,000 answers, each audited exactly once', async () => {
    const c = await open('mcp', { authorization: `Bearer ${server.keys.reader}` })
    c.ws.send(JSON.stringify(INIT))
    await c.answer(1)
    c.ws.send(JSON.stringify(INITIALIZED))
    const mark = server.mark()
    for (let id = 100; id < 1100; id++) c.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/list' }))
    const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.answer(100 + i)))
    expect(answers.every((a) => a.result !== undefined)).toBe(true)
    const lines = mark().filter((l) => l.transport === 'websocket' && l.method === 'tools/list')
    expect(lines).toHaveLength(1000)
    expect(new Set(lines.map((l) => l.requestId)).size).toBe(1000)
    c.ws.close()
  }, 60_000)

  it('per connection: messages over its rate and requests over its in-flight cap are refused, each audited', async () => {
    const limited = await startServer(
      {
        server: { websocket: { enabled: true, messagesPerSecond: 5, burst: 5, maxInFlight: 2 } },
        limits: { principal: { rate: '100000/min' }, concurrency: { perPrincipal: 100, global: 100 } },
      },
      (b) =>
        b.tool({
          name: 'slow',
          description: 'answers after 300 ms',
          permissions: ['files:read'],
          input: z.object({}),
          run: async () => {
            await new Promise((r) => setTimeout(r, 300))
            return { content: [{ type: 'text', text: 'done' }] }
          },
        }),
    )
    try {
      wsUrl = limited.url.replace('http:', 'ws:').replace(/\/mcp$/, '/mcp/ws')
      const c = await open('mcp', { authorization: `Bearer ${limited.keys.reader}` })
      const mark = limited.mark()
      // A 2026-07-28 connection (no initialize): three slow calls at once, two may wait.
      const call = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'slow', arguments: {}, _meta: MODERN_META } })
      for (const id of [1, 2, 3]) c.ws.send(JSON.stringify(call(id)))
      const [a1, a2, a3] = await Promise.all([c.answer(1), c.answer(2), c.answer(3)])
      expect(text(a1 as Record<string, unknown>)).toContain('done')
      expect(text(a2 as Record<string, unknown>)).toContain('done')
      expect(a3?.error).toMatchObject({ data: { code: 'ERR_CONCURRENCY_LIMIT' } })
      // One at a time (never two in flight), faster than 5 a second: the bucket of five runs dry.
      const codes: string[] = []
      for (let id = 10; id < 20; id++) {
        c.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/list', params: { _meta: MODERN_META } }))
        codes.push(((await c.answer(id)).error as { data?: { code?: string } } | undefined)?.data?.code ?? 'ok')
      }
      expect(codes[0]).toBe('ok')
      expect(codes).toContain('ERR_RATE_LIMITED')
      // At most the bucket plus what refilled while these ran (well under a second).
      expect(codes.filter((x) => x === 'ok').length).toBeLessThanOrEqual(8)
      const refusals = mark().filter((l) => l.transport === 'websocket' && (l.reason === 'ERR_RATE_LIMITED' || l.reason === 'ERR_CONCURRENCY_LIMIT'))
      expect(refusals[0]?.reason).toBe('ERR_CONCURRENCY_LIMIT')
      expect(refusals.filter((l) => l.reason === 'ERR_RATE_LIMITED')).toHaveLength(codes.filter((x) => x === 'ERR_RATE_LIMITED').length)
      c.ws.close()
    } finally {
      wsUrl = server.url.replace('http:', 'ws:').replace(/\/mcp$/, '/mcp/ws')
      await limited.close()
    }
  })

  it("the MCP SDK's WebSocket client transport connects, lists and calls (credential as a subprotocol)", async () => {
    // The SDK's transport opens `new WebSocket(url, 'mcp')`: here with the bearer subprotocol added.
    const key = server.keys.reader
    const Bearer = class extends WebSocket {
      constructor(url: string | URL) {
        super(url, ['mcp', `bearer.${key}`])
      }
    }
    const g = globalThis as { WebSocket?: unknown }
    const previous = g.WebSocket
    g.WebSocket = Bearer
    const client = new ClientV1({ name: 'sdk-ws', version: '1' })
    try {
      await client.connect(new WebSocketClientTransport(new URL(wsUrl)))
      const { tools } = await client.listTools()
      expect(tools.map((t) => t.name)).toContain('read_file')
      const r = await client.callTool({ name: 'read_file', arguments: { path: 'notes/todo.txt' } })
      expect(JSON.stringify(r.content)).toContain('try read_file')
    } finally {
      await client.close()
      g.WebSocket = previous
    }
  })
})
