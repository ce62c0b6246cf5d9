import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BruteForce } from '../../src/auth/brute-force.js'
import { type BastionConfigInput, createBastion } from '../../src/index.js'
import { BIN } from '../helpers/processes.js'
import { callModern, connect, JSON_HEADERS, modernCall, modernHeaders, startServer, type TestServer } from '../helpers/server.js'

const RESOURCE = 'https://mcp.test/mcp'
const CONFIG: BastionConfigInput = {
  auth: { resource: RESOURCE, scopes: { supported: ['mcp:tools', 'mcp:read'] }, tokenService: { enabled: true }, bruteForce: { slowAfter: 1000, blockAfter: 1000 } },
  limits: { anonymous: { rate: '100000/min' } },
}

let server: TestServer
let origin: string
beforeAll(async () => {
  server = await startServer(CONFIG)
  origin = new URL(server.url).origin
})
afterAll(async () => {
  await server.close()
})

const basic = (key: string): string => `Basic ${Buffer.from(`${key.slice(4, 20)}:${key}`).toString('base64')}`

async function tokenRequest(body: Record<string, string>, key = server.keys.admin, base = origin): Promise<{ status: number; json: Record<string, string>; headers: Headers }> {
  const res = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: { authorization: basic(key), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(body).toString(),
  })
  return { status: res.status, json: (await res.json()) as Record<string, string>, headers: res.headers }
}

