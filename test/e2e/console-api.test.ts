import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { requestCounts, requestId, toolCall } from '../helpers/console.js'
import { readmeBlock } from '../helpers/readme.js'
import { startServer, type TestServer } from '../helpers/server.js'

// The console's JSON API as a script uses it: the README's example run as written (with the
// server's URL), and the same API over the PostgreSQL audit sink, whose lines the console reads
// back from the table with the indexes it creates.

const PG = 'postgres://postgres@127.0.0.1:5432/test'

type Page = { entries: { cursor: string; where: string; record: Record<string, unknown> }[]; verification?: { status: string; lines: number }; newest?: string }

async function api(server: TestServer, path: string, key: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(new URL(path, server.url), { headers: { authorization: `Bearer ${key}` } })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** A denied and an allowed call with request ids of the test's own. */
async function scripted(server: TestServer): Promise<{ denied: string; allowed: string }> {
  const denied = requestId('api-deny')
  const allowed = requestId('api-allow')
  expect((await toolCall(server.url, server.keys.nobody, 'list_files', {}, denied)).status).toBe(403)
  expect((await toolCall(server.url, server.keys.admin, 'list_files', {}, allowed)).status).toBe(200)
  return { denied, allowed }
}

describe('console API', () => {
  const servers: TestServer[] = []
  const tables: string[] = []
  afterAll(async () => {
    for (const s of servers) await s.close()
    const client = new pg.Client({ connectionString: PG })
    await client.connect()
    for (const t of tables) await client.query(`DROP TABLE IF EXISTS ${t}`)
    await client.end()
  })

  it('the README example runs as written: denied lines, newest first, their chain verified', async () => {
    const server = await startServer()
    servers.push(server)
    const { denied } = await scripted(server)
    const block = readmeBlock('console-api')
    const command = block.split('\n').find((l) => l.startsWith('curl '))
    expect(command).toBeDefined()
    // The block's own arguments, with this server's address and key: run by the real curl, no shell.
    const url = /'(http:\/\/127\.0\.0\.1:8080[^']+)'/.exec(command ?? '')?.[1] ?? ''
    expect(url).toContain('/console/api/audit?decision=deny&limit=5')
    // Asynchronously: the server answering it runs in this very process.
    const { stdout: out } = await promisify(execFile)(
      'curl',
      ['-s', '-m', '20', '-H', `Authorization: Bearer ${server.keys.admin}`, url.replace('http://127.0.0.1:8080', new URL(server.url).origin)],
      { encoding: 'utf8' },
    )
    const page = JSON.parse(out) as Page
    expect(page.entries.length).toBeGreaterThan(0)
    expect(page.entries.length).toBeLessThanOrEqual(5)
    expect(page.entries.every((e) => e.record.decision === 'deny')).toBe(true)
    expect(page.entries[0]?.record.requestId).toBe(denied)
    expect(page.entries[0]?.where).toMatch(/^audit\.jsonl:\d+$/)
    expect(page.verification?.status).toBe('verified')
    // What the README's comment promises of the answer's shape.
    expect(block).toContain('"verification":{"status":"verified"')
  })

  it('over the PostgreSQL sink: filters, overview counts, explain and export read the table', async () => {
    const table = `console_api_${randomBytes(4).toString('hex')}`
    tables.push(table)
    process.env.CONSOLE_API_PG = PG
    const server = await startServer({ audit: { sink: 'postgres', postgres: { url: { env: 'CONSOLE_API_PG' }, table } } })
    servers.push(server)
    const { denied, allowed } = await scripted(server)
    const key = server.keys.admin

    const byId = await api(server, `/console/api/audit?requestId=${denied}`, key)
    expect(byId.status).toBe(200)
    const page = byId.body as unknown as Page
    expect(page.entries.map((e) => e.record.requestId)).toEqual([denied])
    expect(page.entries[0]?.record).toMatchObject({ decision: 'deny', reason: 'ERR_FORBIDDEN', tool: 'list_files' })
    expect(page.entries[0]?.where).toMatch(new RegExp(`^${table}#\\d+$`))
    expect(page.verification?.status).toBe('verified')

    // The oracle: the table's own lines, counted as the console promises.
    const client = new pg.Client({ connectionString: PG })
    await client.connect()
    const rows = (await client.query<{ line: string }>(`SELECT line FROM ${table} ORDER BY id`)).rows.map((r) => JSON.parse(r.line) as Record<string, unknown>)
    await client.end()
    const expected = requestCounts(rows)
    const overview = (await api(server, '/console/api/overview', key)).body.stats as { lastHour: unknown; lastDay: unknown }
    expect(overview.lastHour).toEqual(expected.hour)
    expect(overview.lastDay).toEqual(expected.day)

    const explained = await api(server, `/console/api/explain?requestId=${denied}`, key)
    expect(explained.status).toBe(200)
    expect(explained.body.explanation).toMatchObject({ decision: { allow: false, rule: 'default-deny' }, stage: 'reachability' })

    const res = await fetch(new URL(`/console/api/audit/export?tool=list_files`, server.url), { headers: { authorization: `Bearer ${key}` } })
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/)
    const exported = (await res.text())
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(exported.map((r) => r.requestId)).toEqual([denied, allowed])
    expect(exported).toEqual(rows.filter((r) => r.tool === 'list_files'))
  })

  it("input mistakes are refused in the console's own words, and audited as refused", async () => {
    const server = await startServer()
    servers.push(server)
    const post = async (path: string, body: unknown, id: string) => {
      const res = await fetch(new URL(path, server.url), {
        method: 'POST',
        headers: { authorization: `Bearer ${server.keys.admin}`, 'content-type': 'application/json', 'x-request-id': id },
        body: JSON.stringify(body),
      })
      return { status: res.status, body: (await res.json()) as { error: { message: string; data: { code: string } } } }
    }
    const cases = [
      { path: '/console/api/replay', body: { policy: 'rules:\n  - id: x\n    effect: deny\n    tools: [a]\n' }, says: /^policy candidate:.*rules\.0/s },
      { path: '/console/api/explain', body: { tool: 'no_such_tool', roles: [] }, says: /no tool named "no_such_tool"/ },
      { path: '/console/api/keys', body: { name: 'k', roles: ['no-such-role'] }, says: /no role named "no-such-role"/ },
      { path: '/console/api/replay', body: { policy: 'rules: []', from: '2026-02-30' }, says: /^from: not a time/ },
    ]
    for (const c of cases) {
      const id = requestId('api-input')
      const { status, body } = await post(c.path, c.body, id)
      expect(status, c.path).toBe(400)
      expect(body.error.data.code).toBe('ERR_INVALID_REQUEST')
      expect(body.error.message).toMatch(c.says)
      const lines = server.audit().filter((r) => r.requestId === id)
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatchObject({ decision: 'deny', reason: 'ERR_INVALID_REQUEST', status: 400 })
    }
  })

  it("console requests are charged to the principal's own buckets: past them 429, audited", async () => {
    const server = await startServer({ limits: { principal: { rate: '3/h' } } })
    servers.push(server)
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await api(server, '/console/api/overview', server.keys.admin)).status)
    expect(statuses).toEqual([200, 200, 200, 429])
    // The same budget as its MCP calls: the key's next tool call is refused too.
    expect((await toolCall(server.url, server.keys.admin, 'list_files', {})).status).toBe(429)
    const limited = server.audit().filter((r) => r.method === 'console/api/overview' && r.reason === 'ERR_RATE_LIMITED')
    expect(limited).toHaveLength(1)
  })

  it('a script without a credential, or with a key holding no console role, is refused and audited', async () => {
    const server = await startServer()
    servers.push(server)
    const id = requestId('api-anon')
    const anon = await fetch(new URL('/console/api/overview', server.url), { headers: { 'x-request-id': id } })
    expect(anon.status).toBe(401)
    const body = (await anon.json()) as { error: { data: { code: string } } }
    expect(body.error.data.code).toBe('ERR_AUTH_MISSING')
    const reader = await api(server, '/console/api/overview', server.keys.reader)
    expect(reader.status).toBe(403)
    const lines = server.audit().filter((r) => r.requestId === id)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ decision: 'deny', reason: 'ERR_AUTH_MISSING', method: 'console/api/overview' })
  })
})
