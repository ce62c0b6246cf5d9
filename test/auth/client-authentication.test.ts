import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import * as oauth from 'oauth4webapi'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { flowField } from '../helpers/oauth-flow.js'
import { callModern, startServer, type TestServer } from '../helpers/server.js'

// private_key_jwt (RFC 7523 §2.2) for a client identified by its metadata document, as ChatGPT's
// connectors authenticate: the assertion's audience is the token endpoint, its keys are in the
// document. And registration (RFC 7591) behind an initial access token.

const REDIRECT = 'http://127.0.0.1/callback'
const IAT_ENV = 'BASTION_TEST_INITIAL_ACCESS_TOKEN'
const IAT = randomBytes(24).toString('base64url')
const insecure = { [oauth.allowInsecureRequests]: true } as const

let server: TestServer
let origin: string
let documentUrl: string
let fixture: Server
let keys: Awaited<ReturnType<typeof generateKeyPair>>
let otherKeys: Awaited<ReturnType<typeof generateKeyPair>>

beforeAll(async () => {
  keys = await generateKeyPair('ES256')
  otherKeys = await generateKeyPair('ES256')
  const publicJwk = { ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
  fixture = createServer((req, res) => {
    if (req.url !== '/client.json') return void res.writeHead(404).end()
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(
        JSON.stringify({ client_id: documentUrl, client_name: 'Connector', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [publicJwk] } }),
      )
  })
  await new Promise<void>((resolve) => fixture.listen(0, '127.0.0.1', resolve))
  documentUrl = `http://127.0.0.1:${(fixture.address() as AddressInfo).port}/client.json`
  process.env[IAT_ENV] = IAT
  server = await startServer({
    auth: {
      bruteForce: { slowAfter: 1000, blockAfter: 1000 },
      clients: { dangerouslyAllowLoopbackMetadata: true, registration: { mode: 'loopback', initialAccessToken: { env: IAT_ENV } } },
    },
    limits: { anonymous: { rate: '100000/min' } },
  })
  origin = new URL(server.url).origin
})

afterAll(async () => {
  await server?.close()
  await new Promise((resolve) => fixture?.close(resolve))
  delete process.env[IAT_ENV]
})

