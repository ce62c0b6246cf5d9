import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initializeBody, modernCall, modernHeaders, post, rpcBody, startServer, type TestServer } from '../helpers/server.js'

let server: TestServer
let revoked: string
let expired: string

beforeAll(async () => {
  server = await startServer()
  revoked = server.bastion.keys.create({ name: 'to-revoke', roles: ['admin'], expiresAt: null }).key
  server.bastion.keys.revoke(revoked.slice(4, 20))
  expired = server.bastion.keys.create({ name: 'expired', roles: ['admin'], expiresAt: new Date(Date.now() - 1000) }).key
  // A sibling folder whose name shares the workspace's prefix, and a symlink escaping the workspace.
  const root = join(server.dir, '.bastion')
  mkdirSync(join(root, 'workspace-evil'), { recursive: true })
  writeFileSync(join(root, 'workspace-evil', 'secret.txt'), 'CANARY-SIBLING')
  writeFileSync(join(server.dir, 'outside.txt'), 'CANARY-OUTSIDE')
  symlinkSync(join(server.dir, 'outside.txt'), join(root, 'workspace', 'escape.txt'))
  symlinkSync(server.dir, join(root, 'workspace', 'escape-dir'))
})
afterAll(async () => {
  await server.close()
})

/** Nothing internal on the wire: no secret, no host path, no stack, no library message. */
function assertNoLeak(text: string): void {
  for (const secret of [server.keys.admin, server.keys.reader, server.keys.nobody, revoked, expired]) expect(text).not.toContain(secret.slice(21))
  expect(text).not.toContain(server.dir)
  expect(text).not.toMatch(/\bat .+:\d+:\d+|node_modules|ENOENT|TypeError|SyntaxError|CANARY/)
}

const ADMIN = (): Record<string, string> => ({ authorization: `Bearer ${server.keys.admin}` })

