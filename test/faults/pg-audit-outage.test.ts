import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { z } from 'zod'
import { verifyAudit } from '../../src/audit/chain.js'
import { PostgresAuditSink } from '../../src/audit/sinks.js'
import { callModern, initializeBody, post, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'
import { type PrivatePostgres, privatePostgres } from './private-postgres.js'

// A PostgreSQL of this file's own, stopped, restarted and cut under load; the machine's is never touched.
const AUDIT_KEY = 'audit-key-for-outage-tests-0123456789abcdef'
let db: PrivatePostgres
beforeAll(async () => {
  db = await privatePostgres()
})
afterAll(async () => {
  await db?.destroy()
})
// A test that stopped the database and failed midway must not leave it down for the next one.
afterEach(async () => {
  await db.start()
})

async function query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  try {
    return (await client.query<R>(sql, params)).rows
  } finally {
    await client.end()
  }
}

interface Outcome {
  readonly status: number
  readonly code: unknown
  readonly requestId: string
  readonly startedAt: number
}

/** Workers calling a tool in a loop until stopped; every outcome is kept. */
function load(server: TestServer, workers: number) {
  const outcomes: Outcome[] = []
  let running = true
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const startedAt = performance.now()
      try {
        const { res, body } = await callModern(server.url, server.keys.admin, 'echo', {})
        const error = body.error as { data?: { code?: unknown } } | undefined
        // Served means the tool's own answer came back, not only an HTTP 200.
        const served = res.status === 200 && JSON.stringify(body.result ?? null).includes('echoed')
        outcomes.push({ status: served ? 200 : res.status === 200 ? -200 : res.status, code: error?.data?.code, requestId: res.headers.get('x-request-id') ?? '', startedAt })
      } catch {
        outcomes.push({ status: 0, code: 'network', requestId: '', startedAt })
      }
    }
  })
  return {
    outcomes,
    async stop() {
      running = false
      await Promise.all(loops)
    },
  }
}

