import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pinnedFields } from '../../src/gateway/definitions.js'
import { pinsOf, writePins } from '../../src/gateway/lock-file.js'
import { type Bastion, createBastion, type RunningServer } from '../../src/index.js'
import { freePort } from '../helpers/processes.js'
import { connect } from '../helpers/server.js'
import { auditLines, type HttpUpstream, startEverythingHttp, startHttpUpstream } from '../helpers/upstreams.js'

/**
 * HTTP upstreams that misbehave: one that redirects to another origin, one that answers 10 MB,
 * one that never answers. Each fails its own tools with a clear error, none is forwarded, and the
 * gateway keeps serving the others.
 */

let dir: string
let bastion: Bastion
let running: RunningServer
let key: string
let latePort = 0
let everything: { url: string; stop(): Promise<void> }
const fixtures: Record<string, HttpUpstream> = {}

beforeAll(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-gateway-http-')))
  for (const mode of ['normal', 'redirect', 'huge', 'hang']) fixtures[mode] = await startHttpUpstream({ MODE: mode, RECORD_FILE: join(dir, `${mode}.jsonl`) })
  everything = await startEverythingHttp()
  latePort = await freePort()
  // Pinned as the fixture lists them (the redirecting one cannot be listed to be pinned: the same definitions).
  const lister = new Client({ name: 'pin', version: '1' })
  await lister.connect(new StreamableHTTPClientTransport(new URL(fixtures.normal?.url as string)))
  const pins = pinsOf((await lister.listTools()).tools.map((t) => pinnedFields(t)))
  await lister.close()
  writePins(join(dir, 'bastion.lock.json'), new Map(['normal', 'redirect', 'huge', 'hang', 'small', 'late'].map((n) => [n, pins])))
  bastion = await createBastion({
    baseDir: dir,
    announce: false,
    logger: pino({ level: 'silent' }),
    config: {
      upstreams: {
        normal: { url: fixtures.normal?.url as string, startTimeoutMs: 5000 },
        redirect: { url: fixtures.redirect?.url as string, startTimeoutMs: 2000, breakerFailures: 3 },
        huge: { url: fixtures.huge?.url as string },
        // The same 10 MB answer, over this upstream's own message cap.
        small: { url: fixtures.huge?.url as string, maxMessageBytes: 1024 * 1024 },
        hang: { url: fixtures.hang?.url as string },
        // Nothing listens there at start.
        late: { url: `http://127.0.0.1:${latePort}/mcp`, startTimeoutMs: 1000 },
        // The real everything server in its Streamable HTTP mode (sessions, SSE), unpinned.
        // connectTimeoutMs bounds the wait for headers only: its 2 s call below outlasts it.
        everything: { url: everything.url, pin: 'off', connectTimeoutMs: 1000 },
      },
      limits: { tools: { hang__echo: { timeoutMs: 800 } } },
      alerts: { rules: [] },
      auth: { reloadIntervalMs: 0 },
    },
  })
  running = await bastion.listen({ host: '127.0.0.1', port: 0 })
  key = bastion.keys.create({ name: 'admin', roles: ['admin'], expiresAt: null }).key
}, 60_000)

afterAll(async () => {
  await bastion?.close()
  await Promise.all(Object.values(fixtures).map((f) => f.stop()))
  await everything?.stop()
})

const audit = (): Record<string, unknown>[] => auditLines(dir)

async function call(tool: string): Promise<{ isError: boolean | undefined; text: string }> {
  const c = await connect(running.url, 'modern', { authorization: `Bearer ${key}` })
  try {
    const r = await c.callTool({ name: tool, arguments: { text: 'hi' } })
    return { isError: r.isError as boolean | undefined, text: ((r.content as { text?: string }[]) ?? []).map((b) => b.text ?? '').join('') }
  } finally {
    await c.close()
  }
}

