import { InMemoryTransport, McpServer } from '@modelcontextprotocol/server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ServerPool } from '../../src/transport/mcp-server.js'
import { callModern, JSON_HEADERS, MODERN_META, modernHeaders, post, rpcBody, startServer, type TestServer } from '../helpers/server.js'

// 2026-07-28 server instances are reused across requests (transport/mcp-server.ts ServerPool):
// nothing of one request, its caller or its outcome may reach another that the same instance serves.
describe('reused 2026-07-28 server instances', () => {
  let server: TestServer
  beforeAll(async () => {
    const many = { rate: '100000/s' }
    server = await startServer(
      {
        limits: { principal: many, anonymous: many, concurrency: { perPrincipal: 1000, global: 1000 } },
        tools: { whoami: { permissions: ['files:read'] }, fails: { permissions: ['files:read'] }, secret: { permissions: ['ops:run'] } },
      },
      (b) => {
        b.tool({ name: 'secret', description: 'for admins only', input: z.object({}), run: async () => ({ content: [{ type: 'text', text: 'admin only' }] }) })
        b.tool({
          name: 'whoami',
          description: 'answers with its caller, after a pause',
          input: z.object({ ms: z.number().int().min(0).max(200) }),
          run: async ({ ms }, ctx) => {
            await new Promise((r) => setTimeout(r, ms))
            return { content: [{ type: 'text', text: ctx.principal.name ?? ctx.principal.id }] }
          },
        })
        b.tool({
          name: 'fails',
          description: 'throws',
          input: z.object({}),
          run: async () => {
            throw new Error('tool failure text that must not leak')
          },
        })
      },
    )
  })
  afterAll(() => server.close())

  const list = async (key: string, id: number): Promise<string[]> => {
    const res = await post(
      server.url,
      { jsonrpc: '2.0', id, method: 'tools/list', params: { _meta: MODERN_META } },
      { ...modernHeaders('tools/list'), authorization: `Bearer ${key}` },
    )
    const body = await rpcBody(res)
    expect(body.id).toBe(id)
    return ((body.result as { tools: { name: string }[] }).tools ?? []).map((t) => t.name).sort()
  }

  it('interleaved callers each get their own list, their own identity and their own refusals', async () => {
    const { admin, reader, nobody } = server.keys
    const adminTools = await list(admin, 1)
    const readerTools = await list(reader, 2)
    expect(readerTools).toContain('whoami')
    expect(adminTools.length).toBeGreaterThan(readerTools.length)
    const keys = [admin, reader, nobody]
    const ids = new Map([
      [admin, adminTools],
      [reader, readerTools],
    ])
    // Slow calls, failing calls, refusals and lists of three principals at once, many times over.
    // In rounds of 60 at once: one address may hold 128 connections (server.maxConnectionsPerAddress).
    const one = async (i: number): Promise<void> => {
      const key = keys[i % 3] as string
      const kind = Math.floor(i / 3) % 3
      if (kind === 0) {
        const { body } = await callModern(server.url, key, 'whoami', { ms: (i * 7) % 40 }, { id: 1000 + i })
        expect(body.id).toBe(1000 + i)
        if (key === nobody) expect(body.error).toMatchObject({ data: { code: 'ERR_FORBIDDEN' } })
        else expect((body.result as { content: { text: string }[] }).content[0]?.text).toBe(key === admin ? 'admin' : 'reader')
      } else if (kind === 1) {
        const { body } = await callModern(server.url, key, 'fails', {}, { id: 2000 + i })
        expect(JSON.stringify(body)).not.toContain('must not leak')
        expect(body.id).toBe(2000 + i)
      } else if (key !== nobody) {
        expect(await list(key, 3000 + i)).toStrictEqual(ids.get(key))
      } else {
        expect(await list(key, 3000 + i)).toStrictEqual([])
      }
    }
    for (let round = 0; round < 3; round++) await Promise.all(Array.from({ length: 60 }, (_, i) => one(round * 60 + i)))
  })

  it('a request the SDK refuses after taking an instance does not spoil it for the next', async () => {
    const { reader } = server.keys
    // A modern request whose routing header disagrees with its body is refused (the Mcp-Name check).
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'other'), authorization: `Bearer ${reader}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'whoami', arguments: { ms: 0 }, _meta: MODERN_META } }),
    })
    expect(res.status).toBeGreaterThanOrEqual(400)
    await res.text()
    for (let i = 0; i < 20; i++) {
      const { body } = await callModern(server.url, reader, 'whoami', { ms: 0 }, { id: 50 + i })
      expect((body.result as { content: { text: string }[] }).content[0]?.text).toBe('reader')
    }
  })

  it('a client that goes away mid-call leaves no instance half-used: later calls answer', async () => {
    const { reader } = server.keys
    const aborts = Array.from({ length: 10 }, async (_, i) => {
      const controller = new AbortController()
      const pending = callModern(server.url, reader, 'whoami', { ms: 150 }, { id: 70 + i, signal: controller.signal }).catch(() => undefined)
      setTimeout(() => controller.abort(), 20)
      await pending
    })
    await Promise.all(aborts)
    await new Promise((r) => setTimeout(r, 200))
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => callModern(server.url, reader, 'whoami', { ms: 0 }, { id: 90 + i })))
    for (const [i, { body }] of answers.entries()) {
      expect(body.id).toBe(90 + i)
      expect((body.result as { content: { text: string }[] }).content[0]?.text).toBe('reader')
    }
  })
})

describe('ServerPool', () => {
  const made = (): { pool: ServerPool; built: () => number } => {
    let n = 0
    const pool = new ServerPool(() => {
      n++
      return new McpServer({ name: 't', version: '1' }, { capabilities: { tools: {} } })
    })
    return { pool, built: () => n }
  }

  it('an instance comes back when its exchange closes, never while it serves', async () => {
    const { pool, built } = made()
    const a = pool.take()
    const [, serverSide] = InMemoryTransport.createLinkedPair()
    await a.connect(serverSide)
    const b = pool.take()
    expect(b).not.toBe(a)
    expect(built()).toBe(2)
    await a.close()
    expect(pool.size).toBe(1)
    expect(pool.take()).toBe(a)
    // Closing an instance that is not connected does not put it back twice.
    await a.close()
    await a.close()
    expect(pool.size).toBeLessThanOrEqual(1)
    expect(built()).toBe(2)
  })
})
