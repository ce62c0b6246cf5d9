import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import fc from 'fast-check'
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { JwtVerifier } from '../../src/auth/jwt.js'
import { bearerChallenge, type ResourceServer } from '../../src/auth/resource-metadata.js'
import { SecurityError } from '../../src/errors.js'
import { callModern, initializeBody, post, startServer, type TestServer } from '../helpers/server.js'

const RESOURCE = 'https://mcp.test/mcp'
const PRM = 'https://mcp.test/.well-known/oauth-protected-resource/mcp'
const RS_SECRET = 'claims-rs-secret-0123456789abcdef0123'
// Every string-valued attack carries this marker: it must reach neither the client nor the audit line.
const MARK = 'zebra'

const { privateKey, publicKey } = await generateKeyPair('ES256')
const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'claims-es256', alg: 'ES256', use: 'sig' }

const now = (): number => Math.floor(Date.now() / 1000)
let issuer = ''
const claims = (over: Record<string, unknown>): Record<string, unknown> => ({
  iss: issuer,
  aud: RESOURCE,
  sub: 'alice',
  scope: 'mcp:tools',
  realm_access: { roles: ['admin'] },
  iat: now(),
  exp: now() + 300,
  ...over,
})
// The payload as given: jose's setters would refuse a non-string sub, an attacker's signer does not.
const sign = (over: Record<string, unknown>): Promise<string> => new SignJWT(claims(over)).setProtectedHeader({ alg: 'ES256', kid: jwk.kid ?? '' }).sign(privateKey)

/** RFC 7662 answers by token; anything else is inactive. */
const answers = new Map<string, Record<string, unknown>>()
const active = (over: Record<string, unknown>): Record<string, unknown> => ({
  active: true,
  sub: 'svc',
  aud: RESOURCE,
  exp: now() + 300,
  scope: 'mcp:tools',
  roles: ['admin'],
  ...over,
})

