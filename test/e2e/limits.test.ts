import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { SecurityError } from '../../src/errors.js'
import { callModern, connect, initializeBody, JSON_HEADERS, modernCall, modernHeaders, post, rpcBody, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'
import { nodeRequest } from '../helpers/wire-server.js'

const FIXTURES = new URL('../fixtures/isolated-tools.mjs', import.meta.url)

function errorOf(body: Record<string, unknown>): { code: number; message: string; data: { code: string; requestId: string; retryAfterMs?: number } } {
  return body.error as never
}

function toolError(body: Record<string, unknown>): { code: string; text: string } {
  const result = body.result as { isError?: boolean; content: { text: string }[]; _meta?: Record<string, { code: string }> }
  expect(result.isError).toBe(true)
  return { code: result._meta?.['bastion/error']?.code ?? '', text: result.content[0]?.text ?? '' }
}

function text(body: Record<string, unknown>): string {
  const result = body.result as { isError?: boolean; content: { text: string }[] }
  expect(result.isError ?? false).toBe(false)
  return result.content[0]?.text ?? ''
}

describe('rate limits over HTTP (memory backend)', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({
      limits: {
        anonymous: { rate: '3/hour' },
        principal: { rate: '100/min' },
        roles: { admin: { rate: '1000/min' }, reader: { rate: '3/hour' } },
        tiers: { fs: { rate: '2/hour' } },
        tools: { list_files: { tier: 'fs' } },
      },
    })
  })
  afterAll(async () => {
    await server.close()
  })

  it('a role with a lower rate is refused with 429, Retry-After and data.retryAfterMs; the audit line names the bucket', async () => {
    const since = server.mark()
    for (let i = 0; i < 3; i++) {
      const { res } = await callModern(server.url, server.keys.reader, 'read_file', { path: 'README.md' })
      expect(res.status).toBe(200)
    }
    const { res, body } = await callModern(server.url, server.keys.reader, 'read_file', { path: 'README.md' })
    expect(res.status).toBe(429)
    const error = errorOf(body)
    expect(error.code).toBe(-31429)
    expect(error.data.code).toBe('ERR_RATE_LIMITED')
    // 3 per hour: the next token in 20 minutes (less the ms already elapsed).
    expect(error.data.retryAfterMs).toBeGreaterThan(19 * 60_000)
    expect(error.data.retryAfterMs).toBeLessThanOrEqual(20 * 60_000)
    expect(Number(res.headers.get('retry-after'))).toBe(Math.ceil((error.data.retryAfterMs ?? 0) / 1000))
    expect(error.message).toBe('rate limit exceeded')
    const lines = since()
    expect(lines).toHaveLength(4)
    expect(lines.at(-1)).toMatchObject({ event: 'limit.exceeded', decision: 'deny', reason: 'ERR_RATE_LIMITED', bucket: 'role:reader', requestId: error.data.requestId })
    // The admin's own, more generous bucket is untouched.
    expect((await callModern(server.url, server.keys.admin, 'read_file', { path: 'README.md' })).res.status).toBe(200)
  })

  it('a tier bucket limits its tools and nothing else', async () => {
    const since = server.mark()
    expect(text((await callModern(server.url, server.keys.admin, 'list_files', {})).body)).toContain('README.md')
    expect((await callModern(server.url, server.keys.admin, 'list_files', {})).res.status).toBe(200)
    const { res, body } = await callModern(server.url, server.keys.admin, 'list_files', {})
    expect(res.status).toBe(429)
    expect(errorOf(body).data.code).toBe('ERR_RATE_LIMITED')
    expect(since().at(-1)).toMatchObject({ reason: 'ERR_RATE_LIMITED', bucket: 'tier:fs', tool: 'list_files' })
    expect((await callModern(server.url, server.keys.admin, 'read_file', { path: 'README.md' })).res.status).toBe(200)
  })

  it('failed authentication drains the address bucket; then the address is refused before any key is checked', async () => {
    const bogus = `bst_${'0'.repeat(16)}_${'A'.repeat(43)}`
    // From 127.0.0.2: the address this test blocks is not the one the other tests of this server use.
    const attempt = () =>
      nodeRequest(server.url, {
        headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'read_file'), authorization: `Bearer ${bogus}` },
        body: JSON.stringify(modernCall('read_file', { path: 'README.md' })),
        localAddress: '127.0.0.2',
      })
    const since = server.mark()
    for (let i = 0; i < 3; i++) expect((await attempt()).status).toBe(401)
    const res = await attempt()
    expect(res.status).toBe(429)
    expect(res.headers.get('www-authenticate')).toBeNull()
    const lines = since()
    expect(lines.map((l) => l.reason)).toStrictEqual(['ERR_AUTH_INVALID', 'ERR_AUTH_INVALID', 'ERR_AUTH_INVALID', 'ERR_RATE_LIMITED'])
    expect(lines.at(-1)).toMatchObject({ event: 'limit.exceeded', bucket: 'anonymous', remote: '127.0.0.2' })
    expect(lines.at(-1)?.principal).toBeUndefined()
    expect(JSON.stringify(lines)).not.toContain(bogus)
    // Refused before any key is checked: even a valid key from that address.
    const valid = await nodeRequest(server.url, {
      headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'read_file'), authorization: `Bearer ${server.keys.admin}` },
      body: JSON.stringify(modernCall('read_file', { path: 'README.md' })),
      localAddress: '127.0.0.2',
    })
    expect(valid.status).toBe(429)
  })
})