// Heap after a full collection, so that the figure is what is held (the queue), not garbage.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
function measured(): NodeJS.MemoryUsage {
  gc()
  return process.memoryUsage()
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Seconds from `since` to the first request started after it that was served (200). */
async function recovery(outcomes: readonly Outcome[], since: number, timeoutMs: number): Promise<number> {
  const first = await waitFor(() => outcomes.find((o) => o.startedAt >= since && o.status === 200), { what: 'a request served after the fault', timeoutMs, intervalMs: 20 })
  return (first.startedAt - since) / 1000
}

/** A tool call that runs until released: a call in flight when the database goes. */
const held = (() => {
  let open: () => void = () => undefined
  const state = {
    started: 0,
    gate: new Promise<void>((resolve) => {
      open = resolve
    }),
    release: () => open(),
  }
  return state
})()

describe('PostgreSQL audit sink under outages', () => {
  const table = 'bastion_audit_outage'
  let server: TestServer
  beforeAll(async () => {
    process.env.BASTION_TEST_AUDIT_PG = db.url
    process.env.BASTION_TEST_AUDIT_KEY = AUDIT_KEY
    server = await startServer(
      {
        audit: { sink: 'postgres', postgres: { url: { env: 'BASTION_TEST_AUDIT_PG' }, table, maxQueueLines: 1000 }, key: { env: 'BASTION_TEST_AUDIT_KEY' } },
        limits: { principal: { rate: '1000000/min' } },
      },
      (b) => {
        b.tool({ name: 'echo', description: 'answers at once', input: z.object({}), run: async () => ({ content: [{ type: 'text', text: 'echoed' }] }) })
        b.tool({
          name: 'hold',
          description: 'runs until the test releases it',
          input: z.object({}),
          timeoutMs: 20_000,
          run: async () => {
            held.started += 1
            await held.gate
            return { content: [{ type: 'text', text: 'released' }] }
          },
        })
      },
    )
  })
  afterAll(async () => {
    await server?.close()
  })

  it('a terminated backend and a database restart under load: refused (503) meanwhile, served again within seconds, every acknowledged line stored once, the chain whole', {
    timeout: 90_000,
  }, async () => {
    const traffic = load(server, 6)
    await sleep(1000)
    expect(traffic.outcomes.filter((o) => o.status === 200).length).toBeGreaterThan(10)

    // 1. Only the backend dies (57P01): the sink's next connection serves again.
    const killed = await query<{ pid: number }>(
      `SELECT pg_terminate_backend(pid) AS pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = 'postgres' AND backend_type = 'client backend'`,
    )
    const terminatedAt = performance.now()
    expect(killed.length).toBeGreaterThan(0)
    const afterTerminate = await recovery(traffic.outcomes, terminatedAt, 10_000)
    await sleep(1000)
    const servedAfterTerminate = traffic.outcomes.filter((o) => o.startedAt > terminatedAt && o.status === 200).length

    // 2. The database stops (every connection closed) and stays down for 2 s.
    const heapBefore = measured()
    await db.stop()
    const stoppedAt = performance.now()
    await sleep(2000)
    const heapDown = measured()
    const duringOutage = traffic.outcomes.filter((o) => o.startedAt > stoppedAt)
    await db.start()
    const startedAt = performance.now()
    const afterRestart = await recovery(traffic.outcomes, startedAt, 15_000)
    await sleep(1000)
    await traffic.stop()
    const servedAfterRestart = traffic.outcomes.filter((o) => o.startedAt > startedAt && o.status === 200).length

    console.log(
      `outage: backend terminated → served again after ${afterTerminate.toFixed(2)} s (${servedAfterTerminate} served in the next ~1 s); ` +
        `database down 2 s: ${duringOutage.length} requests, ${duringOutage.filter((o) => o.status === 503).length} refused 503, ${duringOutage.filter((o) => o.status === 200).length} served; ` +
        `restarted → served again after ${afterRestart.toFixed(2)} s (${servedAfterRestart} served); ` +
        `heap ${((heapDown.heapUsed - heapBefore.heapUsed) / 1048576).toFixed(1)} MiB, rss ${((heapDown.rss - heapBefore.rss) / 1048576).toFixed(1)} MiB while down`,
    )
    // The queue is bounded (1,000 lines here): what the outage holds stays well under this.
    expect(heapDown.heapUsed - heapBefore.heapUsed).toBeLessThan(16 * 1024 * 1024)
    expect(afterTerminate).toBeLessThan(3)
    expect(afterRestart).toBeLessThan(8)
    expect(servedAfterTerminate).toBeGreaterThan(10)
    expect(servedAfterRestart).toBeGreaterThan(10)
    // Meanwhile every request was either served or refused closed with 503 ERR_AUDIT_UNAVAILABLE.
    expect(duringOutage.filter((o) => o.status === 503).length).toBeGreaterThan(10)
    for (const o of traffic.outcomes) {
      if (o.status !== 200) expect(o).toMatchObject({ status: 503, code: 'ERR_AUDIT_UNAVAILABLE' })
    }

    // Every acknowledged request's line is in the table exactly once; the chain verifies (no hole, no duplicate).
    await waitFor(async () => (await query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`))[0], { what: 'the table' })
    const rows = await query<{ line: string }>(`SELECT line FROM ${table} ORDER BY id`)
    const perRequest = new Map<string, number>()
    for (const row of rows) {
      const id = (JSON.parse(row.line) as { requestId?: string }).requestId
      if (id !== undefined) perRequest.set(id, (perRequest.get(id) ?? 0) + 1)
    }
    const served = traffic.outcomes.filter((o) => o.status === 200)
    const missing = served.filter((o) => perRequest.get(o.requestId) !== 1)
    expect(missing).toEqual([])
    expect(new Set(rows.map((r) => r.line)).size).toBe(rows.length)
    const report = verifyAudit([{ name: table, text: rows.map((r) => r.line).join('') }], Buffer.from(AUDIT_KEY))
    expect(report).toMatchObject({ ok: true, writers: 1 })
  })

  it('the database down: a new request in either era is refused 503 before its tool runs; an answer already streaming gets the error in its stream; a 2026-07-28 call that ran gets 503', {
    timeout: 60_000,
  }, async () => {
    const auth = { authorization: `Bearer ${server.keys.admin}` }
    await waitFor(async () => (await callModern(server.url, server.keys.admin, 'echo', {})).res.status === 200, {
      what: 'the audit database',
      timeoutMs: 10_000,
    })
    const init = await post(server.url, initializeBody(), auth)
    expect(init.status).toBe(200)
    await init.text()
    const session = { ...auth, 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-11-25' }
    expect((await post(server.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, session)).status).toBe(202)
    const legacyCall = (id: number, name: string) => post(server.url, { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } }, session)

    // Calls that started while the database was up, still running when it goes.
    const startedBefore = held.started
    const streaming = legacyCall(20, 'hold')
    const modern = callModern(server.url, server.keys.admin, 'hold', {})
    await waitFor(() => held.started === startedBefore + 2, { what: 'both held calls running' })
    await db.stop()
    // A failure below must not leave the held calls running past the test.
    onTestFinished(() => held.release())
    const refusedBefore = held.started
    const read = async (r: Response) => ({ status: r.status, type: r.headers.get('content-type'), text: await r.text() })
    const fresh = [
      await read(await legacyCall(21, 'hold')),
      await callModern(server.url, server.keys.admin, 'hold', {}).then((r) => ({ status: r.res.status, type: r.res.headers.get('content-type'), text: JSON.stringify(r.body) })),
      await read(await post(server.url, { jsonrpc: '2.0', id: 22, method: 'tools/list' }, session)),
    ]
    console.log(`database down, new requests: ${fresh.map((r) => `HTTP ${r.status} ${r.type}`).join('; ')}`)
    for (const r of fresh) expect(r).toMatchObject({ status: 503, text: expect.stringContaining('ERR_AUDIT_UNAVAILABLE') })
    // Refused before the tool ran: no side effect whose line could not be stored.
    expect(held.started).toBe(refusedBefore)

    held.release()
    const stream = await streaming
    const streamText = await stream.text()
    const modernAnswer = await modern
    console.log(
      `database down, answers of calls already running: 2025-11-25 HTTP ${stream.status} ${stream.headers.get('content-type')}; 2026-07-28 HTTP ${modernAnswer.res.status}`,
    )
    // 2025-11-25: the stream (HTTP 200) started before the line could be stored; the error is in it.
    expect(stream.status).toBe(200)
    expect(streamText).toContain('ERR_AUDIT_UNAVAILABLE')
    expect(streamText).not.toContain('"content"')
    // 2026-07-28: the answer had not left; a failed commit is a 503.
    expect(modernAnswer.res.status).toBe(503)
    expect(modernAnswer.body).toMatchObject({ error: { data: { code: 'ERR_AUDIT_UNAVAILABLE' } } })

    // Back: the same 2025-11-25 session is served again within seconds.
    await db.start()
    const back = performance.now()
    await waitFor(async () => (await legacyCall(23, 'echo').then((r) => r.text())).includes('"echoed"'), {
      what: 'the session served again',
      timeoutMs: 8000,
      intervalMs: 50,
    })
    console.log(`2025-11-25 session served again ${((performance.now() - back) / 1000).toFixed(2)} s after the restart`)
  })
})

describe('PostgreSQL audit sink: bounds and idempotency', () => {
  it('the queue stops at its bound in lines and in bytes: the write that would pass it throws', async () => {
    const sink = await PostgresAuditSink.open(db.url, 'bastion_audit_bounds', undefined, { maxQueueBytes: 64 * 1024, maxQueueLines: 100 })
    try {
      await db.stop()
      const line = `{"pad":"${'x'.repeat(100)}"}\n`
      let accepted = 0
      for (let i = 0; i < 1000; i++) {
        try {
          sink.write(line)
          accepted += 1
        } catch {
          break
        }
      }
      expect(accepted).toBe(100)
      const started = performance.now()
      await expect(sink.flush()).rejects.toThrow()
      // Refused at once while down: requests are not held for a connection timeout.
      expect(performance.now() - started).toBeLessThan(6000)
      expect(sink.queued.lines).toBe(100)
      await db.start()
      await waitFor(() => sink.queued.lines === 0, { what: 'the queue written after the restart', timeoutMs: 10_000 })
      const big = `{"pad":"${'y'.repeat(40 * 1024)}"}\n`
      sink.write(big)
      expect(() => sink.write(big)).toThrow(/queue full/)
      await sink.flush()
      expect((await query<{ n: string }>('SELECT count(*) AS n FROM bastion_audit_bounds'))[0]?.n).toBe('101')
    } finally {
      sink.close()
      await sink.whenClosed()
    }
  })

  it('a batch committed whose reply is lost with the connection is retried and stored once', { timeout: 30_000 }, async () => {
    // A loopback proxy that can cut the connection after the INSERT reached the database and before its reply returns.
    let cut = false
    const sockets = new Set<Socket>()
    const proxy: Server = createServer((client) => {
      const upstream = tcpConnect(db.port, '127.0.0.1')
      sockets.add(client).add(upstream)
      let dropReply = false
      client.on('data', (d: Buffer) => {
        if (cut && d.includes('INSERT INTO')) dropReply = true
        upstream.write(d)
      })
      upstream.on('data', (d: Buffer) => {
        if (dropReply) {
          cut = false
          // The reply comes after the commit (it is flushed at Sync): the row is stored, the client never learns it.
          client.destroy()
          upstream.destroy()
          return
        }
        client.write(d)
      })
      client.on('error', () => upstream.destroy())
      upstream.on('error', () => client.destroy())
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    const address = proxy.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    const sink = await PostgresAuditSink.open(`postgres://postgres@127.0.0.1:${port}/postgres`, 'bastion_audit_once')
    try {
      sink.write('{"n":1}\n')
      await sink.flush()
      cut = true
      sink.write('{"n":2}\n')
      await expect(sink.flush()).rejects.toThrow()
      // The lost reply's row is in the table already.
      expect((await query<{ line: string }>('SELECT line FROM bastion_audit_once ORDER BY id')).map((r) => r.line)).toEqual(['{"n":1}\n', '{"n":2}\n'])
      sink.write('{"n":3}\n')
      await waitFor(
        async () => {
          try {
            await sink.flush()
            return true
          } catch {
            return false
          }
        },
        { what: 'the sink reconnected and flushed', timeoutMs: 10_000, intervalMs: 100 },
      )
      expect((await query<{ line: string }>('SELECT line FROM bastion_audit_once ORDER BY id')).map((r) => r.line)).toEqual(['{"n":1}\n', '{"n":2}\n', '{"n":3}\n'])
    } finally {
      sink.close()
      await sink.whenClosed()
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => proxy.close(() => resolve()))
    }
  })
})
