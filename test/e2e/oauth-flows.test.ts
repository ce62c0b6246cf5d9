import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as HttpTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import * as oauth from 'oauth4webapi'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { callModern, connect, startServer, type TestServer } from '../helpers/server.js'

// The whole authorization code flow with a maintained OAuth client (oauth4webapi: it checks the
// issuer of the metadata, `iss` on the redirect (RFC 9207), state, PKCE and the token response)
// for each kind of client bastion knows: a Client ID Metadata Document served on loopback, a client
// registered through RFC 7591, and a configured confidential client. The browser's part (sign-in
// and consent pages) is played by fetch with the flow cookie, as a browser would post the forms.
// Each access token then calls a tool through the real MCP clients of both protocol eras.

const SECRET_ENV = 'BASTION_TEST_OAUTH_FLOWS_SECRET'
const SECRET = randomBytes(32).toString('base64url')
const CONFIDENTIAL = 'ops-console'
const REDIRECT = 'http://127.0.0.1/callback'
// A loopback redirect matches any port (RFC 8252 §7.3): the client's listener is never reached here.
const CALLBACK = 'http://127.0.0.1:48213/callback'
const SCOPE = 'mcp:tools'
const insecure = { [oauth.allowInsecureRequests]: true } as const

let server: TestServer
let mcpUrl: string
let issuer: string
let cimdUrl: string
const cimdFetches: string[] = []
let cimd: Server

beforeAll(async () => {
  cimd = createServer((req, res) => {
    cimdFetches.push(req.url ?? '')
    if (req.url !== '/client.json') return void res.writeHead(404).end()
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        client_id: cimdUrl,
        client_name: 'Loopback CIMD app',
        redirect_uris: [REDIRECT],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      }),
    )
  })
  await new Promise<void>((resolve) => cimd.listen(0, '127.0.0.1', resolve))
  cimdUrl = `http://127.0.0.1:${(cimd.address() as AddressInfo).port}/client.json`
  process.env[SECRET_ENV] = SECRET
  server = await startServer(
    {
      auth: {
        scopes: { supported: [SCOPE] },
        bruteForce: { slowAfter: 1000, blockAfter: 1000 },
        clients: {
          dangerouslyAllowLoopbackMetadata: true,
          registered: [{ clientId: CONFIDENTIAL, name: 'Ops console', redirectUris: [REDIRECT], secret: { env: SECRET_ENV } }],
        },
      },
      limits: { anonymous: { rate: '100000/min' } },
    },
    (b) =>
      b.tool({
        name: 'whoami',
        description: 'who the caller is, as the pipeline saw it',
        input: z.strictObject({}),
        scopes: [SCOPE],
        run: async (_args, ctx) => ({ content: [{ type: 'text', text: JSON.stringify({ id: ctx.principal.id, name: ctx.principal.name, roles: ctx.principal.roles }) }] }),
      }),
  )
  mcpUrl = server.url
  issuer = new URL(server.url).origin
})
afterAll(async () => {
  await server?.close()
  await new Promise((resolve) => cimd?.close(resolve))
  delete process.env[SECRET_ENV]
})

/** Discovery as an MCP client does it: the resource's metadata (RFC 9728) names the issuer, whose metadata (RFC 8414) is checked. */
async function discover(): Promise<oauth.AuthorizationServer> {
  const resource = await oauth.processResourceDiscoveryResponse(new URL(mcpUrl), await oauth.resourceDiscoveryRequest(new URL(mcpUrl), insecure))
  expect(resource.authorization_servers).toStrictEqual([issuer])
  const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { algorithm: 'oauth2', ...insecure }))
  expect(as).toMatchObject({
    authorization_endpoint: `${issuer}/oauth/authorize`,
    code_challenge_methods_supported: ['S256'],
    authorization_response_iss_parameter_supported: true,
  })
  return as
}

const hiddenFlow = (page: string, form: string): string => {
  const flow = new RegExp(`<form id="${form}"[^>]*><input type="hidden" name="flow" value="([^"]+)">`).exec(page)?.[1]
  if (flow === undefined) throw new Error(`no form#${form} in the page:\n${page.slice(0, 2000)}`)
  return flow
}

/**
 * The browser: open the authorization URL, sign in with the API key, allow (unless consent is
 * remembered), and return where the final 303 points. The flow cookie goes with every post.
 */