describe('every authenticated request is charged', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ limits: { roles: { reader: { rate: '2/hour' } } } })
  })
  afterAll(async () => {
    await server.close()
  })

  it('notifications cost a token too: they cannot be used to flood the server for free', async () => {
    const auth = { authorization: `Bearer ${server.keys.reader}` }
    const init = await post(server.url, initializeBody(), auth)
    expect(init.status).toBe(200)
    const session = init.headers.get('mcp-session-id') ?? ''
    await init.text()
    const headers = { ...auth, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' }
    const notified = await post(server.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)
    expect(notified.status).toBe(202)
    const since = server.mark()
    const refused = await post(server.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)
    expect(refused.status).toBe(429)
    expect(since().at(-1)).toMatchObject({ reason: 'ERR_RATE_LIMITED', bucket: 'role:reader' })
  })
})

describe('metrics endpoint', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ limits: { roles: { reader: { rate: '1/hour' } } } })
  })
  afterAll(async () => {
    await server.close()
  })

  it('admin reads Prometheus text with the refusal counted by bucket; reader is forbidden; no key is 401', async () => {
    await callModern(server.url, server.keys.reader, 'read_file', { path: 'README.md' })
    expect((await callModern(server.url, server.keys.reader, 'read_file', { path: 'README.md' })).res.status).toBe(429)
    const metricsUrl = server.url.replace('/mcp', '/metrics')
    const res = await fetch(metricsUrl, { headers: { authorization: `Bearer ${server.keys.admin}` } })
    expect(res.status).toBe(200)
    const body = await res.text()
    expect(body).toContain('bastion_rate_limited_total{bucket="role:reader"} 1')
    expect(body).toMatch(/bastion_tool_calls_total\{tool="read_file",code="OK"\} 1/)
    expect(body).not.toContain('key:')
    expect((await fetch(metricsUrl, { headers: { authorization: `Bearer ${server.keys.reader}` } })).status).toBe(403)
    expect((await fetch(metricsUrl)).status).toBe(401)
  })
})