describe('token service', () => {
  it('reads no more than 16 KiB of a form from a client not yet authenticated: 413, declared or streamed; a form of that size still works', async () => {
    const big = { grant_type: 'client_credentials', pad: 'x'.repeat(17 * 1024) }
    const declared = await tokenRequest(big)
    expect(declared.status).toBe(413)
    expect(declared.json.error).toBe('invalid_request')
    // Streamed without a length: cut once it passes the cap.
    const chunk = new TextEncoder().encode(new URLSearchParams(big).toString())
    const streamed = await fetch(`${origin}/oauth/token`, {
      method: 'POST',
      headers: { authorization: basic(server.keys.admin), 'content-type': 'application/x-www-form-urlencoded' },
      body: new ReadableStream({
        start(c) {
          c.enqueue(chunk)
          c.close()
        },
      }),
      duplex: 'half',
    } as RequestInit)
    expect(streamed.status).toBe(413)
    expect((await tokenRequest({ grant_type: 'client_credentials', pad: 'x'.repeat(15 * 1024) })).status).toBe(200)
  })

  it('publishes authorization server metadata (RFC 8414) and its JWKS', async () => {
    const meta = (await (await fetch(`${origin}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>
    expect(meta).toMatchObject({
      issuer: 'https://mcp.test',
      token_endpoint: 'https://mcp.test/oauth/token',
      revocation_endpoint: 'https://mcp.test/oauth/revoke',
      jwks_uri: 'https://mcp.test/.well-known/jwks.json',
      authorization_endpoint: 'https://mcp.test/oauth/authorize',
      registration_endpoint: 'https://mcp.test/oauth/register',
      grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token'],
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      client_id_metadata_document_supported: true,
      authorization_response_iss_parameter_supported: true,
    })
    // OAuth 2.1 and the MCP authorization spec: no implicit grant, no plain PKCE, no password grant.
    expect(meta.code_challenge_methods_supported).toStrictEqual(['S256'])
    expect(meta.grant_types_supported).not.toContain('implicit')
    expect(meta.grant_types_supported).not.toContain('password')
    const jwks = (await (await fetch(`${origin}/.well-known/jwks.json`)).json()) as { keys: Record<string, unknown>[] }
    expect(jwks.keys).toHaveLength(1)
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
    expect(jwks.keys[0]).not.toHaveProperty('d')
    const prm = (await (await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>
    expect(prm.authorization_servers).toStrictEqual(['https://mcp.test'])
  })

  it('client credentials → a 15-minute JWT the real client can use; refresh rotates; reuse revokes the family', async () => {
    const since = server.mark()
    const first = await tokenRequest({ grant_type: 'client_credentials', scope: 'mcp:tools' })
    expect(first.status).toBe(200)
    expect(first.headers.get('cache-control')).toBe('no-store')
    expect(first.json).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'mcp:tools' })
    const claims = decodeJwt(first.json.access_token ?? '')
    expect(decodeProtectedHeader(first.json.access_token ?? '')).toMatchObject({ alg: 'ES256', typ: 'at+jwt' })
    expect(claims).toMatchObject({ iss: 'https://mcp.test', aud: RESOURCE, sub: server.keys.admin.slice(4, 20), roles: ['admin'], scope: 'mcp:tools' })
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(900)

    const client = await connect(server.url, 'modern', { authorization: `Bearer ${first.json.access_token}` })
    expect((await client.callTool({ name: 'read_file', arguments: { path: 'README.md' } })).isError ?? false).toBe(false)
    await client.close()
    expect(since().find((l) => l.tool === 'read_file')).toMatchObject({ principal: `key:${server.keys.admin.slice(4, 20)}`, decision: 'allow' })

    const second = await tokenRequest({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token ?? '' })
    expect(second.status).toBe(200)
    expect(second.json.refresh_token).not.toBe(first.json.refresh_token)
    const third = await tokenRequest({ grant_type: 'refresh_token', refresh_token: second.json.refresh_token ?? '' })
    expect(third.status).toBe(200)
    // The first token again, its successor already used: not a retry (test/faults/refresh-stall.test.ts), a reuse.
    const reuse = await tokenRequest({ grant_type: 'refresh_token', refresh_token: first.json.refresh_token ?? '' })
    expect(reuse.status).toBe(400)
    expect(reuse.json).toStrictEqual({ error: 'invalid_grant' })
    expect(since().find((l) => l.event === 'alert')).toMatchObject({ alert: 'token.refresh_reused', decision: 'deny' })
    // The whole family is gone, including the token issued by the legitimate rotation, and every
    // access token issued with it (they carry the family), not only until they expire.
    expect((await tokenRequest({ grant_type: 'refresh_token', refresh_token: third.json.refresh_token ?? '' })).status).toBe(400)
    expect(decodeJwt(third.json.access_token ?? '').fam).toBe(decodeJwt(first.json.access_token ?? '').fam)
    const latest = await fetch(server.url, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'read_file'), authorization: `Bearer ${third.json.access_token}` },
      body: JSON.stringify(modernCall('read_file', { path: 'README.md' })),
    })
    expect(latest.status).toBe(401)
    expect(since().at(-1)).toMatchObject({ decision: 'deny', reason: 'ERR_AUTH_REVOKED' })
    const stored = readFileSync(join(server.dir, '.bastion', 'refresh-tokens.json'), 'utf8')
    for (const t of [first, second, third]) expect(stored).not.toContain(t.json.refresh_token ?? 'never')
    expect(JSON.stringify(server.audit())).not.toContain(first.json.access_token ?? 'never')
  })

  it('refuses bad clients, unknown grants and scopes with RFC 6749 errors', async () => {
    const wrong = await fetch(`${origin}/oauth/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${server.keys.admin.slice(4, 20)}:${server.keys.reader}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials',
    })
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toBe('Basic realm="mcp-bastion"')
    expect(await wrong.json()).toStrictEqual({ error: 'invalid_client' })
    expect((await tokenRequest({ grant_type: 'password' })).json).toStrictEqual({ error: 'unsupported_grant_type' })
    expect((await tokenRequest({ grant_type: 'client_credentials', scope: 'mcp:everything' })).json).toStrictEqual({ error: 'invalid_scope' })
    expect((await tokenRequest({ grant_type: 'refresh_token', refresh_token: 'bstr_nope' })).json).toStrictEqual({ error: 'invalid_grant' })
  })

  it('a narrower scope on refresh narrows the access token, not the new refresh token (RFC 6749 §6)', async () => {
    const { json } = await tokenRequest({ grant_type: 'client_credentials' })
    const narrow = await tokenRequest({ grant_type: 'refresh_token', refresh_token: json.refresh_token ?? '', scope: 'mcp:read' })
    expect(narrow.json.scope).toBe('mcp:read')
    expect(decodeJwt(narrow.json.access_token ?? '').scope).toBe('mcp:read')
    const full = await tokenRequest({ grant_type: 'refresh_token', refresh_token: narrow.json.refresh_token ?? '' })
    expect(full.json.scope).toBe('mcp:tools mcp:read')
  })

  it('revoking an access token (RFC 7009) stops it at once, even though it was cached', async () => {
    const { json } = await tokenRequest({ grant_type: 'client_credentials' })
    const token = json.access_token ?? ''
    expect((await callModern(server.url, token, 'read_file', { path: 'README.md' })).res.status).toBe(200)
    const revoked = await fetch(`${origin}/oauth/revoke`, {
      method: 'POST',
      headers: { authorization: basic(server.keys.admin), 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${token}`,
    })
    expect(revoked.status).toBe(200)
    const after = await callModern(server.url, token, 'read_file', { path: 'README.md' })
    expect(after.res.status).toBe(401)
    expect(after.body.error).toMatchObject({ data: { code: 'ERR_AUTH_REVOKED' } })
  })

  it('a refresh token is revoked only by the client it was issued to (RFC 7009 §2.1)', async () => {
    const { json } = await tokenRequest({ grant_type: 'client_credentials' })
    const revoke = (key: string) =>
      fetch(`${origin}/oauth/revoke`, {
        method: 'POST',
        headers: { authorization: basic(key), 'content-type': 'application/x-www-form-urlencoded' },
        body: `token=${json.refresh_token ?? ''}`,
      })
    expect((await revoke(server.keys.reader)).status).toBe(200)
    const stillGood = await tokenRequest({ grant_type: 'refresh_token', refresh_token: json.refresh_token ?? '' })
    expect(stillGood.status).toBe(200)
    const next = stillGood.json.refresh_token ?? ''
    const own = await fetch(`${origin}/oauth/revoke`, {
      method: 'POST',
      headers: { authorization: basic(server.keys.admin), 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${next}`,
    })
    expect(own.status).toBe(200)
    expect((await tokenRequest({ grant_type: 'refresh_token', refresh_token: next })).json).toStrictEqual({ error: 'invalid_grant' })
  })

  it('refresh tokens survive a restart; signing keys rotate and old tokens keep verifying', async () => {
    // Its own server: the restart closes it, and the shared one must outlive this test in any order.
    const own = await startServer(CONFIG)
    const { json } = await tokenRequest({ grant_type: 'client_credentials' }, own.keys.admin, new URL(own.url).origin)
    const oldAccess = json.access_token ?? ''
    writeFileSync(join(own.dir, 'bastion.yaml'), `auth:\n  resource: ${RESOURCE}\n  tokenService: { enabled: true }\n`)
    const rotated = spawnSync(process.execPath, [BIN, 'keys', 'rotate-signing', '--config', 'bastion.yaml'], { cwd: own.dir, encoding: 'utf8' })
    expect(rotated.status).toBe(0)
    const kid = /signing key (\S+) now signs/.exec(rotated.stdout)?.[1]
    await own.close()
    const again = await createBastion({
      baseDir: own.dir,
      logger: pino({ level: 'silent' }),
      announce: false,
      config: { ...CONFIG, auth: { ...CONFIG.auth, reloadIntervalMs: 0 } },
    })
    const running = await again.listen({ host: '127.0.0.1', port: 0 })
    try {
      const base = new URL(running.url).origin
      const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: json.refresh_token ?? '' }, own.keys.admin, base)
      expect(refreshed.status).toBe(200)
      expect(decodeProtectedHeader(refreshed.json.access_token ?? '').kid).toBe(kid)
      expect((await callModern(running.url, refreshed.json.access_token ?? '', 'read_file', { path: 'README.md' })).res.status).toBe(200)
      expect((await callModern(running.url, oldAccess, 'read_file', { path: 'README.md' })).res.status).toBe(200)
      const jwks = (await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: unknown[] }
      expect(jwks.keys).toHaveLength(2)
    } finally {
      await again.close()
    }
  })
})

