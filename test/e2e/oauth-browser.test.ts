import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ARTIFACTS, type CallbackServer, launchChromium, loopbackContext, startCallback } from '../helpers/browser-oidc.js'
import { LOGIN_ACCOUNTS, LOGIN_CLIENT, type LoginIdp, startLoginIdp } from '../helpers/oidc-login-provider.js'
import { connect, startServer, type TestServer } from '../helpers/server.js'

// The authorization endpoint's pages in a real browser (Debian's chromium through playwright-core):
// what a person sees and clicks, with the browser's own rules in force (CSP form-action on the
// redirects that answer a form, Origin on every POST, SameSite cookies across the provider's
// redirect). The OAuth client is a loopback listener (a native app, RFC 8252) that redeems its
// code with PKCE and calls a tool with the real MCP client; the upstream OpenID provider is a real
// oidc-provider with its development login pages.

let server: TestServer
let idp: LoginIdp
let browser: Browser
let callback: CallbackServer
let origin = ''

beforeAll(async () => {
  const secretDir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-oidc-login-')))
  const secretFile = join(secretDir, 'client-secret')
  writeFileSync(secretFile, LOGIN_CLIENT.clientSecret)
  ;[idp, browser, callback] = await Promise.all([startLoginIdp(), launchChromium(), startCallback()])
  server = await startServer({
    auth: {
      scopes: { supported: ['mcp:tools'] },
      login: {
        oidc: {
          issuer: idp.issuer,
          label: 'Sign in with Example SSO',
          clientId: LOGIN_CLIENT.clientId,
          clientSecret: { file: secretFile },
          scopes: ['openid', 'email', 'profile', 'roles'],
        },
      },
    },
  })
  origin = new URL(server.url).origin
  idp.serve(`${origin}/oauth/callback`)
})
afterAll(async () => {
  await browser?.close()
  await server?.close()
  await Promise.all([idp?.close(), callback?.close()])
})

/** A native client registered by DCR (RFC 7591) with the loopback callback, and its PKCE pair for one authorization. */
async function newClient(name: string): Promise<{ clientId: string; verifier: string; state: string; url: string }> {
  const res = await fetch(`${origin}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: name, redirect_uris: [callback.redirectUri], token_endpoint_auth_method: 'none' }),
  })
  expect(res.status).toBe(201)
  const { client_id: clientId } = (await res.json()) as { client_id: string }
  return { clientId, ...authorization(clientId) }
}

/** A fresh authorization request (state, PKCE S256, resource) for a client. */
function authorization(clientId: string): { verifier: string; state: string; url: string } {
  const verifier = randomBytes(32).toString('base64url')
  const state = randomBytes(12).toString('base64url')
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: callback.redirectUri,
    state,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    scope: 'mcp:tools',
    resource: server.url,
  })
  return { verifier, state, url: `${origin}/oauth/authorize?${query}` }
}

/** What the browser's console said (a CSP violation is reported there, and only there). */
const consoleLines: string[] = []

/** Wait for a page element; a failure says where the browser is, what it shows and what its console said. */
async function shows(page: Page, selector: string): Promise<void> {
  try {
    await page.waitForSelector(selector)
  } catch (error) {
    const text = await page
      .locator('body')
      .textContent()
      .catch(() => '(no page)')
    const said = consoleLines.slice(-3).join(' | ')
    throw new Error(`waiting for ${selector} at ${page.url()}: the page shows ${JSON.stringify((text ?? '').replace(/\s+/g, ' ').slice(0, 400))}; console: ${said}`, {
      cause: error,
    })
  }
}

/** Wait for the browser to land on the client's callback; the query it carried. */
async function landed(page: Page): Promise<URLSearchParams> {
  await shows(page, '#done')
  expect(page.url().startsWith(callback.redirectUri)).toBe(true)
  const url = new URL(page.url())
  expect(callback.hits.at(-1)?.toString()).toBe(url.searchParams.toString())
  return url.searchParams
}

/** The client redeems its code (PKCE, no secret) for an access token. */
async function redeem(clientId: string, code: string, verifier: string): Promise<string> {
  const res = await fetch(`${origin}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: callback.redirectUri, code_verifier: verifier, client_id: clientId, resource: server.url }),
  })
  const body = (await res.json()) as { access_token?: string; token_type?: string; error?: string }
  expect(res.status, JSON.stringify(body)).toBe(200)
  expect(body.token_type).toMatch(/^bearer$/i)
  return body.access_token ?? ''
}