describe('execution limits', () => {
  let server: TestServer
  const seen: { abortedBy?: string | undefined; started: number } = { started: 0 }
  // The deaf tool's work ends when the test says so, not after a fixed time: it provably outlives its timeout.
  const deafWork: (() => void)[] = []
  const releaseDeaf = (): void => {
    for (const end of deafWork.splice(0)) end()
  }
  beforeAll(async () => {
    server = await startServer(
      {
        // Its own tools beside the built-in file tools.
        workspace: { enabled: true },
        limits: {
          principal: { rate: '100000/min' },
          concurrency: { perPrincipal: 2, global: 50 },
          maxOutputBytes: 1024 * 1024,
          tools: { spin: { cpuMs: 800 }, deaf_isolated: { timeoutMs: 400 } },
        },
      },
      (b) => {
        const input = z.object({ ms: z.number().int().max(60_000).default(0) })
        b.tool({
          name: 'sleep',
          description: 'waits, honouring its signal',
          input,
          timeoutMs: 300,
          run: async (args, ctx) => {
            seen.started += 1
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, args.ms)
              ctx.signal.addEventListener('abort', () => {
                clearTimeout(timer)
                const reason: unknown = ctx.signal.reason
                seen.abortedBy = reason instanceof SecurityError ? reason.code : 'client'
                resolve()
              })
            })
            return { content: [{ type: 'text', text: 'slept' }] }
          },
        })
        b.tool({ name: 'deaf', description: 'ignores its signal', input, timeoutMs: 200, run: () => new Promise((resolve) => deafWork.push(() => resolve({ content: [] }))) })
        b.tool({ name: 'huge_inline', description: '100 MB in process', input, run: async () => ({ content: [{ type: 'text', text: 'x'.repeat(100 * 1024 * 1024) }] }) })
        b.tool({ name: 'echo_isolated', description: 'isolated echo', input: z.object({ text: z.string().max(100) }), isolate: { module: FIXTURES, export: 'echo' } })
        b.tool({ name: 'spin', description: 'loops forever', input, isolate: { module: FIXTURES, export: 'spin' } })
        b.tool({ name: 'allocate', description: 'allocates 4 GiB', input, isolate: { module: FIXTURES, export: 'allocate', memoryMb: 128 } })
        b.tool({ name: 'heap', description: 'grows the heap', input, isolate: { module: FIXTURES, export: 'heap', memoryMb: 96 } })
        b.tool({ name: 'huge', description: '100 MB output', input, isolate: { module: FIXTURES, export: 'huge', memoryMb: 1024 } })
        b.tool({ name: 'deaf_isolated', description: 'ignores abort', input, isolate: { module: FIXTURES, export: 'deaf' } })
        b.tool({ name: 'crash', description: 'throws', input, isolate: { module: FIXTURES, export: 'crash' } })
      },
    )
  })
  afterAll(async () => {
    releaseDeaf()
    await server.close()
  })

  it('a timeout aborts the tool signal and answers ERR_TOOL_TIMEOUT in-band; the audit line says so', async () => {
    const since = server.mark()
    const { res, body } = await callModern(server.url, server.keys.admin, 'sleep', { ms: 10_000 })
    expect(res.status).toBe(200)
    expect(toolError(body)).toMatchObject({ code: 'ERR_TOOL_TIMEOUT' })
    expect(toolError(body).text).toMatch(/^tool timed out \(request id /)
    expect(seen.abortedBy).toBe('ERR_TOOL_TIMEOUT')
    expect(since().at(-1)).toMatchObject({ event: 'tool.call', decision: 'deny', reason: 'ERR_TOOL_TIMEOUT', timeoutMs: 300, tool: 'sleep' })
  })

  it('an in-process tool that ignores its signal is answered at its timeout and marked abandoned', async () => {
    const since = server.mark()
    const started = Date.now()
    const { body } = await callModern(server.url, server.keys.admin, 'deaf', {})
    expect(Date.now() - started).toBeLessThan(2000)
    expect(toolError(body).code).toBe('ERR_TOOL_TIMEOUT')
    expect(since().at(-1)).toMatchObject({ reason: 'ERR_TOOL_TIMEOUT', abandoned: true })
    // The abandoned work still runs, so it keeps its concurrency slot (2 per principal here).
    expect(toolError((await callModern(server.url, server.keys.admin, 'deaf', {})).body).code).toBe('ERR_TOOL_TIMEOUT')
    const full = await callModern(server.url, server.keys.admin, 'sleep', {})
    expect(full.body.error).toMatchObject({ code: -31429, data: { code: 'ERR_CONCURRENCY_LIMIT' } })
    expect(since().at(-1)).toMatchObject({ reason: 'ERR_CONCURRENCY_LIMIT', cap: 'principal' })
    // Once the ignored work ends, its slots are free again.
    releaseDeaf()
    await waitFor(() => server.bastion.caps.total === 0, { what: 'the abandoned calls to give back their slots' })
    expect((await callModern(server.url, server.keys.admin, 'sleep', {})).body.result).toMatchObject({ content: [{ text: 'slept' }] })
  })

  it('closing the response stream (2026-07-28) cancels the tool and is audited as cancelled', async () => {
    seen.abortedBy = undefined
    const since = server.mark()
    const controller = new AbortController()
    const started = seen.started
    const pending = callModern(server.url, server.keys.admin, 'sleep', { ms: 250 }, { signal: controller.signal }).catch((e: unknown) => e)
    await waitFor(() => seen.started > started, { what: 'the sleep tool to start' })
    controller.abort()
    await pending
    await expect.poll(() => since().at(-1)?.reason, { timeout: 3000 }).toBe('ERR_CANCELLED')
    expect(seen.abortedBy).toBe('client')
    expect(since().at(-1)).toMatchObject({ event: 'tool.cancelled', tool: 'sleep' })
  })

  it('notifications/cancelled (2025-11-25) cancels the tool', async () => {
    seen.abortedBy = undefined
    const since = server.mark()
    const client = await connect(server.url, 'legacy', { authorization: `Bearer ${server.keys.admin}` })
    const controller = new AbortController()
    const started = seen.started
    const pending = client.callTool({ name: 'sleep', arguments: { ms: 250 } }, { signal: controller.signal }).catch((e: unknown) => e)
    await waitFor(() => seen.started > started, { what: 'the sleep tool to start' })
    controller.abort()
    await pending
    await expect.poll(() => since().find((l) => l.tool === 'sleep')?.reason, { timeout: 3000 }).toBe('ERR_CANCELLED')
    expect(seen.abortedBy).toBe('client')
    await client.close()
  })

  it('a per-principal concurrency cap refuses the extra call with -31429 and retryAfterMs; others still run', async () => {
    const since = server.mark()
    const started = seen.started
    const slow = [1, 2].map((id) => callModern(server.url, server.keys.admin, 'sleep', { ms: 250 }, { id }))
    await waitFor(() => seen.started === started + 2, { what: 'both slow calls to hold their slots' })
    const third = await callModern(server.url, server.keys.admin, 'sleep', { ms: 0 }, { id: 3 })
    const other = await callModern(server.url, server.keys.reader, 'read_file', { path: 'README.md' })
    expect(errorOf(third.body)).toMatchObject({ code: -31429, data: { code: 'ERR_CONCURRENCY_LIMIT', retryAfterMs: 1000 } })
    expect(text(other.body)).toContain('Demo workspace')
    for (const r of await Promise.all(slow)) expect(text(r.body)).toBe('slept')
    expect(since().find((l) => l.reason === 'ERR_CONCURRENCY_LIMIT')).toMatchObject({ event: 'limit.exceeded', cap: 'principal' })
  })

  it('an in-process result over the output cap is refused, not sent', async () => {
    const { res, body } = await callModern(server.url, server.keys.admin, 'huge_inline', {})
    expect(Number(res.headers.get('content-length') ?? 0)).toBeLessThan(10_000)
    expect(toolError(body).code).toBe('ERR_OUTPUT_TOO_LARGE')
  })

  it('an isolated tool runs in another process and its audit line carries CPU time and peak memory', async () => {
    const since = server.mark()
    const out = text((await callModern(server.url, server.keys.admin, 'echo_isolated', { text: 'hi' })).body)
    expect(out).toMatch(/^hi from key:[0-9a-f]{16} pid \d+$/)
    expect(out).not.toContain(`pid ${process.pid}`)
    const line = since().at(-1)
    expect(line).toMatchObject({ reason: 'OK', tool: 'echo_isolated' })
    expect(line?.peakRssBytes).toBeGreaterThan(10 * 1024 * 1024)
    expect(typeof line?.cpuMs).toBe('number')
    expect(typeof line?.toolMs).toBe('number')
  })

  it.each([
    { tool: 'spin', code: 'ERR_TOOL_RESOURCE_LIMIT', cause: /cpu time/ },
    { tool: 'allocate', code: 'ERR_TOOL_RESOURCE_LIMIT', cause: /resident memory|heap/ },
    { tool: 'heap', code: 'ERR_TOOL_RESOURCE_LIMIT', cause: /heap|resident memory/ },
    { tool: 'huge', code: 'ERR_OUTPUT_TOO_LARGE', cause: /exceeds/ },
    { tool: 'deaf_isolated', code: 'ERR_TOOL_TIMEOUT', cause: /timeout/ },
    { tool: 'crash', code: 'ERR_TOOL_FAILED', cause: /secret internal detail/ },
  ])('runaway isolated tool $tool → $code, contained, while a concurrent call succeeds', async ({ tool, code, cause }) => {
    const since = server.mark()
    const runaway = callModern(server.url, server.keys.admin, tool, {})
    await waitFor(() => server.bastion.caps.total === 1, { what: `${tool} to hold its slot` })
    const started = Date.now()
    const normal = await callModern(server.url, server.keys.reader, 'read_file', { path: 'README.md' })
    expect(Date.now() - started).toBeLessThan(1000)
    expect(text(normal.body)).toContain('Demo workspace')
    const { body } = await runaway
    const refused = toolError(body)
    expect(refused.code).toBe(code)
    // The client sees the code and the request id, never the cause.
    expect(refused.text).not.toMatch(/secret|\/etc|heap|cpu|resident/)
    const line = since().find((l) => l.tool === tool)
    expect(line).toMatchObject({ reason: code })
    expect(String(line?.detail)).toMatch(cause)
    // Every child process is gone: the server's slots are free again.
    expect(server.bastion.caps.total).toBe(0)
  })

  it('the server keeps serving after all of that', async () => {
    const res = await post(server.url, modernCall('read_file', { path: 'README.md' }), {
      ...modernHeaders('tools/call', 'read_file'),
      authorization: `Bearer ${server.keys.admin}`,
    })
    expect(res.status).toBe(200)
    expect(JSON.stringify(await rpcBody(res))).toContain('Demo workspace')
  })
})
