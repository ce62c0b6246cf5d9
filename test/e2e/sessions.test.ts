import { afterEach, describe, expect, it } from 'vitest'
import { initializeBody, post, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

async function open(s: TestServer, key: string): Promise<Response> {
  return post(s.url, initializeBody(), { authorization: `Bearer ${key}` })
}

describe('legacy session caps and idle timeout', () => {
  it('past the per-principal cap, the oldest idle session of that principal is closed', async () => {
    server = await startServer({ server: { sessions: { maxPerPrincipal: 2, maxTotal: 10, idleTimeoutSeconds: 600 } } })
    const s = server
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await open(s, s.keys.admin)).headers.get('mcp-session-id') ?? '')
    expect(s.bastion.edge().sessions.countFor(s.audit().find((l) => l.event === 'auth.success')?.principal as string)).toBe(2)
    const old = await post(
      s.url,
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { authorization: `Bearer ${s.keys.admin}`, 'mcp-session-id': ids[0] ?? '', 'mcp-protocol-version': '2025-11-25' },
    )
    expect(old.status).toBe(404)
    expect(s.audit()).toContainEqual(expect.objectContaining({ event: 'session.closed', session: ids[0], cause: 'evicted' }))
  })

  it('past the global cap, a new session is refused with 429 and audited', async () => {
    server = await startServer({ server: { sessions: { maxPerPrincipal: 5, maxTotal: 2, idleTimeoutSeconds: 600 } } })
    const s = server
    expect((await open(s, s.keys.admin)).status).toBe(200)
    expect((await open(s, s.keys.reader)).status).toBe(200)
    const since = s.mark()
    const refused = await open(s, s.keys.nobody)
    expect(refused.status).toBe(429)
    expect(refused.headers.get('retry-after')).toBe('30')
    expect(((await refused.json()) as { error: { data: { code: string } } }).error.data.code).toBe('ERR_SESSION_LIMIT')
    expect(since()).toEqual([expect.objectContaining({ event: 'limit.exceeded', reason: 'ERR_SESSION_LIMIT' })])
  })

  it('an idle session expires', async () => {
    server = await startServer({ server: { sessions: { maxPerPrincipal: 5, maxTotal: 5, idleTimeoutSeconds: 1 } } })
    const s = server
    const id = (await open(s, s.keys.admin)).headers.get('mcp-session-id') ?? ''
    expect(s.bastion.edge().sessions.size).toBe(1)
    // The idle timeout (1 s, the least the schema allows) must pass: swept until it has, not for a guessed time.
    const sessions = s.bastion.edge().sessions
    await waitFor(
      () => {
        sessions.sweep()
        return sessions.size === 0
      },
      { what: 'the idle session to be swept', timeoutMs: 5000, intervalMs: 50 },
    )
    const res = await post(
      s.url,
      { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      { authorization: `Bearer ${s.keys.admin}`, 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' },
    )
    expect(res.status).toBe(404)
    expect(s.audit()).toContainEqual(expect.objectContaining({ event: 'session.closed', session: id, cause: 'idle' }))
  })

  it('revoking a key cuts off its open session on the next request', async () => {
    server = await startServer()
    const s = server
    const { key, stored } = s.bastion.keys.create({ name: 'short-lived', roles: ['admin'], expiresAt: null })
    const id = (await open(s, key)).headers.get('mcp-session-id') ?? ''
    s.bastion.keys.revoke(stored.id)
    const res = await post(s.url, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { authorization: `Bearer ${key}`, 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' })
    expect(res.status).toBe(401)
    expect(((await res.json()) as { error: { data: { code: string } } }).error.data.code).toBe('ERR_AUTH_REVOKED')
  })
})