describe('gateway: HTTP upstreams', () => {
  it('fronts the real everything server over Streamable HTTP, for either era of client', async () => {
    for (const era of ['legacy', 'modern'] as const) {
      const c = await connect(running.url, era, { authorization: `Bearer ${key}` })
      try {
        const r = await c.callTool({ name: 'everything__echo', arguments: { message: `over http, ${era}` } })
        expect(r.isError).not.toBe(true)
        expect(JSON.stringify(r.content)).toContain(`over http, ${era}`)
      } finally {
        await c.close()
      }
    }
    expect(bastion.gateway?.report().find((u) => u.name === 'everything')).toMatchObject({ kind: 'http', state: 'up', protocolVersion: '2025-11-25' })
  })

  it('lets a call run longer than the connect timeout (it bounds the wait for headers, not the answer)', async () => {
    const c = await connect(running.url, 'legacy', { authorization: `Bearer ${key}` })
    try {
      const r = await c.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 2, steps: 2 } })
      expect(r.isError).not.toBe(true)
      expect(JSON.stringify(r.content)).toContain('completed')
    } finally {
      await c.close()
    }
  })
})

describe('gateway: HTTP upstreams that misbehave', () => {
  it('serves a well-behaved HTTP upstream (the control)', async () => {
    expect(await call('normal__echo')).toStrictEqual({ isError: undefined, text: '{"text":"hi"}' })
  })

  it('never follows a redirect to another origin', async () => {
    const r = await call('redirect__echo')
    expect(r.isError).toBe(true)
    expect(r.text).toContain('the server behind this tool is unavailable')
    // Only the first POST reached it; nothing went to the other origin.
    expect(fixtures.redirect?.records().every((rec) => rec.method === 'POST')).toBe(true)
    expect(bastion.gateway?.report().find((u) => u.name === 'redirect')).toMatchObject({ state: 'down', lastError: expect.stringContaining('redirected to another origin') })
  })

  it('opens the circuit after repeated failures: calls then fail at once, without contacting the upstream', async () => {
    for (let i = 0; i < 3; i++) expect((await call('redirect__echo')).isError).toBe(true)
    const before = fixtures.redirect?.records().length
    const r = await call('redirect__echo')
    expect(r.text).toContain('the server behind this tool is unavailable')
    expect(fixtures.redirect?.records().length).toBe(before)
    expect(bastion.gateway?.report().find((u) => u.name === 'redirect')?.breakerOpenUntil).toBeDefined()
    expect(
      audit()
        .filter((l) => l.tool === 'redirect__echo')
        .at(-1)?.detail,
    ).toContain('circuit open')
  })

  it('reaches an HTTP upstream that was down at start once it is up, its pins compared first', async () => {
    const before = await call('late__echo')
    expect(before.isError).toBe(true)
    expect(before.text).toContain('the server behind this tool is unavailable')
    fixtures.late = await startHttpUpstream({ MODE: 'normal', RECORD_FILE: join(dir, 'late.jsonl'), PORT: String(latePort) })
    expect(await call('late__echo')).toStrictEqual({ isError: undefined, text: '{"text":"hi"}' })
    expect(bastion.gateway?.report().find((u) => u.name === 'late')).toMatchObject({ state: 'up', blocked: {} })
  })

  it('refuses a 10 MB answer: over the output cap, or over the upstream message cap', async () => {
    const huge = await call('huge__echo')
    expect(huge.isError).toBe(true)
    expect(huge.text).toContain('tool output too large')
    const small = await call('small__echo')
    expect(small.isError).toBe(true)
    expect(small.text).not.toContain('x'.repeat(100))
    const lines = audit().filter((l) => l.tool === 'huge__echo' || l.tool === 'small__echo')
    expect(lines.map((l) => l.reason)).toStrictEqual(['ERR_OUTPUT_TOO_LARGE', expect.stringMatching(/^ERR_(UPSTREAM_UNAVAILABLE|TOOL_TIMEOUT)$/)])
  })

  it('times out an upstream that never answers, and keeps serving the others meanwhile', async () => {
    const hanging = call('hang__echo')
    expect(await call('normal__echo')).toStrictEqual({ isError: undefined, text: '{"text":"hi"}' })
    const r = await hanging
    expect(r.isError).toBe(true)
    expect(r.text).toContain('tool timed out')
  })
})
