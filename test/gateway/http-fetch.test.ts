import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { callContext, upstreamFetch } from '../../src/transport/upstream/http-fetch.js'

/**
 * The fetch an HTTP upstream is read through, against a real loopback server: the size cap per
 * SSE event (LF, CR and CRLF framing alike) and in total for JSON, redirects within the origin
 * only, the connect deadline on headers only, bastion's headers over the client's.
 */

let server: Server
let base = ''
const seen: Record<string, string | undefined>[] = []

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ authorization: req.headers.authorization, who: req.headers['x-who'] as string | undefined })
    const url = new URL(req.url ?? '/', 'http://x')
    const sse = (events: string[], eol: string): void => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      for (const e of events) res.write(`data: ${e}${eol}${eol}`)
      res.end()
    }
    if (url.pathname === '/crlf')
      return sse(
        Array.from({ length: 20 }, () => 'x'.repeat(180)),
        '\r\n',
      )
    if (url.pathname === '/cr')
      return sse(
        Array.from({ length: 20 }, () => 'x'.repeat(180)),
        '\r',
      )
    if (url.pathname === '/one-huge-event') return sse(['x'.repeat(60_000)], '\n')
    if (url.pathname === '/json') {
      const body = JSON.stringify({ data: 'x'.repeat(5000) })
      res.writeHead(200, { 'content-type': 'application/json', ...(url.searchParams.has('length') ? { 'content-length': String(body.length) } : {}) })
      return res.end(body)
    }
    if (url.pathname === '/here') {
      res.writeHead(307, { location: '/json' })
      return res.end()
    }
    if (url.pathname === '/away') {
      res.writeHead(307, { location: 'http://127.0.0.2:1/elsewhere' })
      return res.end()
    }
    if (url.pathname === '/slow-body') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.flushHeaders()
      setTimeout(() => res.end('{"late":true}'), 600)
      return
    }
    res.writeHead(404)
    res.end()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => new Promise<void>((r) => server.close(() => r())))

const fetchWith = upstreamFetch({ connectTimeoutMs: 300, maxMessageBytes: 1024, headers: { authorization: 'Bearer upstream-own' } })

describe('the upstream fetch', () => {
  it.each(['/crlf', '/cr'])('caps each SSE event, whatever the line ends (%s): many small events pass', async (path) => {
    const body = await (await fetchWith(`${base}${path}`)).text()
    expect(body.length).toBeGreaterThan(3000)
  })

  it('refuses one SSE event over the cap, even when it arrives in one chunk, and fails the call at once', async () => {
    let failed: Error | undefined
    const response = await callContext.run({ headers: {}, fail: (e) => (failed = e) }, () => fetchWith(`${base}/one-huge-event`))
    await expect(response.text()).rejects.toThrow(/more than 1024 bytes/)
    expect(failed?.message).toContain('more than 1024 bytes')
  })

  it('refuses a JSON answer over the cap: at once when its length says so, while reading otherwise', async () => {
    await expect(fetchWith(`${base}/json?length`)).rejects.toThrow(/answered 50\d\d bytes, over 1024/)
    await expect((await fetchWith(`${base}/json`)).text()).rejects.toThrow(/more than 1024 bytes/)
  })

  it('follows a redirect within the origin, never to another', async () => {
    await expect((await fetchWith(`${base}/here`)).text()).rejects.toThrow(/more than 1024 bytes/)
    await expect(fetchWith(`${base}/away`)).rejects.toThrow(/redirected to another origin \(http:\/\/127\.0\.0\.2:1\): refused/)
  })

  it('bounds the wait for headers, not the body', async () => {
    const big = upstreamFetch({ connectTimeoutMs: 300, maxMessageBytes: 1 << 20, headers: {} })
    expect(await (await big(`${base}/slow-body`)).json()).toStrictEqual({ late: true })
  })

  it("sends bastion's own credential over the client's, and the call's identity header", async () => {
    seen.length = 0
    await callContext.run({ headers: { 'x-who': 'signed-identity' }, fail: () => {} }, () =>
      fetchWith(`${base}/crlf`, { headers: { authorization: 'Bearer the-callers-token' } }).then((r) => r.text()),
    )
    expect(seen).toStrictEqual([{ authorization: 'Bearer upstream-own', who: 'signed-identity' }])
  })
})