/** The real MCP client calls read_file with the token; returns the audit line of that call. */
async function callTool(token: string): Promise<Record<string, unknown>> {
  const since = server.mark()
  const client = await connect(server.url, 'modern', { authorization: `Bearer ${token}` })
  const result = await client.callTool({ name: 'read_file', arguments: { path: 'notes/todo.txt' } })
  await client.close()
  expect(result.isError).not.toBe(true)
  expect(JSON.stringify(result.content)).toContain('try read_file')
  const line = since().find((l) => l.tool === 'read_file')
  expect(line).toBeDefined()
  return line ?? {}
}

/** Sign in at oidc-provider's development pages: login (any password), then its own consent. */
async function providerLogin(page: Page, login: string): Promise<void> {
  await page.waitForURL((u) => u.href.startsWith(`${idp.issuer}/interaction/`))
  await page.fill('input[name=login]', login)
  await page.fill('input[name=password]', 'any password')
  await page.click('button[type=submit]')
  await page.waitForURL((u) => u.href.startsWith(`${idp.issuer}/interaction/`))
  await expect.poll(() => page.locator('button[type=submit]').textContent()).toBe('Continue')
  await page.click('button[type=submit]')
}

describe('the sign-in and consent pages in a real browser', () => {
  let context: BrowserContext
  let page: Page | undefined
  beforeAll(async () => {
    context = await loopbackContext(browser)
  })
  afterAll(async () => {
    await context?.close()
  })
  /** A new tab with no cookies: a browser that has seen neither bastion nor the provider. */
  const fresh = async (): Promise<Page> => {
    await page?.close()
    await context.clearCookies()
    const opened = await context.newPage()
    opened.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text().slice(0, 300)}`))
    page = opened
    return opened
  }

  it('API key: sign in, consent, code to the loopback client, PKCE redemption, a tool call with the token', async () => {
    const { clientId, verifier, state, url } = await newClient('Browser Test Client')
    const p = await fresh()
    const opened = await p.goto(url)
    expect(opened?.status()).toBe(200)
    expect(await p.locator('h1').textContent()).toBe('Sign in to mcp-bastion')
    expect(await p.locator('main').textContent()).toContain('Browser Test Client')
    await p.screenshot({ path: join(ARTIFACTS, 'oauth-signin.png'), fullPage: true })

    await p.fill('#api_key', server.keys.admin)
    await p.click('#signin-key')
    await shows(p, '#consent')
    expect(await p.locator('h1').textContent()).toBe('Allow access?')
    expect(await p.locator('main').textContent()).toContain('Browser Test Client')
    expect(await p.locator('#redirect-host').textContent()).toBe(new URL(callback.redirectUri).host)
    expect(await p.locator('#local-warning').isVisible()).toBe(true)
    expect(await p.locator('#local-warning').textContent()).toContain('this computer')
    expect(await p.locator('#scopes li').allTextContents()).toStrictEqual(['mcp:tools'])
    expect(await p.locator('#roles li').allTextContents()).toStrictEqual(['admin'])
    await p.screenshot({ path: join(ARTIFACTS, 'oauth-consent.png'), fullPage: true })

    await p.click('#allow')
    const back = await landed(p)
    expect(back.get('state')).toBe(state)
    expect(back.get('iss')).toBe(origin)
    expect(back.get('error')).toBeNull()
    const code = back.get('code') ?? ''
    expect(code).not.toBe('')

    const line = await callTool(await redeem(clientId, code, verifier))
    // The token stands for the key that signed in: its id, its roles, the scopes consented to.
    expect(line).toMatchObject({ decision: 'allow', principal: expect.stringMatching(/^key:/), roles: ['admin'], scopes: ['mcp:tools'] })
  })

  it('OpenID provider: sign in there, consent at bastion, the token is user:sso:<sub> with the roles claim', async () => {
    const { clientId, verifier, state, url } = await newClient('SSO Test Client')
    const p = await fresh()
    await p.goto(url)
    expect(await p.locator('#signin-oidc').textContent()).toBe('Sign in with Example SSO')
    await p.click('#signin-oidc')
    await providerLogin(p, 'alice')

    await shows(p, '#consent')
    expect(new URL(p.url()).origin).toBe(origin)
    expect(await p.locator('main').textContent()).toContain(`act as ${LOGIN_ACCOUNTS.alice?.email}`)
    expect(await p.locator('#roles li').allTextContents()).toStrictEqual(['admin'])
    const since = server.mark()
    await p.click('#allow')
    const back = await landed(p)
    expect(back.get('state')).toBe(state)
    expect(back.get('iss')).toBe(origin)
    expect(since().find((l) => l.event === 'oauth.authorized')).toMatchObject({ principal: 'user:sso:alice', decision: 'allow' })

    const line = await callTool(await redeem(clientId, back.get('code') ?? '', verifier))
    // Roles from the provider's `roles` claim (no defaultRoles configured), scopes from the consent.
    expect(line).toMatchObject({ decision: 'allow', principal: 'user:sso:alice', roles: ['admin'], scopes: ['mcp:tools'] })
  })

  it('remembered consent, API key: the second sign-in goes straight back to the client, no consent page', async () => {
    const { clientId, url } = await newClient('Remembering Client')
    const p = await fresh()
    await p.goto(url)
    await p.fill('#api_key', server.keys.reader)
    await p.click('#signin-key')
    await p.click('#allow')
    await landed(p)

    const again = authorization(clientId)
    const q = await fresh()
    const since = server.mark()
    await q.goto(again.url)
    await q.fill('#api_key', server.keys.reader)
    await q.click('#signin-key')
    const back = await landed(q)
    expect(back.get('state')).toBe(again.state)
    expect(back.get('code')).not.toBeNull()
    const events = since().map((l) => l.event)
    expect(events).not.toContain('oauth.signin')
    expect(since().find((l) => l.event === 'oauth.authorized')).toMatchObject({ consent: 'remembered' })
    expect(await callTool(await redeem(clientId, back.get('code') ?? '', again.verifier))).toMatchObject({ principal: expect.stringMatching(/^key:/), roles: ['reader'] })
  })

  it('remembered consent, OpenID provider: signed in there already, the second authorization goes straight back', async () => {
    const { clientId, url } = await newClient('Remembering SSO Client')
    const p = await fresh()
    await p.goto(url)
    await p.click('#signin-oidc')
    await providerLogin(p, 'bob')
    await p.click('#allow')
    await landed(p)

    // Same browser profile: the provider's session stands, so neither it nor bastion asks again.
    const again = authorization(clientId)
    const since = server.mark()
    await p.goto(again.url)
    await p.click('#signin-oidc')
    const back = await landed(p)
    expect(back.get('state')).toBe(again.state)
    expect(back.get('code')).not.toBeNull()
    expect(since().map((l) => l.event)).not.toContain('oauth.signin')
    expect(since().find((l) => l.event === 'oauth.authorized')).toMatchObject({ consent: 'remembered', principal: 'user:sso:bob', roles: ['reader'] })
  })

  it('a flow carried to another browser profile is refused there: the page says so, nothing reaches the client', async () => {
    const { url } = await newClient('Carried Client')
    const victim = await fresh()
    await victim.goto(url)
    const sealed = (await victim.locator('input[name=flow]').getAttribute('value')) ?? ''
    expect(sealed).not.toBe('')
    const hits = callback.hits.length

    // Another profile (its own flow cookie) submits the first profile's sealed flow with a good key.
    const other = await loopbackContext(browser)
    try {
      const p = await other.newPage()
      await p.goto(url)
      await p.locator('input[name=flow]').evaluate((input, value) => input.setAttribute('value', value), sealed)
      await p.fill('#api_key', server.keys.admin)
      const since = server.mark()
      const [answer] = await Promise.all([p.waitForResponse((r) => r.request().method() === 'POST'), p.click('#signin-key')])
      expect(answer.status()).toBe(400)
      await shows(p, '#error')
      expect(await p.locator('#error').textContent()).toContain('started in another browser')
      expect(since().at(-1)).toMatchObject({ event: 'oauth.authorize', decision: 'deny', reason: 'ERR_INVALID_REQUEST' })
      expect(callback.hits.length).toBe(hits)
    } finally {
      await other.close()
    }
  })

  it('deny: access_denied back to the client, with state and iss, and no code', async () => {
    const { state, url } = await newClient('Denied Client')
    const p = await fresh()
    await p.goto(url)
    await p.fill('#api_key', server.keys.admin)
    await p.click('#signin-key')
    const since = server.mark()
    await p.click('#deny')
    const back = await landed(p)
    expect(back.get('error')).toBe('access_denied')
    expect(back.get('state')).toBe(state)
    expect(back.get('iss')).toBe(origin)
    expect(back.get('code')).toBeNull()
    expect(since().at(-1)).toMatchObject({ decision: 'deny', reason: 'ERR_FORBIDDEN' })
  })
})
