import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BastionConfigInput } from '../../src/index.js'
import { freePort } from '../helpers/processes.js'
import { startServer, type TestServer } from '../helpers/server.js'

// A refresh whose answer never reached the client (a Redis stall past the 1 s deadline, a dropped
// connection) is retried with the same refresh token: that retry must get the successor the first
// attempt made, not a family revocation. Reuse proper (another client, after the window, or once
// the successor was used) still revokes the family and raises the alert.

const basic = (key: string): string => `Basic ${Buffer.from(`${key.slice(4, 20)}:${key}`).toString('base64')}`

interface Answer {
  status: number
  ms: number
  json: Record<string, string>
}

async function token(server: TestServer, body: Record<string, string>, key = server.keys.admin): Promise<Answer> {
  const started = performance.now()
  const res = await fetch(`${new URL(server.url).origin}/oauth/token`, {
    method: 'POST',
    headers: { authorization: basic(key), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(body).toString(),
  })
  const json = (await res.json()) as Record<string, string>
  return { status: res.status, ms: Math.round(performance.now() - started), json }
}

const refresh = (server: TestServer, refreshToken: string | undefined, key?: string): Promise<Answer> =>
  token(server, { grant_type: 'refresh_token', refresh_token: refreshToken ?? '' }, key)

/** A new family: its first refresh token, already rotated once (so Redis has the script loaded). */
async function family(server: TestServer): Promise<string> {
  const issued = await token(server, { grant_type: 'client_credentials' })
  expect(issued.status).toBe(200)
  const rotated = await refresh(server, issued.json.refresh_token)
  expect(rotated.status).toBe(200)
  return rotated.json.refresh_token ?? ''
}

const alerts = (lines: Record<string, unknown>[]) => lines.filter((l) => l.event === 'alert' && l.alert === 'token.refresh_reused')

// A private redis-server, so that this file may stop it (SIGSTOP) without stalling anyone else.
let redis: ChildProcess
let redisUrl = ''
beforeAll(async () => {
  const port = await freePort()
  redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    redis.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      if (out.includes('Ready to accept connections')) resolve()
    })
    redis.once('error', reject)
    redis.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)))
  })
  redisUrl = `redis://127.0.0.1:${port}`
  process.env.BASTION_STALL_REDIS = redisUrl
})
afterAll(async () => {
  if (redis.exitCode !== null || redis.signalCode !== null) return
  const exited = new Promise((resolve) => redis.once('exit', resolve))
  redis.kill('SIGCONT')
  redis.kill('SIGKILL')
  await exited
})

const STORES = {
  redis: () => ({ store: 'redis' as const, redis: { url: { env: 'BASTION_STALL_REDIS' }, keyPrefix: `stall:${Date.now()}:` } }),
  embedded: () => ({ store: 'embedded' as const }),
} as const