/** Authorize `clientId` by fetch (sign in with the admin key, allow) and return the code and its verifier. */
async function authorize(clientId: string): Promise<{ code: string; verifier: string }> {
  const verifier = oauth.generateRandomCodeVerifier()
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT,
    state: 's',
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    resource: server.url,
  })
  const opened = await fetch(`${origin}/oauth/authorize?${query}`)
  expect(opened.status).toBe(200)
  const cookie = (opened.headers.get('set-cookie') ?? '').split(';')[0] ?? ''
  const post = (body: Record<string, string>) =>
    fetch(`${origin}/oauth/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin },
      body: new URLSearchParams(body),
    })
  const consent = await post({ flow: flowField(await opened.text()), action: 'key', api_key: server.keys.admin })
  const back = consent.status === 303 ? consent : await post({ flow: flowField(await consent.text()), action: 'allow' })
  const code = new URL(back.headers.get('location') ?? '').searchParams.get('code')
  if (code === null) throw new Error(`no code: ${back.status}`)
  return { code, verifier }
}

/** A client assertion signed with `key`, by hand, for the refusal rows. */
const assertion = (claims: Record<string, unknown>, key = keys.privateKey) =>
  new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(documentUrl)
    .setSubject(documentUrl)
    .setIssuedAt()
    .setExpirationTime('2m')
    .setJti(randomBytes(8).toString('hex'))
    .sign(key)

async function tokenWith(fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${origin}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields) })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

describe('private_key_jwt with the keys of a Client ID Metadata Document', () => {
  it('oauth4webapi redeems the code with a signed assertion; the token calls a tool', async () => {
    const as = await oauth.processDiscoveryResponse(new URL(origin), await oauth.discoveryRequest(new URL(origin), { algorithm: 'oauth2', ...insecure }))
    expect(as.token_endpoint_auth_methods_supported).toContain('private_key_jwt')
    const { code, verifier } = await authorize(documentUrl)
    const callback = new URL(`${REDIRECT}?code=${encodeURIComponent(code)}&state=s&iss=${encodeURIComponent(origin)}`)
    const client: oauth.Client = { client_id: documentUrl }
    const params = oauth.validateAuthResponse(as, client, callback, 's')
    const since = server.mark()
    const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.PrivateKeyJwt({ key: keys.privateKey, kid: 'k1' }), params, REDIRECT, verifier, insecure)
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, response)
    expect(tokens.token_type.toLowerCase()).toBe('bearer')
    expect(since().find((l) => l.event === 'token.issued')).toMatchObject({ client: documentUrl, grant: 'authorization_code', decision: 'allow' })
    const call = await callModern(server.url, tokens.access_token, 'read_file', { path: 'notes/none.txt' })
    expect(call.res.status).toBe(200)
  })

  const ROWS = [
    { name: 'no assertion at all (a public client_id only)', fields: async () => ({ client_id: documentUrl }), detail: /private_key_jwt/ },
    {
      name: 'signed with a key not in the document',
      fields: async () => ({ client_assertion: await assertion({ aud: `${origin}/oauth/token` }, otherKeys.privateKey) }),
      detail: /client_assertion/,
    },
    { name: 'audience of another server', fields: async () => ({ client_assertion: await assertion({ aud: 'https://elsewhere.example/oauth/token' }) }), detail: /aud/ },
    {
      name: 'a secret besides the assertion',
      fields: async () => ({ client_assertion: await assertion({ aud: `${origin}/oauth/token` }), client_secret: 'x' }),
      status: 400,
      detail: /two client authentication methods/,
    },
  ]

  it.each(ROWS)('$name → invalid_client, no token', async ({ fields, status, detail }) => {
    const { code, verifier } = await authorize(documentUrl)
    const since = server.mark()
    const extra = await fields()
    const type = 'client_assertion' in extra ? { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' } : {}
    const r = await tokenWith({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: REDIRECT, ...type, ...extra })
    expect(r.status).toBe(status ?? 401)
    expect(r.body).not.toHaveProperty('access_token')
    const line = since().find((l) => l.event === 'token.denied')
    expect(line).toMatchObject({ decision: 'deny' })
    expect(String(line?.detail)).toMatch(detail)
  })

  it('an assertion presented twice (its jti seen) is refused the second time', async () => {
    const first = await authorize(documentUrl)
    const second = await authorize(documentUrl)
    const once = await assertion({ aud: `${origin}/oauth/token` })
    const type = { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: once }
    const ok = await tokenWith({ grant_type: 'authorization_code', code: first.code, code_verifier: first.verifier, redirect_uri: REDIRECT, ...type })
    expect(ok.status).toBe(200)
    const replay = await tokenWith({ grant_type: 'authorization_code', code: second.code, code_verifier: second.verifier, redirect_uri: REDIRECT, ...type })
    expect(replay).toStrictEqual({ status: 401, body: { error: 'invalid_client' } })
  })
})

describe('registration behind an initial access token (RFC 7591 §3)', () => {
  const register = (authorization?: string) =>
    fetch(`${origin}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
      body: JSON.stringify({ redirect_uris: [REDIRECT], client_name: 'native', token_endpoint_auth_method: 'none' }),
    })

  it.each([
    { name: 'no token', authorization: undefined },
    { name: 'a wrong token', authorization: `Bearer ${randomBytes(24).toString('base64url')}` },
    { name: 'the token with one character changed', authorization: `Bearer ${IAT.slice(0, -1)}${IAT.endsWith('A') ? 'B' : 'A'}` },
  ])('$name → 401, nothing registered', async ({ authorization }) => {
    const since = server.mark()
    const res = await register(authorization)
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'invalid_token' })
    expect(since().filter((l) => l.event === 'oauth.register')).toHaveLength(1)
    expect(since().some((l) => l.event === 'oauth.registered')).toBe(false)
  })

  it('with the token → 201 and a public client id; a confidential registration gets its secret once, stored hashed', async () => {
    const res = await register(`Bearer ${IAT}`)
    expect(res.status).toBe(201)
    expect(await res.json()).toMatchObject({ client_id: expect.stringMatching(/^dcr_/), token_endpoint_auth_method: 'none' })
    const confidential = await fetch(`${origin}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${IAT}` },
      body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: 'client_secret_basic' }),
    })
    const body = (await confidential.json()) as { client_id: string; client_secret: string }
    expect(body.client_secret).toMatch(/^bscs_/)
    const { readFileSync } = await import('node:fs')
    const stored = readFileSync(`${server.dir}/.bastion/authorization.json`, 'utf8')
    expect(stored).not.toContain(body.client_secret)
    expect(stored).toContain(createHash('sha256').update(body.client_secret).digest('hex'))
  })
})
