import { generateKeyPairSync } from 'node:crypto'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IDP_SECRETS, startIdp, type TestIdp } from '../helpers/oidc.js'
import { callModern, connect, startServer, type TestServer } from '../helpers/server.js'

const RESOURCE = 'https://mcp.test/mcp'
const PRM = 'https://mcp.test/.well-known/oauth-protected-resource/mcp'

let idp: TestIdp
let server: TestServer
beforeAll(async () => {
  idp = await startIdp(RESOURCE)
  process.env.BASTION_TEST_RS_SECRET = IDP_SECRETS.rs
  server = await startServer({
    auth: {
      resource: RESOURCE,
      scopes: { supported: ['mcp:tools', 'mcp:read', 'mcp:admin'], implies: { 'mcp:admin': ['mcp:tools', 'mcp:read'] } },
      issuers: [{ name: 'idp', issuer: idp.issuer, algorithms: ['ES256'], jwksUri: `${idp.issuer}/jwks`, jwksCooldownSeconds: 1, jwksTimeoutMs: 500 }],
      introspection: [{ endpoint: `${idp.issuer}/token/introspection`, clientId: 'rs', clientSecret: { env: 'BASTION_TEST_RS_SECRET' }, timeoutMs: 500, cacheSeconds: 1 }],
      bruteForce: { slowAfter: 1000, blockAfter: 1000 },
    },
    limits: { anonymous: { rate: '100000/min' } },
    tools: { read_file: { permissions: ['files:read'], scopes: ['mcp:tools'] }, list_files: { permissions: ['files:read'], scopes: ['mcp:read'] } },
  })
})
afterAll(async () => {
  await server.close()
  await idp.stop().catch(() => undefined)
})

