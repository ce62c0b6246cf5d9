import { createHmac } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AlertEngine } from '../../src/audit/alerts.js'
import { callModern, startServer, type TestServer } from '../helpers/server.js'

describe('alerts', () => {
  let server: TestServer
  let hook: Server
  const received: { body: string; signature: string | undefined }[] = []
  beforeAll(async () => {
    hook = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => {
        body += c.toString()
      })
      req.on('end', () => {
        received.push({ body, signature: req.headers['x-bastion-signature'] as string | undefined })
        res.end()
      })
    })
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r))
    process.env.BASTION_TEST_HOOK_SECRET = 'hook-secret-0123456789'
    server = await startServer({
      alerts: {
        rules: [
          { id: 'auth-failures', event: 'auth.failure', by: 'remote', threshold: 3, windowSeconds: 60 },
          { id: 'denials', event: 'authz.denied', by: 'principal', threshold: 2, windowSeconds: 60 },
        ],
        webhook: { url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`, secret: { env: 'BASTION_TEST_HOOK_SECRET' } },
      },
      auth: { bruteForce: { slowAfter: 1000, blockAfter: 1000 } },
      limits: { anonymous: { rate: '100000/min' } },
    })
  })
  afterAll(async () => {
    await server.close()
    await new Promise<void>((r) => hook.close(() => r()))
  })

  it('N authentication failures from one address raise one alert line and one signed webhook POST', async () => {
    const since = server.mark()
    // The webhook hears every test's alerts: only the POSTs sent after this point are this test's.
    const hooked = received.length
    const bogus = `bst_${'0'.repeat(16)}_${'A'.repeat(43)}`
    for (let i = 0; i < 5; i++) await callModern(server.url, bogus, 'read_file', { path: 'README.md' })
    await Promise.all([...server.bastion.alerts.pending])
    const alerts = since().filter((l) => l.event === 'alert')
    expect(alerts).toHaveLength(1)
    expect(alerts[0]).toMatchObject({ alert: 'auth-failures', subject: 'remote 127.0.0.1', count: 3, windowSeconds: 60 })
    const posts = received.slice(hooked)
    expect(posts).toHaveLength(1)
    const posted = JSON.parse(posts[0]?.body ?? '{}') as Record<string, unknown>
    expect(posted).toMatchObject({ source: 'mcp-bastion', alert: 'auth-failures', subject: 'remote 127.0.0.1', count: 3 })
    expect(posts[0]?.signature).toBe(
      `sha256=${createHmac('sha256', 'hook-secret-0123456789')
        .update(posts[0]?.body ?? '')
        .digest('hex')}`,
    )
    expect(posts[0]?.body).not.toContain(bogus)
  })

  it('N denials for one principal raise an alert', async () => {
    const since = server.mark()
    for (let i = 0; i < 2; i++) await callModern(server.url, server.keys.nobody, 'read_file', { path: 'README.md' })
    await Promise.all([...server.bastion.alerts.pending])
    expect(since().filter((l) => l.event === 'alert')).toMatchObject([{ alert: 'denials', subject: `principal key:${server.keys.nobody.slice(4, 20)}` }])
  })

  it('a failing webhook is counted and never fails a request', async () => {
    let t = 0
    const engine = new AlertEngine(
      [{ id: 'x', event: 'e', by: 'remote', threshold: 1, windowSeconds: 10 }],
      { url: new URL('http://127.0.0.1:9/nothing'), timeoutMs: 200, secret: undefined },
      undefined,
      () => t,
    )
    const lines: unknown[] = []
    engine.attach((f) => lines.push(f))
    engine.observe({ event: 'e', decision: 'deny', reason: 'R', remote: '10.0.0.1' })
    engine.observe({ event: 'e', decision: 'deny', reason: 'R', remote: '10.0.0.1' })
    await Promise.all([...engine.pending])
    expect(lines).toHaveLength(1)
    expect(engine.failures).toBe(1)
    t = 11_000
    engine.observe({ event: 'e', decision: 'deny', reason: 'R', remote: '10.0.0.1' })
    expect(lines).toHaveLength(2)
    await Promise.all([...engine.pending])
  })
})