describe('brute-force protection', () => {
  let guarded: TestServer
  beforeAll(async () => {
    guarded = await startServer({
      auth: { bruteForce: { slowAfter: 2, delayMs: 150, maxDelayMs: 1000, blockAfter: 4, blockSeconds: 60 } },
      limits: { anonymous: { rate: '100000/min' } },
    })
  })
  afterAll(async () => {
    await guarded.close()
  })

  it('slows repeated failures from one address, then blocks it (even a valid key) with an alert', async () => {
    const bogus = `bst_${'0'.repeat(16)}_${'A'.repeat(43)}`
    const since = guarded.mark()
    const times: number[] = []
    for (let i = 0; i < 4; i++) {
      const started = Date.now()
      expect((await callModern(guarded.url, bogus, 'read_file', { path: 'README.md' })).res.status).toBe(401)
      times.push(Date.now() - started)
    }
    expect(times[2]).toBeGreaterThanOrEqual(140)
    const blocked = await callModern(guarded.url, guarded.keys.admin, 'read_file', { path: 'README.md' })
    expect(blocked.res.status).toBe(429)
    expect(blocked.body.error).toMatchObject({ message: 'too many failed authentications', data: { code: 'ERR_AUTH_BLOCKED' } })
    expect(Number(blocked.res.headers.get('retry-after'))).toBeGreaterThan(50)
    const lines = since()
    expect(lines.filter((l) => l.event === 'auth.failure').map((l) => l.delayedMs)).toStrictEqual([undefined, undefined, 150, 300])
    expect(lines.find((l) => l.event === 'alert')).toMatchObject({ alert: 'auth.blocked', subject: 'addr:127.0.0.1', failures: 4 })
    expect(lines.at(-1)).toMatchObject({ event: 'auth.blocked', reason: 'ERR_AUTH_BLOCKED' })
  })
})

describe('BruteForce (fake clock)', () => {
  it('counts per subject within the window, blocks, and forgets', () => {
    let t = 0
    const bf = new BruteForce({ windowSeconds: 10, slowAfter: 1, delayMs: 100, maxDelayMs: 250, blockAfter: 4, blockSeconds: 30 }, () => t)
    expect(bf.fail('key:a').delayMs).toBe(0)
    expect(bf.fail('key:a').delayMs).toBe(100)
    expect(bf.fail('key:a').delayMs).toBe(200)
    expect(bf.fail('key:b').delayMs).toBe(0)
    const fourth = bf.fail('key:a')
    expect(fourth.delayMs).toBe(250)
    expect(fourth.blockedUntil).toBe(30_000)
    expect(bf.blockedUntil('key:a')).toBe(30_000)
    expect(bf.blockedUntil('key:b')).toBeUndefined()
    t = 30_001
    expect(bf.blockedUntil('key:a')).toBeUndefined()
    t = 100_000
    // Old failures fell out of the window.
    expect(bf.fail('key:b').failures).toBe(1)
  })
})