const HTTP_REFUSALS: { name: string; body?: () => unknown; headers: () => Record<string, string>; status: number; code: string; event: string }[] = [
  { name: 'no credential', headers: () => ({}), status: 401, code: 'ERR_AUTH_MISSING', event: 'auth.failure' },
  { name: 'Basic scheme', headers: () => ({ authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }), status: 401, code: 'ERR_AUTH_INVALID', event: 'auth.failure' },
  { name: 'trailing junk after key', headers: () => ({ authorization: `Bearer ${server.keys.admin} x` }), status: 401, code: 'ERR_AUTH_INVALID', event: 'auth.failure' },
  {
    name: 'two credentials',
    headers: () => ({ authorization: `Bearer ${server.keys.admin}`, 'x-api-key': server.keys.reader }),
    status: 401,
    code: 'ERR_AUTH_INVALID',
    event: 'auth.failure',
  },
  { name: 'unknown key id', headers: () => ({ 'x-api-key': `bst_0123456789abcdef_${'A'.repeat(43)}` }), status: 401, code: 'ERR_AUTH_INVALID', event: 'auth.failure' },
  {
    name: 'right id, wrong secret',
    headers: () => ({ 'x-api-key': `${server.keys.admin.slice(0, 21)}${'B'.repeat(43)}` }),
    status: 401,
    code: 'ERR_AUTH_INVALID',
    event: 'auth.failure',
  },
  { name: 'not a bastion key', headers: () => ({ authorization: 'Bearer eyJhbGciOiJub25lIn0.e30.' }), status: 401, code: 'ERR_AUTH_INVALID', event: 'auth.failure' },
  { name: 'revoked key', headers: () => ({ authorization: `Bearer ${revoked}` }), status: 401, code: 'ERR_AUTH_REVOKED', event: 'auth.failure' },
  { name: 'expired key', headers: () => ({ 'x-api-key': expired }), status: 401, code: 'ERR_AUTH_EXPIRED', event: 'auth.failure' },
  { name: 'foreign Origin', headers: () => ({ ...ADMIN(), origin: 'https://evil.example' }), status: 403, code: 'ERR_ORIGIN_FORBIDDEN', event: 'origin.rejected' },
  { name: 'Origin null', headers: () => ({ ...ADMIN(), origin: 'null' }), status: 403, code: 'ERR_ORIGIN_FORBIDDEN', event: 'origin.rejected' },
  { name: 'wrong content-type', headers: () => ({ ...ADMIN(), 'content-type': 'text/plain' }), status: 415, code: 'ERR_UNSUPPORTED_MEDIA_TYPE', event: 'request.rejected' },
  { name: 'Accept without SSE', headers: () => ({ ...ADMIN(), accept: 'application/json' }), status: 406, code: 'ERR_NOT_ACCEPTABLE', event: 'request.rejected' },
  {
    name: 'oversized body',
    body: () => ({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(2 * 1024 * 1024) } }),
    headers: ADMIN,
    status: 413,
    code: 'ERR_BODY_TOO_LARGE',
    event: 'limit.exceeded',
  },
  {
    name: 'deeply nested JSON',
    body: () => `{"jsonrpc":"2.0","id":1,"method":"ping","params":${'['.repeat(5000)}${']'.repeat(5000)}}`,
    headers: ADMIN,
    status: 400,
    code: 'ERR_JSON_TOO_DEEP',
    event: 'limit.exceeded',
  },
  { name: 'invalid JSON', body: () => '{"jsonrpc":"2.0",', headers: ADMIN, status: 400, code: 'ERR_PARSE', event: 'request.rejected' },
  { name: 'batch array', body: () => [initializeBody(1), initializeBody(2)], headers: ADMIN, status: 400, code: 'ERR_INVALID_REQUEST', event: 'request.rejected' },
  {
    name: 'legacy call without a session',
    body: () => ({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    headers: ADMIN,
    status: 400,
    code: 'ERR_SESSION_REQUIRED',
    event: 'request.rejected',
  },
  {
    name: 'unknown session id',
    body: () => ({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    headers: () => ({ ...ADMIN(), 'mcp-session-id': 'no-such-session' }),
    status: 404,
    code: 'ERR_SESSION_NOT_FOUND',
    event: 'request.rejected',
  },
  {
    name: 'wrong role calls read_file (2026-07-28)',
    body: () => modernCall('read_file', { path: 'README.md' }),
    headers: () => ({ authorization: `Bearer ${server.keys.nobody}`, ...modernHeaders('tools/call', 'read_file') }),
    status: 403,
    code: 'ERR_FORBIDDEN',
    event: 'authz.denied',
  },
]

describe('HTTP refusals: status, code, no leak, exactly one audit line', () => {
  it.each(HTTP_REFUSALS)('$name → $status $code', async ({ body, headers, status, code, event }) => {
    const since = server.mark()
    const res = await post(server.url, body?.() ?? initializeBody(), headers())
    expect(res.status).toBe(status)
    const requestId = res.headers.get('x-request-id')
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/)
    const text = await res.text()
    assertNoLeak(text)
    const json = JSON.parse(text) as { error: { data: { code: string; requestId: string } } }
    expect(json.error.data).toEqual({ code, requestId })
    // The authorization server is on by default: every 401 points at the Protected Resource Metadata (RFC 9728 §5.1).
    if (status === 401) expect(res.headers.get('www-authenticate')).toContain(`resource_metadata="${new URL(server.url).origin}/.well-known/oauth-protected-resource/mcp"`)
    const lines = since()
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ event, decision: 'deny', reason: code, requestId })
    assertNoLeak(JSON.stringify(lines[0]?.principal ?? ''))
  })

  it('a foreign Host header (DNS rebinding) → 403, one audit line', async () => {
    const since = server.mark()
    const port = new URL(server.url).port
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/mcp',
          method: 'POST',
          headers: { host: `rebound.example:${port}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...ADMIN() },
        },
        (res) => {
          let data = ''
          res.on('data', (c: Buffer) => {
            data += c.toString()
          })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }))
        },
      )
      req.on('error', reject)
      req.end(JSON.stringify(initializeBody()))
    })
    expect(status).toBe(403)
    expect(JSON.parse(body).error.data.code).toBe('ERR_HOST_FORBIDDEN')
    expect(since()).toEqual([expect.objectContaining({ event: 'origin.rejected', reason: 'ERR_HOST_FORBIDDEN' })])
  })

  it('Mcp-Name header disagreeing with the body → 400 with -32020', async () => {
    const res = await post(server.url, modernCall('read_file', { path: 'README.md' }), { ...ADMIN(), ...modernHeaders('tools/call', 'list_files') })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { code: number } }).error.code).toBe(-32020)
  })

  it('wrong role, legacy session → 403 forbidden on the call, tools/list shows nothing', async () => {
    const init = await post(server.url, initializeBody(), { authorization: `Bearer ${server.keys.nobody}` })
    const session = init.headers.get('mcp-session-id') ?? ''
    expect(session).not.toBe('')
    const h = { authorization: `Bearer ${server.keys.nobody}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' }
    const list = await rpcBody(await post(server.url, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, h))
    expect(list.result).toEqual({ tools: [] })
    const since = server.mark()
    const res = await post(server.url, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'read_file', arguments: { path: 'README.md' } } }, h)
    expect(res.status).toBe(403)
    expect(((await res.json()) as { error: { data: { code: string } } }).error.data.code).toBe('ERR_FORBIDDEN')
    expect(since()).toEqual([expect.objectContaining({ event: 'authz.denied', reason: 'ERR_FORBIDDEN', tool: 'read_file', era: 'legacy' })])
  })

  it("another principal's session id is refused, and a session id is no credential", async () => {
    const init = await post(server.url, initializeBody(), ADMIN())
    const session = init.headers.get('mcp-session-id') ?? ''
    const body = { jsonrpc: '2.0', id: 2, method: 'tools/list' }
    const since = server.mark()
    const stolen = await post(server.url, body, { authorization: `Bearer ${server.keys.reader}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' })
    expect(stolen.status).toBe(403)
    expect(((await stolen.json()) as { error: { data: { code: string } } }).error.data.code).toBe('ERR_SESSION_FORBIDDEN')
    const bare = await post(server.url, body, { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' })
    expect(bare.status).toBe(401)
    expect(since()).toEqual([
      expect.objectContaining({ event: 'authz.denied', reason: 'ERR_SESSION_FORBIDDEN', session }),
      expect.objectContaining({ event: 'auth.failure', reason: 'ERR_AUTH_MISSING' }),
    ])
  })
})

const TRAVERSALS = [
  { name: 'dot-dot', path: '../../../../etc/passwd' },
  { name: 'absolute', path: '/etc/passwd' },
  { name: 'percent-encoded dot-dot', path: '%2e%2e%2f%2e%2e%2fetc%2fpasswd' },
  { name: 'mixed encoding', path: '..%2f..%2fetc/passwd' },
  { name: 'backslashes', path: '..\\..\\etc\\passwd' },
  { name: 'NUL byte', path: 'README.md\u0000.txt' },
  { name: 'sibling prefix', path: '../workspace-evil/secret.txt' },
  { name: 'symlink to a file outside', path: 'escape.txt' },
  { name: 'through a symlinked directory', path: 'escape-dir/outside.txt' },
  { name: 'home directory', path: '~/.ssh/id_rsa' },
  { name: '/proc', path: '../../../../proc/self/environ' },
] as const

describe('path confinement through the whole pipeline', () => {
  it.each(TRAVERSALS)('read_file $name → ERR_PATH_FORBIDDEN, no leak, one audit line', async ({ path }) => {
    const since = server.mark()
    const res = await post(server.url, modernCall('read_file', { path }), { ...ADMIN(), ...modernHeaders('tools/call', 'read_file') })
    expect(res.status).toBe(200)
    const text = await res.text()
    assertNoLeak(text)
    const result = (JSON.parse(text) as { result: { isError: boolean; _meta: Record<string, { code: string }> } }).result
    expect(result.isError).toBe(true)
    expect(result._meta['bastion/error']?.code).toBe('ERR_PATH_FORBIDDEN')
    const lines = since()
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ event: 'tool.call', decision: 'deny', reason: 'ERR_PATH_FORBIDDEN', tool: 'read_file' })
  })

  it('list_files on a symlinked directory escaping the workspace is refused', async () => {
    const res = await post(server.url, modernCall('list_files', { path: 'escape-dir' }), { ...ADMIN(), ...modernHeaders('tools/call', 'list_files') })
    const result = (await res.json()) as { result: { isError: boolean; _meta: Record<string, { code: string }> } }
    expect(result.result._meta['bastion/error']?.code).toBe('ERR_PATH_FORBIDDEN')
  })

  it('invalid arguments → in-band validation error, audited as validation.failed', async () => {
    const since = server.mark()
    const res = await post(server.url, modernCall('read_file', { path: 42, extra: true }), { ...ADMIN(), ...modernHeaders('tools/call', 'read_file') })
    const result = (await res.json()) as { result: { isError: boolean; _meta: Record<string, { code: string }> } }
    expect(result.result.isError).toBe(true)
    expect(result.result._meta['bastion/error']?.code).toBe('ERR_VALIDATION')
    expect(since()).toEqual([expect.objectContaining({ event: 'validation.failed', reason: 'ERR_VALIDATION' })])
  })

  it('an unknown tool is not-found, not forbidden', async () => {
    const res = await post(server.url, modernCall('drop_database', {}), { ...ADMIN(), ...modernHeaders('tools/call', 'drop_database') })
    const body = (await res.json()) as { error: { code: number; data: { code: string } } }
    expect(body.error.data.code).toBe('ERR_TOOL_NOT_FOUND')
  })
})