let idp: Server
let server: TestServer
beforeAll(async () => {
  // The identity provider: its JWKS and an introspection endpoint for the `rs` client, on loopback.
  idp = createServer((req, res) => {
    let form = ''
    req.on('data', (chunk: Buffer) => {
      form += chunk.toString('utf8')
    })
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      if (req.method === 'GET' && req.url === '/jwks') return res.end(JSON.stringify({ keys: [jwk] }))
      const basic = `Basic ${Buffer.from(`rs:${RS_SECRET}`).toString('base64')}`
      if (req.method !== 'POST' || req.url !== '/introspect' || req.headers.authorization !== basic) return res.writeHead(401).end('{}')
      res.end(JSON.stringify(answers.get(new URLSearchParams(form).get('token') ?? '') ?? { active: false }))
    })
  })
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve))
  issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`
  process.env.BASTION_TEST_CLAIMS_RS_SECRET = RS_SECRET
  server = await startServer({
    auth: {
      resource: RESOURCE,
      scopes: { supported: ['mcp:tools', 'mcp:read'] },
      issuers: [{ name: 'idp', issuer, algorithms: ['ES256'], jwksUri: `${issuer}/jwks`, claims: { roles: 'realm_access.roles', tenant: 'org' } }],
      introspection: [
        {
          endpoint: `${issuer}/introspect`,
          clientId: 'rs',
          clientSecret: { env: 'BASTION_TEST_CLAIMS_RS_SECRET' },
          timeoutMs: 1000,
          cacheSeconds: 1,
          claims: { roles: 'roles', tenant: 'org' },
        },
      ],
      bruteForce: { slowAfter: 1000, blockAfter: 1000 },
    },
    limits: { anonymous: { rate: '100000/min' } },
    tools: { read_file: { permissions: ['files:read'], scopes: ['mcp:tools'] } },
  })
})
afterAll(async () => {
  await server.close()
  await new Promise<void>((resolve) => idp.close(() => resolve()))
})

/** One refused call: 401 invalid_token, ERR_AUTH_INVALID, one audit line naming the cause, nothing leaked. */
async function expectRefused(token: string, why: RegExp): Promise<void> {
  const since = server.mark()
  const { res, body } = await callModern(server.url, token, 'read_file', { path: 'README.md' })
  expect(res.status).toBe(401)
  expect(res.headers.get('www-authenticate')).toBe(
    `Bearer error="invalid_token", error_description="the API key or token was not accepted (wrong, expired or revoked)", resource_metadata="${PRM}", scope="mcp:tools mcp:read"`,
  )
  expect(body.error).toMatchObject({ message: 'invalid credentials', data: { code: 'ERR_AUTH_INVALID' } })
  expect(JSON.stringify(body)).not.toMatch(new RegExp(`${MARK}|claim|sub|scope`))
  const lines = since()
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatchObject({ event: 'auth.failure', decision: 'deny', reason: 'ERR_AUTH_INVALID' })
  expect(lines[0]?.principal).toBeUndefined()
  expect(String(lines[0]?.detail)).toMatch(why)
  expect(JSON.stringify(lines)).not.toContain(MARK)
  expect(JSON.stringify(lines)).not.toContain(token)
}

const roles = (value: unknown): Record<string, unknown> => ({ realm_access: { roles: value } })

const JWT_ATTACKS: { name: string; over: Record<string, unknown>; why: RegExp }[] = [
  { name: 'sub as a number', over: { sub: 42 }, why: /claim sub is a number, not a string/ },
  { name: 'sub as an array ["alice"] (the same principal as "alice")', over: { sub: ['alice'] }, why: /claim sub is an array/ },
  { name: 'sub as an object', over: { sub: { id: MARK } }, why: /claim sub is an object/ },
  { name: 'sub as a boolean', over: { sub: true }, why: /claim sub is a boolean/ },
  { name: 'sub empty', over: { sub: '' }, why: /claim sub is empty/ },
  { name: 'sub null', over: { sub: null }, why: /claim sub is null/ },
  { name: 'sub of 10k characters (over the token size cap first)', over: { sub: MARK.repeat(2000) }, why: /over 8192/ },
  { name: 'sub of 256 characters', over: { sub: `${MARK}${'x'.repeat(251)}` }, why: /claim sub is 256 characters, over 255/ },
  { name: 'sub with NUL', over: { sub: `${MARK}\u0000admin` }, why: /claim sub holds a control/ },
  { name: 'sub with CR', over: { sub: `${MARK}\r` }, why: /claim sub holds a control/ },
  { name: 'sub with LF (log line injection)', over: { sub: `${MARK}\n{"decision":"allow"}` }, why: /claim sub holds a control/ },
  { name: 'sub with a bidi override (display spoofing)', over: { sub: `${MARK}\u202enimda` }, why: /claim sub holds a control, format/ },
  { name: 'sub with a lone surrogate (U+FFFD once stored)', over: { sub: `${MARK}\ud800` }, why: /lone surrogate/ },
  { name: 'scope with NUL', over: { scope: `mcp:tools ${MARK}\u0000` }, why: /claim scope holds a character outside/ },
  { name: 'scope with CR', over: { scope: `mcp:tools${MARK}\r` }, why: /claim scope holds a character outside/ },
  { name: 'scope with LF (header splitting)', over: { scope: `mcp:tools\nset-cookie: ${MARK}` }, why: /claim scope holds a character outside/ },
  { name: 'scope with U+0001 (was: audit 403, client bare 500)', over: { scope: `mcp:tools ${MARK}\u0001` }, why: /claim scope holds a character outside/ },
  { name: 'scope with U+0101 ā (above U+00FF: no header can carry it)', over: { scope: `mcp:tools ${MARK}ā` }, why: /claim scope holds a character outside/ },
  { name: 'scope with a quote (breaks out of the challenge)', over: { scope: `mcp:tools ${MARK}", error="x` }, why: /claim scope holds a character outside/ },
  { name: 'scope with a backslash', over: { scope: `mcp:tools ${MARK}\\` }, why: /claim scope holds a character outside/ },
  { name: 'scope with a tab', over: { scope: `mcp:tools\t${MARK}` }, why: /claim scope holds a character outside/ },
  { name: 'scope as a number', over: { scope: 7 }, why: /claim scope is a number, not a string/ },
  { name: 'scope as an array', over: { scope: ['mcp:tools'] }, why: /claim scope is an array, not a string/ },
  { name: 'scp with a non-string element', over: { scp: ['mcp:tools', 7] }, why: /claim scp\[1\] is a number/ },
  { name: 'scp with an element that is two scopes', over: { scp: [`mcp:tools ${MARK}`] }, why: /claim scp\[0\] is not an RFC 6749 §3.3 scope-token/ },
  { name: 'scp as an object', over: { scp: { 'mcp:tools': true } }, why: /claim scp is an object/ },
  { name: 'roles with a number', over: roles(['admin', 1]), why: /claim realm_access\.roles \(roles\)\[1\] is a number/ },
  { name: 'roles with null', over: roles([null]), why: /\(roles\)\[0\] is null/ },
  { name: 'roles with an object', over: roles([{ name: 'admin' }]), why: /\(roles\)\[0\] is an object/ },
  { name: 'roles as an object', over: roles({ admin: true }), why: /claim realm_access\.roles \(roles\) is an object, not an array of strings/ },
  { name: 'roles with LF', over: roles([`admin\n${MARK}`]), why: /\(roles\)\[0\] holds a control/ },
  { name: 'tenant as an object', over: { org: { id: MARK } }, why: /claim org \(tenant\) is an object/ },
  { name: 'tenant as a number', over: { org: 42 }, why: /claim org \(tenant\) is a number/ },
  { name: 'tenant empty (no tenant, no tenant limits)', over: { org: '' }, why: /claim org \(tenant\) is empty/ },
  { name: 'tenant with NUL', over: { org: `acme\u0000${MARK}` }, why: /claim org \(tenant\) holds a control/ },
  { name: 'client_id as a number', over: { client_id: 5 }, why: /claim client_id is a number/ },
  { name: 'jti as an object (revocation lookup)', over: { jti: { $ne: MARK } }, why: /claim jti is an object/ },
  { name: 'aud with a non-string member beside the right one', over: { aud: [RESOURCE, 5] }, why: /claim aud\[1\] is a number/ },
]

const JWT_ACCEPTED: { name: string; over: Record<string, unknown>; principal: string; scopes: string[] }[] = [
  { name: 'normal scopes', over: { scope: 'mcp:tools mcp:read' }, principal: 'idp:alice', scopes: ['mcp:tools', 'mcp:read'] },
  { name: 'sub a URI', over: { sub: 'https://idp.test/users/alice' }, principal: 'idp:https://idp.test/users/alice', scopes: ['mcp:tools'] },
  { name: 'sub a URN', over: { sub: 'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66' }, principal: 'idp:urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66', scopes: ['mcp:tools'] },
  { name: 'sub with letters beyond ASCII and a space', over: { sub: 'Zoë Ångström' }, principal: 'idp:Zoë Ångström', scopes: ['mcp:tools'] },
  { name: 'sub of 255 characters', over: { sub: 's'.repeat(255) }, principal: `idp:${'s'.repeat(255)}`, scopes: ['mcp:tools'] },
  { name: 'scope with repeated spaces', over: { scope: ' mcp:tools  mcp:read ' }, principal: 'idp:alice', scopes: ['mcp:tools', 'mcp:read'] },
  { name: 'scp as an array, no scope', over: { scope: undefined, scp: ['mcp:tools'] }, principal: 'idp:alice', scopes: ['mcp:tools'] },
  { name: 'scp as a string (Entra ID)', over: { scope: undefined, scp: 'mcp:tools mcp:read' }, principal: 'idp:alice', scopes: ['mcp:tools', 'mcp:read'] },
  {
    name: 'roles as a space-separated string, a tenant, client_id and jti',
    over: { ...roles('reader admin'), org: 'acme', client_id: 'svc', jti: 'j-1' },
    principal: 'idp:alice',
    scopes: ['mcp:tools'],
  },
  { name: 'aud an array naming this resource', over: { aud: ['https://other.test', RESOURCE] }, principal: 'idp:alice', scopes: ['mcp:tools'] },
]

describe('JWT claims are checked by type before they make a principal', () => {
  it.each(JWT_ATTACKS)('$name → 401 ERR_AUTH_INVALID', async ({ over, why }) => {
    await expectRefused(await sign(over), why)
  })

  it.each(JWT_ACCEPTED)('accepted: $name', async ({ over, principal, scopes }) => {
    const since = server.mark()
    const { res } = await callModern(server.url, await sign(over), 'read_file', { path: 'README.md' })
    expect(res.status).toBe(200)
    expect(since().at(-1)).toMatchObject({ decision: 'allow', principal, scopes })
  })

  it('a token with sub ["alice"] cannot use the session of sub "alice"', async () => {
    const init = await post(server.url, initializeBody(), { authorization: `Bearer ${await sign({})}` })
    const session = init.headers.get('mcp-session-id') ?? ''
    expect(session).not.toBe('')
    const list = { jsonrpc: '2.0', id: 2, method: 'tools/list' }
    const headers = (token: string) => ({ authorization: `Bearer ${token}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' })
    // Control: another token for "alice" is the same principal, so the session is hers to use.
    expect((await post(server.url, list, headers(await sign({ jti: 'second' })))).status).toBe(200)
    const since = server.mark()
    expect((await post(server.url, list, headers(await sign({ sub: ['alice'] })))).status).toBe(401)
    expect(since()).toEqual([expect.objectContaining({ event: 'auth.failure', reason: 'ERR_AUTH_INVALID', detail: expect.stringMatching(/claim sub is an array/) })])
  })
})