async function browse(authorizationUrl: URL, apiKey: string): Promise<{ location: URL; consent: 'given' | 'remembered' }> {
  const opened = await fetch(authorizationUrl, { redirect: 'manual' })
  expect(opened.status).toBe(200)
  const cookie = opened.headers.getSetCookie()[0]?.split(';')[0] ?? ''
  expect(cookie).toMatch(/^bastion_flow_[0-9a-f]{16}=/)
  const post = (body: Record<string, string>) =>
    fetch(`${issuer}/oauth/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: issuer },
      body: new URLSearchParams(body),
    })
  const signedIn = await post({ flow: hiddenFlow(await opened.text(), 'signin'), action: 'key', api_key: apiKey })
  if (signedIn.status === 303) return { location: new URL(signedIn.headers.get('location') ?? ''), consent: 'remembered' }
  expect(signedIn.status).toBe(200)
  const allowed = await post({ flow: hiddenFlow(await signedIn.text(), 'consent'), action: 'allow' })
  expect(allowed.status).toBe(303)
  return { location: new URL(allowed.headers.get('location') ?? ''), consent: 'given' }
}

/** One authorization code flow, start to tokens, as oauth4webapi runs it. */
async function codeFlow(as: oauth.AuthorizationServer, client: oauth.Client, auth: oauth.ClientAuth, apiKey: string) {
  const verifier = oauth.generateRandomCodeVerifier()
  const state = oauth.generateRandomState()
  const url = new URL(as.authorization_endpoint ?? '')
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: CALLBACK,
    scope: SCOPE,
    state,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    resource: mcpUrl,
  }).toString()
  const { location, consent } = await browse(url, apiKey)
  expect(location.origin + location.pathname).toBe(CALLBACK)
  // Checks state and `iss` (RFC 9207): a response from another server or for another request throws.
  const params = oauth.validateAuthResponse(as, client, location, state)
  const response = await oauth.authorizationCodeGrantRequest(as, client, auth, params, CALLBACK, verifier, { additionalParameters: { resource: mcpUrl }, ...insecure })
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response)
  expect(tokens).toMatchObject({ token_type: 'bearer', scope: SCOPE, expires_in: 900 })
  expect(tokens.refresh_token).toMatch(/^bstr_/)
  return { tokens, consent, state }
}

/** whoami through the SDK v2 client (2026-07-28) and the SDK v1 client over Streamable HTTP (2025-11-25). */
async function whoamiBothEras(accessToken: string): Promise<{ modern: unknown; legacy: unknown }> {
  const headers = { authorization: `Bearer ${accessToken}` }
  const v2 = await connect(mcpUrl, 'modern', headers)
  const modern = await v2.callTool({ name: 'whoami', arguments: {} })
  await v2.close()
  const v1 = new ClientV1({ name: 'bastion-test-v1', version: '1.0.0' })
  await v1.connect(new HttpTransportV1(new URL(mcpUrl), { requestInit: { headers } }))
  expect(v1.getServerVersion()).toBeDefined()
  const legacy = await v1.callTool({ name: 'whoami', arguments: {} })
  await v1.close()
  const text = (r: unknown) => JSON.parse(((r as { content: { text: string }[] }).content[0]?.text ?? 'null') as string) as unknown
  expect((modern as { isError?: boolean }).isError ?? false).toBe(false)
  expect((legacy as { isError?: boolean }).isError ?? false).toBe(false)
  return { modern: text(modern), legacy: text(legacy) }
}

async function refresh(as: oauth.AuthorizationServer, client: oauth.Client, auth: oauth.ClientAuth, token: string): Promise<oauth.TokenEndpointResponse> {
  return oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, auth, token, insecure))
}

async function refused(as: oauth.AuthorizationServer, client: oauth.Client, auth: oauth.ClientAuth, token: string): Promise<{ status: number; error: string }> {
  try {
    await refresh(as, client, auth, token)
  } catch (error) {
    if (error instanceof oauth.ResponseBodyError) return { status: error.status, error: error.error }
    throw error
  }
  throw new Error('the refresh was accepted')
}

interface Kind {
  readonly name: string
  /** The client as oauth4webapi knows it, and how it authenticates at the token endpoint. */
  client(as: oauth.AuthorizationServer): Promise<{ client: oauth.Client; auth: oauth.ClientAuth }>
}

const KINDS: readonly Kind[] = [
  {
    name: 'a Client ID Metadata Document client (served on loopback)',
    async client() {
      return { client: { client_id: cimdUrl, token_endpoint_auth_method: 'none' }, auth: oauth.None() }
    },
  },
  {
    name: 'a client registered with RFC 7591',
    async client(as) {
      const registered = await oauth.processDynamicClientRegistrationResponse(
        await oauth.dynamicClientRegistrationRequest(as, { redirect_uris: [REDIRECT], client_name: 'DCR app', token_endpoint_auth_method: 'none' }, insecure),
      )
      expect(registered.client_id).toMatch(/^dcr_/)
      expect(registered).not.toHaveProperty('client_secret')
      return { client: { client_id: registered.client_id, token_endpoint_auth_method: 'none' }, auth: oauth.None() }
    },
  },
  {
    name: 'a configured confidential client (client_secret_basic)',
    async client() {
      return { client: { client_id: CONFIDENTIAL, token_endpoint_auth_method: 'client_secret_basic' }, auth: oauth.ClientSecretBasic(SECRET) }
    },
  },
]

describe('authorization code flow with oauth4webapi, to the MCP clients of both eras', () => {
  it.each(KINDS)('$name: code → tool call in both eras; refresh rotates, reuse revokes the family; revoking the key ends it all', async (kind) => {
    const as = await discover()
    const { client, auth } = await kind.client(as)
    // A key of its own per client: revoking it at the end touches no other case.
    const { key: apiKey, stored } = server.bastion.keys.create({ name: `alice-${randomBytes(3).toString('hex')}`, roles: ['admin'], expiresAt: null })
    const keyId = stored.id
    const since = server.mark()

    // 1. The flow; the access token is the user's, for this client.
    const first = await codeFlow(as, client, auth, apiKey)
    expect(first.consent).toBe('given')
    const who = { id: `key:${keyId}`, roles: ['admin'] }
    const eras = await whoamiBothEras(first.tokens.access_token)
    expect(eras.modern).toMatchObject(who)
    expect(eras.legacy).toMatchObject(who)

    // 2. The audit: each page step and the token, with the client and where the code went.
    const lines = since()
    const host = new URL(CALLBACK).host
    for (const event of ['oauth.authorize', 'oauth.signin', 'oauth.authorized'])
      expect(
        lines.find((l) => l.event === event),
        `${event} in ${JSON.stringify(lines)}`,
      ).toMatchObject({ decision: 'allow', client: client.client_id, redirectHost: host })
    expect(lines.find((l) => l.event === 'oauth.authorized')).toMatchObject({ principal: `key:${keyId}`, consent: 'given', via: 'api-key' })
    expect(lines.find((l) => l.event === 'token.issued')).toMatchObject({ decision: 'allow', client: client.client_id, grant: 'authorization_code', principal: `key:${keyId}` })
    expect(lines.filter((l) => l.tool === 'whoami')).toHaveLength(2)
    if (client.client_id === cimdUrl) {
      // bastion fetched the document from the loopback fixture itself (dangerouslyAllowLoopbackMetadata), and audited it.
      expect(cimdFetches).toStrictEqual(['/client.json'])
      expect(lines.find((l) => l.event === 'oauth.client_fetched')).toMatchObject({ principal: `client:${cimdUrl}`, decision: 'allow' })
    }

    // 3. Rotation: every refresh gives a new refresh token; the superseded one presented after its
    // successor was used is a reuse (not a retry): invalid_grant, and the whole family is gone.
    const second = await refresh(as, client, auth, first.tokens.refresh_token ?? '')
    expect(second.refresh_token).not.toBe(first.tokens.refresh_token)
    expect((await whoamiBothEras(second.access_token)).modern).toMatchObject(who)
    const third = await refresh(as, client, auth, second.refresh_token ?? '')
    expect(third.refresh_token).not.toBe(second.refresh_token)
    const reuseMark = server.mark()
    expect(await refused(as, client, auth, first.tokens.refresh_token ?? '')).toStrictEqual({ status: 400, error: 'invalid_grant' })
    expect(reuseMark().find((l) => l.event === 'alert')).toMatchObject({ alert: 'token.refresh_reused', decision: 'deny', principal: `client:${client.client_id}` })
    expect(await refused(as, client, auth, third.refresh_token ?? '')).toStrictEqual({ status: 400, error: 'invalid_grant' })

    // 4. A new flow (consent remembered: straight back with a code), then the key is revoked:
    // its access token is refused at once and its refresh token no longer works.
    const again = await codeFlow(as, client, auth, apiKey)
    expect(again.consent).toBe('remembered')
    expect((await whoamiBothEras(again.tokens.access_token)).legacy).toMatchObject(who)
    expect(server.bastion.keys.revoke(keyId)).toBe(true)
    const revokedMark = server.mark()
    const after = await callModern(mcpUrl, again.tokens.access_token, 'whoami', {})
    expect(after.res.status).toBe(401)
    expect(after.body.error).toMatchObject({ data: { code: 'ERR_AUTH_REVOKED' } })
    const body = JSON.stringify(after.body)
    expect(body).not.toContain(keyId)
    expect(body).not.toContain(again.tokens.access_token)
    expect(revokedMark()).toMatchObject([{ event: 'auth.failure', status: 401, decision: 'deny', reason: 'ERR_AUTH_REVOKED', detail: expect.stringContaining(keyId) }])
    const refreshMark = server.mark()
    expect(await refused(as, client, auth, again.tokens.refresh_token ?? '')).toStrictEqual({ status: 400, error: 'invalid_grant' })
    expect(refreshMark()).toMatchObject([
      {
        event: 'token.denied',
        decision: 'deny',
        reason: 'ERR_AUTH_REVOKED',
        client: client.client_id,
        oauthError: 'invalid_grant',
        detail: expect.stringContaining('no longer in force'),
      },
    ])

    // Nothing secret reached the audit log.
    const audit = JSON.stringify(server.audit())
    for (const secret of [apiKey, SECRET, first.tokens.access_token, first.tokens.refresh_token ?? '', again.tokens.refresh_token ?? '']) expect(audit).not.toContain(secret)
  })
})
