import { createHmac, sign as cryptoSign, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { exportJWK, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { callModern, JSON_HEADERS, modernCall, modernHeaders, startServer, type TestServer } from '../helpers/server.js'

const RESOURCE = 'https://mcp.test/mcp'
const ISSUER = 'https://idp.test'
const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()
const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString()

const now = (): number => Math.floor(Date.now() / 1000)
const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: ISSUER,
  aud: RESOURCE,
  sub: 'alice',
  roles: ['admin'],
  scope: 'mcp:tools',
  iat: now(),
  exp: now() + 300,
  ...over,
})

async function sign(key: KeyObject, alg: 'RS256' | 'ES256', payload: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const { exp, iat, ...rest } = payload
  let jwt = new SignJWT(rest).setProtectedHeader({ alg, ...header })
  if (typeof iat === 'number') jwt = jwt.setIssuedAt(iat)
  if (typeof exp === 'number') jwt = jwt.setExpirationTime(exp)
  return jwt.sign(key)
}

/** An ES256 token signed with the trusted key, header as given (jose refuses to sign unknown crit). */
function rawEs256(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${cryptoSign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}

/** HS256 over header.payload with arbitrary key bytes: the algorithm-confusion forgery. */
function hs256(secret: string | Buffer, payload: Record<string, unknown>): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

let server: TestServer
let fetched = 0
let lure: Server
let lureUrl = ''
beforeAll(async () => {
  // A loopback listener that a jku/x5u header points at: it must never be contacted.
  lure = createServer((_req, res) => {
    fetched += 1
    res.end('{"keys":[]}')
  })
  await new Promise<void>((r) => lure.listen(0, '127.0.0.1', r))
  lureUrl = `http://127.0.0.1:${(lure.address() as AddressInfo).port}/jwks`
  server = await startServer(
    {
      auth: {
        resource: RESOURCE,
        scopes: { supported: ['mcp:tools'] },
        issuers: [{ name: 'idp', issuer: ISSUER, algorithms: ['RS256', 'ES256'], keys: [{ pem: { file: 'rsa.pem' } }, { pem: { file: 'ec.pem' } }], maxLifetimeSeconds: 3600 }],
        bruteForce: { slowAfter: 1000, blockAfter: 1000 },
      },
      limits: { anonymous: { rate: '100000/min' } },
    },
    undefined,
    (dir) => {
      writeFileSync(join(dir, 'rsa.pem'), rsaPem)
      writeFileSync(join(dir, 'ec.pem'), ecPem)
    },
  )
})
afterAll(async () => {
  await server.close()
  await new Promise<void>((r) => lure.close(() => r()))
})

describe('JWT attacks', () => {
  it('control: a well-formed RS256 and ES256 token pass', async () => {
    for (const token of [await sign(rsa.privateKey, 'RS256', claims()), await sign(ec.privateKey, 'ES256', claims())]) {
      expect((await callModern(server.url, token, 'read_file', { path: 'README.md' })).res.status).toBe(200)
    }
  })

  const ATTACKS: { name: string; token: () => Promise<string>; code?: string; why?: RegExp }[] = [
    ...['none', 'None', 'NONE', 'nOnE'].map((alg) => ({ name: `alg ${alg}`, token: async () => `${b64({ alg, typ: 'JWT' })}.${b64(claims())}.` })),
    { name: 'HS256 signed with the RSA public key (algorithm confusion)', token: async () => hs256(rsaPem, claims()) },
    { name: 'HS256 signed with the EC public key (algorithm confusion)', token: async () => hs256(ecPem, claims()) },
    { name: 'signature stripped', token: async () => (await sign(rsa.privateKey, 'RS256', claims())).replace(/\.[^.]+$/, '.') },
    { name: 'signature truncated', token: async () => (await sign(rsa.privateKey, 'RS256', claims())).slice(0, -10) },
    { name: 'ES256 signature of all zero bytes (CVE-2022-21449)', token: async () => `${b64({ alg: 'ES256' })}.${b64(claims())}.${Buffer.alloc(64).toString('base64url')}` },
    { name: 'expired', token: () => sign(ec.privateKey, 'ES256', claims({ iat: now() - 600, exp: now() - 120 })), code: 'ERR_AUTH_EXPIRED' },
    { name: 'nbf in the future', token: () => sign(ec.privateKey, 'ES256', claims({ nbf: now() + 600 })) },
    { name: 'iat in the future', token: () => sign(ec.privateKey, 'ES256', claims({ iat: now() + 600, exp: now() + 900 })), why: /iat is in the future/ },
    { name: 'lifetime beyond the maximum', token: () => sign(ec.privateKey, 'ES256', claims({ exp: now() + 7200 })), why: /over the maximum 3600/ },
    { name: 'missing exp', token: () => sign(ec.privateKey, 'ES256', claims({ exp: undefined })) },
    { name: 'wrong iss', token: () => sign(ec.privateKey, 'ES256', claims({ iss: 'https://evil.test' })) },
    { name: 'wrong aud', token: () => sign(ec.privateKey, 'ES256', claims({ aud: 'someone-else' })) },
    { name: 'audience of another resource', token: () => sign(ec.privateKey, 'ES256', claims({ aud: 'https://other.test/mcp' })) },
    { name: 'kid with path traversal', token: () => sign(attacker.privateKey, 'ES256', claims(), { kid: '../../../../etc/passwd' }) },
    { name: 'kid with SQL', token: () => sign(attacker.privateKey, 'ES256', claims(), { kid: "' OR '1'='1' --" }) },
    { name: 'kid with a shell command', token: () => sign(attacker.privateKey, 'ES256', claims(), { kid: '$(touch /tmp/bastion-pwned)' }) },
    { name: 'embedded jwk of the signer', token: async () => sign(attacker.privateKey, 'ES256', claims(), { jwk: await exportJWK(attacker.publicKey) }) },
    { name: 'jku pointing at a loopback listener', token: () => sign(attacker.privateKey, 'ES256', claims(), { jku: lureUrl, kid: 'lure' }) },
    { name: 'x5u pointing at a loopback listener', token: () => sign(attacker.privateKey, 'ES256', claims(), { x5u: lureUrl }) },
    {
      name: 'unknown crit header',
      token: async () => rawEs256({ alg: 'ES256', crit: ['x-bastion-unknown'], 'x-bastion-unknown': true }, claims()),
      why: /Extension Header Parameter/,
    },
    { name: 'oversized token', token: () => sign(ec.privateKey, 'ES256', claims({ pad: 'x'.repeat(9000) })) },
  ]

  it.each(ATTACKS)('$name → 401 invalid_token, one audit line, nothing leaked', async ({ token, code, why }) => {
    const jwt = await token()
    const since = server.mark()
    const { res, body } = await callModern(server.url, jwt, 'read_file', { path: 'README.md' })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toMatch(
      /^Bearer error="invalid_token", error_description="the API key or token was not accepted \(wrong, expired or revoked\)", resource_metadata="https:\/\/mcp\.test\/\.well-known\/oauth-protected-resource\/mcp"/,
    )
    expect(body.error).toMatchObject({ message: 'invalid credentials', data: { code: code ?? 'ERR_AUTH_INVALID' } })
    const text = JSON.stringify(body)
    expect(text).not.toMatch(/jose|JWS|JWT|signature|kid|audience|issuer|claim/i)
    const lines = since()
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ event: 'auth.failure', decision: 'deny', reason: code ?? 'ERR_AUTH_INVALID' })
    expect(lines[0]?.principal).toBeUndefined()
    if (why !== undefined) expect(String(lines[0]?.detail)).toMatch(why)
    const signature = jwt.split('.')[2] ?? ''
    if (signature.length > 0) expect(JSON.stringify(lines)).not.toContain(signature)
    expect(JSON.stringify(lines)).not.toContain(jwt.split('.')[1] ?? 'never')
    expect(fetched).toBe(0)
  })

  it('a token in the query string is refused before it is read', async () => {
    const token = await sign(ec.privateKey, 'ES256', claims())
    const since = server.mark()
    const res = await fetch(`${server.url}?access_token=${token}`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'read_file') },
      body: JSON.stringify(modernCall('read_file', { path: 'README.md' })),
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: { data: { code: string } } }).error.data.code).toBe('ERR_TOKEN_IN_QUERY')
    expect(since()).toHaveLength(1)
    expect(JSON.stringify(since())).not.toContain(token)
  })

  it('no request ever reached the jku/x5u listener', () => {
    expect(fetched).toBe(0)
  })
})