const INTROSPECTION_ATTACKS: { name: string; answer: Record<string, unknown>; why: RegExp }[] = [
  { name: 'sub as a number', answer: active({ sub: 42 }), why: /introspection: claim sub is a number/ },
  { name: 'sub as an array', answer: active({ sub: ['svc'] }), why: /introspection: claim sub is an array/ },
  { name: 'sub with LF', answer: active({ sub: `svc\n${MARK}` }), why: /introspection: claim sub holds a control/ },
  { name: 'client_id as an object, no sub', answer: active({ sub: undefined, client_id: { id: MARK } }), why: /introspection: claim client_id is an object/ },
  { name: 'scope with CR LF', answer: active({ scope: `mcp:tools\r\n${MARK}` }), why: /introspection: claim scope holds a character outside/ },
  { name: 'scope with U+0001', answer: active({ scope: `mcp:tools ${MARK}\u0001` }), why: /introspection: claim scope holds a character outside/ },
  { name: 'scope as an array', answer: active({ scope: ['mcp:tools'] }), why: /introspection: claim scope is an array/ },
  { name: 'roles with a non-string', answer: active({ roles: ['admin', false] }), why: /introspection: claim roles \(roles\)\[1\] is a boolean/ },
  { name: 'tenant as an object', answer: active({ org: { id: MARK } }), why: /introspection: claim org \(tenant\) is an object/ },
  { name: 'aud with a non-string member', answer: active({ aud: [RESOURCE, null] }), why: /introspection: claim aud\[1\] is null/ },
]