describe.each(['redis', 'embedded'] as const)('refresh retries and reuse, %s store', (store) => {
  let server: TestServer
  let short: TestServer
  const config = (extra: { refreshRetrySeconds?: number }): BastionConfigInput => ({
    auth: { resource: 'https://mcp.test/mcp', tokenService: { enabled: true, ...STORES[store](), ...extra }, bruteForce: { slowAfter: 1000, blockAfter: 1000 } },
    limits: { anonymous: { rate: '100000/min' } },
  })
  beforeAll(async () => {
    server = await startServer(config({}))
    short = await startServer(config({ refreshRetrySeconds: 1 }))
  })
  afterAll(async () => {
    await server.close()
    await short.close()
  })

  it('a retry of a refresh whose answer was lost gets the same new refresh token, no revocation, no alert', async () => {
    const presented = await family(server)
    const since = server.mark()
    const first = await refresh(server, presented)
    expect(first.status).toBe(200)
    // The client never saw `first`: it sends the same request again, twice.
    const retry = await refresh(server, presented)
    const again = await refresh(server, presented)
    expect([retry.status, again.status]).toStrictEqual([200, 200])
    expect(retry.json.refresh_token).toBe(first.json.refresh_token)
    expect(again.json.refresh_token).toBe(first.json.refresh_token)
    // A fresh access token each time (none is stored); the family lives on.
    expect(new Set([first, retry, again].map((a) => a.json.access_token)).size).toBe(3)
    expect((await refresh(server, retry.json.refresh_token)).status).toBe(200)
    const lines = since()
    expect(alerts(lines)).toStrictEqual([])
    expect(lines.filter((l) => l.event === 'token.refreshed').map((l) => l.retried ?? false)).toStrictEqual([false, true, true, false])
    if (store === 'embedded') {
      const stored = readFileSync(join(server.dir, '.bastion', 'refresh-tokens.json'), 'utf8')
      for (const t of [presented, first.json.refresh_token]) expect(stored).not.toContain(t ?? 'never')
    }
  })

  it('a used token presented by another client, even within the window, revokes the family with an alert', async () => {
    const presented = await family(server)
    const since = server.mark()
    const first = await refresh(server, presented)
    expect(first.status).toBe(200)
    const thief = await refresh(server, presented, server.keys.reader)
    expect(thief).toMatchObject({ status: 400, json: { error: 'invalid_grant' } })
    expect(alerts(since())).toHaveLength(1)
    expect((await refresh(server, first.json.refresh_token)).status).toBe(400)
  })

  it('a used token presented again once its successor was used revokes the family with an alert', async () => {
    const presented = await family(server)
    const since = server.mark()
    const first = await refresh(server, presented)
    const next = await refresh(server, first.json.refresh_token)
    expect([first.status, next.status]).toStrictEqual([200, 200])
    expect((await refresh(server, presented)).status).toBe(400)
    expect(alerts(since())).toHaveLength(1)
    expect((await refresh(server, next.json.refresh_token)).status).toBe(400)
  })

  it('a used token presented again after the window (refreshRetrySeconds: 1) revokes the family with an alert', async () => {
    const presented = await family(short)
    const since = short.mark()
    const first = await refresh(short, presented)
    expect(first.status).toBe(200)
    await new Promise((r) => setTimeout(r, 1100))
    expect((await refresh(short, presented)).status).toBe(400)
    expect(alerts(since())).toHaveLength(1)
    expect((await refresh(short, first.json.refresh_token)).status).toBe(400)
  })
})

describe('a Redis stall during a refresh', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({
      auth: { resource: 'https://mcp.test/mcp', tokenService: { enabled: true, ...STORES.redis() } },
      limits: { anonymous: { rate: '100000/min' } },
    })
  })
  afterAll(async () => {
    await server.close()
  })

  it('the first attempt times out with 503; after SIGCONT the retry gets the refresh token the stalled script made', async () => {
    const presented = await family(server)
    const since = server.mark()
    redis.kill('SIGSTOP')
    let stalled: Answer
    try {
      stalled = await refresh(server, presented)
    } finally {
      redis.kill('SIGCONT')
    }
    expect(stalled.status).toBe(503)
    expect(stalled.ms).toBeGreaterThanOrEqual(900)
    // The script ran when Redis resumed: the token is used and its successor exists. The retry,
    // queued behind it on the same connection, finds both and gets that successor.
    const retry = await refresh(server, presented)
    expect(retry.status).toBe(200)
    const successor = retry.json.refresh_token ?? ''
    const again = await refresh(server, presented)
    expect(again.json.refresh_token).toBe(successor)
    const next = await refresh(server, successor)
    expect(next.status).toBe(200)
    const lines = since()
    expect(alerts(lines)).toStrictEqual([])
    expect(lines.filter((l) => l.familyRevoked === true)).toStrictEqual([])
    expect(lines.filter((l) => l.event === 'token.refreshed').map((l) => l.retried ?? false)).toStrictEqual([true, true, false])
    console.log(`refresh stall: first attempt ${stalled.status} after ${stalled.ms} ms; retry ${retry.status} in ${retry.ms} ms (same refresh token again: ${again.ms} ms)`)
  })
})