describe('OAuth 2.1 resource server (MCP authorization spec)', () => {
  it('serves Protected Resource Metadata at the well-known path and the MCP-path-suffixed one (RFC 9728)', async () => {
    const origin = new URL(server.url).origin
    for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
      const res = await fetch(`${origin}${path}`)
      expect(res.status).toBe(200)
      expect(await res.json()).toStrictEqual({
        resource: RESOURCE,
        // The trusted issuer first, then bastion's own authorization server (on by default).
        authorization_servers: [idp.issuer, new URL(RESOURCE).origin],
        scopes_supported: ['mcp:tools', 'mcp:read', 'mcp:admin'],
        bearer_methods_supported: ['header'],
        resource_name: 'mcp-bastion',
      })
    }
  })

  it('401 without a token names the metadata and the scopes; a bad token adds invalid_token', async () => {
    const res = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${PRM}", scope="mcp:tools mcp:read mcp:admin"`)
    const bad = await callModern(server.url, 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.AAAA', 'read_file', { path: 'README.md' })
    expect(bad.res.status).toBe(401)
    expect(bad.res.headers.get('www-authenticate')).toBe(
      `Bearer error="invalid_token", error_description="the API key or token was not accepted (wrong, expired or revoked)", resource_metadata="${PRM}", scope="mcp:tools mcp:read mcp:admin"`,
    )
  })

  it.each(['modern', 'legacy'] as const)('the real MCP client (%s) calls tools with an IdP-issued JWT; roles come from its claims', async (era) => {
    const token = await idp.token('svc', 'mcp:tools mcp:read')
    const since = server.mark()
    const client = await connect(server.url, era, { authorization: `Bearer ${token}` })
    expect((await client.listTools()).tools.map((t) => t.name)).toStrictEqual([
      'delete_records',
      'get_secret',
      'list_files',
      'query',
      'read_file',
      'run_query',
      'store_secret',
      'write_file',
    ])
    const result = await client.callTool({ name: 'read_file', arguments: { path: 'README.md' } })
    expect(result.isError ?? false).toBe(false)
    await client.close()
    const call = since().find((l) => l.tool === 'read_file')
    expect(call).toMatchObject({ principal: 'idp:svc', roles: ['admin'], scopes: ['mcp:tools', 'mcp:read'], decision: 'allow' })
    expect(JSON.stringify(since())).not.toContain(token)
  })

  it('403 insufficient_scope names every scope needed; a broader scope implies the narrower ones', async () => {
    const readonly = await idp.token('svc-readonly', 'mcp:read')
    const since = server.mark()
    const { res, body } = await callModern(server.url, readonly, 'read_file', { path: 'README.md' })
    expect(res.status).toBe(403)
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer error="insufficient_scope", error_description="the token lacks a scope this needs", resource_metadata="${PRM}", scope="mcp:read mcp:tools"`,
    )
    expect(body.error).toMatchObject({ data: { code: 'ERR_INSUFFICIENT_SCOPE' } })
    expect(since().at(-1)).toMatchObject({ event: 'authz.denied', reason: 'ERR_INSUFFICIENT_SCOPE', principal: 'idp:svc-readonly' })
    expect((await callModern(server.url, readonly, 'list_files', {})).res.status).toBe(200)
    const admin = await idp.token('svc', 'mcp:admin')
    expect((await callModern(server.url, admin, 'read_file', { path: 'README.md' })).res.status).toBe(200)
    expect((await callModern(server.url, admin, 'list_files', {})).res.status).toBe(200)
  })

  it('a token for another resource is refused (audience binding, RFC 8707)', async () => {
    const other = await idp.token('svc', 'mcp:tools', 'https://other.test/mcp')
    const since = server.mark()
    const { res } = await callModern(server.url, other, 'read_file', { path: 'README.md' })
    expect(res.status).toBe(401)
    expect(String(since().at(-1)?.detail)).toMatch(/aud/)
  })

  it('opaque tokens are introspected (RFC 7662) with client authentication', async () => {
    const opaque = await idp.token('svc-opaque', 'mcp:tools')
    const since = server.mark()
    expect((await callModern(server.url, opaque, 'read_file', { path: 'README.md' })).res.status).toBe(200)
    expect(since().at(-1)).toMatchObject({ principal: 'opaque:svc-opaque', decision: 'allow' })
    expect((await callModern(server.url, 'not-a-real-token-at-all', 'read_file', { path: 'README.md' })).res.status).toBe(401)
  })

  it('repeat calls use the verified-token cache', async () => {
    const token = await idp.token('svc', 'mcp:tools')
    const before = server.bastion.auth.cache.size
    await callModern(server.url, token, 'read_file', { path: 'README.md' })
    expect(server.bastion.auth.cache.size).toBe(before + 1)
    await callModern(server.url, token, 'read_file', { path: 'README.md' })
    expect(server.bastion.auth.cache.size).toBe(before + 1)
  })

  it('IdP down: cached keys keep working, an unknown kid and new opaque tokens fail closed (503), and it recovers', async () => {
    const known = await idp.token('svc', 'mcp:tools')
    const opaque = await idp.token('svc-opaque', 'mcp:tools')
    // The IdP's keys reach the cache while it is up (whatever ran before this test).
    expect((await callModern(server.url, known, 'read_file', { path: 'README.md' })).res.status).toBe(200)
    await idp.stop()
    try {
      expect((await callModern(server.url, known, 'read_file', { path: 'README.md' })).res.status).toBe(200)
      // A token signed by a key the IdP never published, claiming a new kid: a refetch is tried and fails.
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      const forged = await new SignJWT({ scope: 'mcp:tools', roles: ['admin'] })
        .setProtectedHeader({ alg: 'ES256', kid: 'rotated-key', typ: 'at+jwt' })
        .setIssuer(idp.issuer)
        .setSubject('svc')
        .setAudience(RESOURCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey)
      await new Promise((r) => setTimeout(r, 1100)) // past the refetch cooldown
      const since = server.mark()
      const unknownKid = await callModern(server.url, forged, 'read_file', { path: 'README.md' })
      expect(unknownKid.res.status).toBe(503)
      expect(unknownKid.body.error).toMatchObject({ data: { code: 'ERR_AUTH_UNAVAILABLE' } })
      expect(since().at(-1)).toMatchObject({ event: 'auth.failure', decision: 'error', reason: 'ERR_AUTH_UNAVAILABLE' })
      const introspected = await callModern(server.url, opaque, 'read_file', { path: 'README.md' })
      expect(introspected.res.status).toBe(503)
      expect(String(since().at(-1)?.detail)).toMatch(/introspection at http:\/\/127\.0\.0\.1:\d+ failed/)
    } finally {
      await idp.start()
    }
    expect((await callModern(server.url, opaque, 'read_file', { path: 'README.md' })).res.status).toBe(200)
  })
})