describe('introspection answers (RFC 7662 §2.2) are checked by type', () => {
  it.each(INTROSPECTION_ATTACKS)('$name → 401 ERR_AUTH_INVALID', async ({ name, answer, why }) => {
    const token = `opaque-${name.replaceAll(/\W/g, '-')}`
    answers.set(token, answer)
    await expectRefused(token, why)
  })

  it('accepted: sub, or client_id when there is no sub', async () => {
    answers.set('opaque-good-sub', active({ scope: 'mcp:tools mcp:read', org: 'acme' }))
    answers.set('opaque-good-client', active({ sub: undefined, client_id: 'svc-client' }))
    for (const [token, principal] of [
      ['opaque-good-sub', 'opaque:svc'],
      ['opaque-good-client', 'opaque:svc-client'],
    ] as const) {
      const since = server.mark()
      expect((await callModern(server.url, token, 'read_file', { path: 'README.md' })).res.status).toBe(200)
      expect(since().at(-1)).toMatchObject({ decision: 'allow', principal })
    }
  })
})

/** Characters that break headers, quoted-strings or scope-tokens, among ordinary ones and any code unit. */
const scopeChar = fc.oneof(
  fc.constantFrom('\u0000', '\r', '\n', '\t', '\u0001', '\u007f', '\u0085', '"', '\\', 'ā', '\u00ff', '\u2028', '\ud800', '😀', ' ', ','),
  fc.constantFrom('mcp:tools', 'read', 'a', '!', '~', '#', '='),
  fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)),
)
const RS: ResourceServer = { resource: () => RESOURCE, authorizationServers: () => [], scopesSupported: [], implies: new Map() }
const headerAccepts = (value: string): boolean => new Headers({ 'www-authenticate': value }).get('www-authenticate') === value

describe('the challenge is always a valid header', () => {
  it('property: any scope claim is refused ERR_AUTH_INVALID, or its scopes make a valid challenge', async () => {
    const verifier = new JwtVerifier([
      {
        name: 'idp',
        issuer: 'https://idp.test',
        audience: () => [RESOURCE],
        algorithms: ['ES256'],
        keys: { jwks: { keys: [jwk] } },
        requireTyp: false,
        clockSkewSeconds: 60,
        maxLifetimeSeconds: 3600,
        claims: { roles: 'roles' },
        defaultRoles: [],
      },
    ])
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: scopeChar, maxLength: 12 }), async (scope) => {
        const token = await new SignJWT({ ...claims({ scope }), iss: 'https://idp.test' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey)
        let scopes: readonly string[]
        try {
          scopes = (await verifier.verify(token)).principal.scopes ?? []
        } catch (error) {
          expect(error).toBeInstanceOf(SecurityError)
          expect((error as SecurityError).code).toBe('ERR_AUTH_INVALID')
          return
        }
        const challenge = bearerChallenge(RS, 'insufficient_scope', [...scopes, 'mcp:tools'])
        expect(headerAccepts(challenge)).toBe(true)
        // Accepted scopes are scope-tokens: none is dropped from the challenge.
        expect(challenge).toContain(`scope="${[...scopes, 'mcp:tools'].join(' ')}"`)
      }),
      { numRuns: 300 },
    )
  })

  it('property: any scopes (configured or registered, unchecked) give a valid header that keeps every scope-token', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: scopeChar, maxLength: 6 }), { maxLength: 5 }), fc.constantFrom('invalid_token', 'insufficient_scope', undefined), (scopes, error) => {
        const challenge = bearerChallenge(RS, error, scopes)
        expect(headerAccepts(challenge)).toBe(true)
        const kept = scopes.filter((s) => /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s))
        if (kept.length > 0) expect(challenge).toMatch(new RegExp(`, scope="${kept.join(' ').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"$`))
        else expect(challenge).not.toContain('scope=')
      }),
      { numRuns: 500 },
    )
  })

  it('an unknown or unusable resource leaves resource_metadata out; building never throws', () => {
    const broken = (resource: () => string): ResourceServer => ({ ...RS, resource })
    expect(
      bearerChallenge(
        broken(() => ''),
        undefined,
        [],
      ),
    ).toBe('Bearer realm="mcp-bastion"')
    expect(
      bearerChallenge(
        broken(() => 'not a url'),
        'invalid_token',
        ['mcp:tools'],
      ),
    ).toBe('Bearer error="invalid_token", error_description="the API key or token was not accepted (wrong, expired or revoked)", scope="mcp:tools"')
    const throwing = broken(() => {
      throw new Error('resource not known yet')
    })
    expect(bearerChallenge(throwing, 'invalid_token', ['bad scope"', 'mcp:read'])).toBe(
      'Bearer error="invalid_token", error_description="the API key or token was not accepted (wrong, expired or revoked)", scope="mcp:read"',
    )
    expect(
      bearerChallenge(
        broken(() => 'https://mcp.test/a"b\\c'),
        undefined,
        [],
      ),
    ).toBe('Bearer resource_metadata="https://mcp.test/.well-known/oauth-protected-resource/a%22b/c"')
  })
})
