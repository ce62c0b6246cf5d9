import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client as ClientV2 } from '@modelcontextprotocol/client'
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio'
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as HttpTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, type TestBrowser } from '../helpers/browser.js'
import { type CallbackServer, callbackServer, landedAt, MemoryOAuthProvider, signInAndConsent, watchConsole } from '../helpers/oauth-browser.js'
import { freePort, serveProcess } from '../helpers/processes.js'
import { readmeBlock } from '../helpers/readme.js'
import { connect } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

// Real OAuth-capable MCP clients against a first-run `mcp-bastion serve`, with no API key given
// to them: each finds the authorization server from the 401, registers itself (DCR), and sends a
// person to the sign-in page, where headless Chromium signs in with the first-run admin key and
// allows. The clients then talk MCP with the token they got. A broken OAuth flow fails each test:
// nothing here is skipped, and a missing /usr/bin/chromium is a failure.

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const README_URL = 'http://127.0.0.1:8080/mcp'
const TODO = '- try read_file on notes/todo.txt\n- try list_files on data\n- try ../ and watch it be refused\n'
const TOOLS = ['delete_records', 'get_secret', 'list_files', 'query', 'read_file', 'run_query', 'store_secret', 'write_file']
const READ_TODO = { name: 'read_file', arguments: { path: 'notes/todo.txt' } }

let dir = ''
let url = ''
let origin = ''
let key = ''
let stopServer: () => Promise<void> = async () => {}
let browser: TestBrowser | undefined
let stopping = false
const cleanups: (() => Promise<void>)[] = []

beforeAll(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-oauth-clients-')))
  const [serving, launching] = await Promise.allSettled([serveProcess(dir, []), launchBrowser()])
  // Whichever started is stopped by afterAll even when the other failed (a server left running otherwise).
  if (serving.status === 'fulfilled') stopServer = serving.value.stop
  if (launching.status === 'fulfilled') browser = launching.value
  if (serving.status === 'rejected') throw serving.reason
  if (launching.status === 'rejected') throw launching.reason
  const started = serving.value
  // A server that stops before the tests end says so (every later failure is then this one).
  let serverErr = ''
  started.child.stderr?.on('data', (c: Buffer) => {
    serverErr += c.toString()
  })
  started.child.once('exit', (code, signal) => {
    if (!stopping) console.error(`the server exited early (${code ?? signal}):\n${serverErr}`)
  })
  stopServer = started.stop
  url = started.url
  origin = new URL(url).origin
  key = /(bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43})/.exec(started.stdout)?.[1] ?? ''
  expect(key, 'the first run prints an admin key').not.toBe('')
})
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
  await browser?.close()
  stopping = true
  await stopServer()
})

const newPage = () => {
  if (browser === undefined) throw new Error('no browser')
  return browser.newPage()
}
/** The admin key's principal, as the audit log names it. */
const adminPrincipal = () => `key:${key.split('_')[1]}`
const audit = (): Record<string, unknown>[] =>
  readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>)

/** The SDK v1 client's whole sign-in, once for the tests that use its token (tests run in random order). */
let v1: Promise<{ client: ClientV1; provider: MemoryOAuthProvider; callback: CallbackServer; authorizationUrl: URL; query: URLSearchParams }> | undefined
function v1SignIn(): NonNullable<typeof v1> {
  v1 ??= (async () => {
    const callback = await callbackServer()
    cleanups.push(() => callback.close())
    const provider = new MemoryOAuthProvider(callback.redirectUri)
    const first = new HttpTransportV1(new URL(url), { authProvider: provider })
    await expect(new ClientV1({ name: 'oauth-test', version: '1.0.0' }).connect(first)).rejects.toThrow(UnauthorizedError)
    const authorizationUrl = provider.authorizationUrls.at(-1)
    if (authorizationUrl === undefined) throw new Error('the SDK did not ask to open an authorization URL')
    await signInAndConsent(await newPage(), authorizationUrl.href, { key, decision: 'allow', screenshots: 'sdk-v1' })
    const query = await callback.next()
    await first.finishAuth(query.get('code') ?? '')
    const client = new ClientV1({ name: 'oauth-test', version: '1.0.0' })
    await client.connect(new HttpTransportV1(new URL(url), { authProvider: provider }))
    cleanups.push(() => client.close())
    return { client, provider, callback, authorizationUrl, query }
  })()
  return v1
}

describe('OAuth-capable MCP clients sign in through the browser (Chromium) and use their token', () => {
  it('mcp-remote as "Sign in with OAuth" shows it (no --header): opens the sign-in page, gets a code at its loopback callback, then serves MCP over stdio', {
    timeout: 30_000,
  }, async () => {
    const home = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-mcp-remote-')))
    // The browser mcp-remote opens (through `open`, xdg-open and $BROWSER): it only writes the URL down.
    const bin = join(home, 'bin')
    const opened = join(home, 'opened-urls.txt')
    mkdirSync(bin)
    for (const name of ['xdg-open', 'test-browser']) {
      writeFileSync(join(bin, name), `#!/bin/sh\nprintf '%s\\n' "$1" >> '${opened}'\n`)
      chmodSync(join(bin, name), 0o755)
    }
    // The README's mcpServers entry, by URL only; npm runs offline, so the pinned dev dependency is
    // the one run. Plus a callback port just found free (mcp-remote's second argument): the one it
    // derives from the URL may be held by another process.
    const entry = (JSON.parse(readmeBlock('connect-oauth')) as { mcpServers: { bastion: { command: string; args: string[] } } }).mcpServers.bastion
    expect(entry).toStrictEqual({ command: 'npx', args: ['-y', 'mcp-remote@0.15.1', README_URL] })
    const port = await freePort()
    const transport = new StdioClientTransport({
      command: entry.command,
      args: [...entry.args.map((a) => a.replace(README_URL, url)), String(port)],
      env: {
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        HOME: home,
        BROWSER: join(bin, 'test-browser'),
        MCP_REMOTE_CONFIG_DIR: join(home, '.mcp-auth'),
        npm_config_offline: 'true',
        npm_config_update_notifier: 'false',
      },
      cwd: ROOT,
      stderr: 'pipe',
    })
    let stderr = ''
    transport.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString()
    })
    const client = new ClientV2({ name: 'oauth-test', version: '1.0.0' })
    cleanups.push(() => client.close())
    // initialize waits on mcp-remote, which waits on the sign-in.
    const connected = client.connect(transport).then(
      () => undefined,
      (error: unknown) => error,
    )
    let client_id: string | null = null
    try {
      const firstOpened = (): string | undefined => (existsSync(opened) ? readFileSync(opened, 'utf8').split('\n')[0] || undefined : undefined)
      const authorizationUrl = await waitFor(firstOpened, { what: 'mcp-remote to open a browser', timeoutMs: 15_000 })
      const asked = new URL(authorizationUrl)
      client_id = asked.searchParams.get('client_id')
      expect(`${asked.origin}${asked.pathname}`).toBe(`${origin}/oauth/authorize`)
      expect(asked.searchParams.get('redirect_uri')).toBe(`http://localhost:${port}/oauth/callback`)
      const page = await newPage()
      const landed = await signInAndConsent(page, authorizationUrl, { key, decision: 'allow', screenshots: 'mcp-remote' })
      expect(landed.searchParams.get('code')).toMatch(/^\S{16,}$/)
      expect(landed.searchParams.get('state')).toBe(asked.searchParams.get('state'))
      expect(landed.searchParams.get('iss')).toBe(origin)
      await expect.poll(() => page.locator('body').textContent()).toContain('Authorization successful')
      expect(await connected).toBeUndefined()
      expect((await client.listTools()).tools.map((t) => t.name)).toStrictEqual(TOOLS)
      expect((await client.callTool(READ_TODO)).content).toStrictEqual([{ type: 'text', text: TODO }])
    } catch (error) {
      throw new Error(`${String(error)}\nmcp-remote said:\n${stderr}`)
    }
    expect(stderr).toContain('Connected to remote server using StreamableHTTPClientTransport')
    // The token acts for the user who signed in: the admin key's principal, on the tool call.
    expect(audit()).toContainEqual(expect.objectContaining({ event: 'oauth.registered', client: client_id, clientName: 'MCP CLI Proxy', redirectHosts: [`localhost:${port}`] }))
    expect(audit()).toContainEqual(
      expect.objectContaining({
        event: 'tool.call',
        tool: 'read_file',
        decision: 'allow',
        principal: adminPrincipal(),
        via: 'authorization',
        claims: expect.objectContaining({ client_id }),
      }),
    )
  })

  it('SDK v1 (@modelcontextprotocol/sdk 1.x, 2025-11-25) with an OAuth provider: DCR, PKCE S256, code with state and iss; lists tools and reads a file', async () => {
    const { client, provider, authorizationUrl, query, callback } = await v1SignIn()
    expect(`${authorizationUrl.origin}${authorizationUrl.pathname}`).toBe(`${origin}/oauth/authorize`)
    expect(Object.fromEntries(authorizationUrl.searchParams)).toMatchObject({
      response_type: 'code',
      code_challenge_method: 'S256',
      redirect_uri: callback.redirectUri,
      state: provider.state(),
      resource: url,
    })
    expect(query.get('state')).toBe(provider.state())
    expect(query.get('iss')).toBe(origin)
    const tokens = provider.tokens()
    expect(tokens?.token_type.toLowerCase()).toBe('bearer')
    expect(tokens?.access_token).not.toContain(key)
    expect(client.getServerVersion()?.name).toBeTypeOf('string')
    expect((await client.listTools()).tools.map((t) => t.name)).toStrictEqual(TOOLS)
    expect((await client.callTool(READ_TODO)).content).toStrictEqual([{ type: 'text', text: TODO }])
    const client_id = authorizationUrl.searchParams.get('client_id')
    expect(audit()).toContainEqual(expect.objectContaining({ event: 'token.issued', grant: 'authorization_code', client: client_id, principal: adminPrincipal() }))
  })

  it('the same token with the SDK v2 client (@modelcontextprotocol/client, 2026-07-28): calls read_file', async () => {
    const { provider } = await v1SignIn()
    const client = await connect(url, 'modern', { authorization: `Bearer ${provider.tokens()?.access_token ?? ''}` })
    cleanups.push(() => client.close())
    expect((await client.callTool(READ_TODO)).content).toStrictEqual([{ type: 'text', text: TODO }])
  })

  it('a second sign-in of the same client by the same user: consent is remembered, the sign-in page itself sends the browser back with a code that redeems', async () => {
    const { authorizationUrl, callback, provider } = await v1SignIn()
    const page = await newPage()
    const messages = watchConsole(page)
    await page.goto(authorizationUrl.href)
    await page.locator('#api_key').fill(key)
    await page.locator('#signin-key').click()
    const landed = await landedAt(page, callback.redirectUri, messages, 'remembered')
    const code = landed.searchParams.get('code') ?? ''
    expect(code).toMatch(/^\S{16,}$/)
    expect((await callback.next()).get('state')).toBe(authorizationUrl.searchParams.get('state'))
    const client_id = authorizationUrl.searchParams.get('client_id') ?? ''
    expect(audit()).toContainEqual(expect.objectContaining({ event: 'oauth.authorized', client: client_id, consent: 'remembered', status: 303 }))
    // The same PKCE challenge as the first sign-in: the provider's verifier redeems this code too.
    const form = { grant_type: 'authorization_code', code, redirect_uri: callback.redirectUri, client_id, code_verifier: provider.codeVerifier(), resource: url }
    const res = await fetch(`${origin}/oauth/token`, { method: 'POST', body: new URLSearchParams(form) })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ token_type: expect.stringMatching(/^bearer$/i), access_token: expect.any(String) })
  })

  it('Deny: the client gets error=access_denied with its state and iss, and no code', async () => {
    const callback = await callbackServer()
    cleanups.push(() => callback.close())
    const provider = new MemoryOAuthProvider(callback.redirectUri)
    await expect(new ClientV1({ name: 'oauth-deny', version: '1.0.0' }).connect(new HttpTransportV1(new URL(url), { authProvider: provider }))).rejects.toThrow(UnauthorizedError)
    const authorizationUrl = provider.authorizationUrls.at(-1)?.href ?? ''
    await signInAndConsent(await newPage(), authorizationUrl, { key, decision: 'deny' })
    const query = await callback.next()
    expect(query.get('error')).toBe('access_denied')
    expect(query.get('state')).toBe(provider.state())
    expect(query.get('iss')).toBe(origin)
    expect(query.has('code')).toBe(false)
    expect(provider.tokens()).toBeUndefined()
    const client = new URL(authorizationUrl).searchParams.get('client_id')
    expect(audit()).toContainEqual(
      expect.objectContaining({ event: 'oauth.authorize', client, decision: 'deny', reason: 'ERR_FORBIDDEN', oauthError: 'access_denied', status: 303 }),
    )
  })

  it('a wrong key on the sign-in page: 401, the page says so and asks again; no consent page', async () => {
    const { authorizationUrl } = await v1SignIn()
    const page = await newPage()
    await page.goto(authorizationUrl.href)
    await page.locator('#api_key').fill(`bst_${'0'.repeat(16)}_${'A'.repeat(43)}`)
    const [res] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.locator('#signin-key').click()])
    expect(res.status()).toBe(401)
    await page.locator('form#signin').waitFor()
    expect(await page.locator('#notice').textContent()).toContain('not accepted')
    expect(await page.locator('form#consent').count()).toBe(0)
    const client = authorizationUrl.searchParams.get('client_id')
    expect(audit()).toContainEqual(expect.objectContaining({ event: 'oauth.signin', client, decision: 'deny', reason: 'ERR_AUTH_INVALID', status: 401 }))
  })

  it("a flow from another browser does not open: the sealed flow without its browser's cookie is the error page (400)", async () => {
    const { authorizationUrl } = await v1SignIn()
    const victim = await newPage()
    await victim.goto(authorizationUrl.href)
    const flow = await victim.locator('form#signin input[name=flow]').getAttribute('value')
    const attacker = await newPage()
    await attacker.goto(authorizationUrl.href)
    await attacker.locator('form#signin input[name=flow]').evaluate((input, value) => input.setAttribute('value', value), flow ?? '')
    await attacker.locator('#api_key').fill(key)
    const [res] = await Promise.all([attacker.waitForResponse((r) => r.request().method() === 'POST'), attacker.locator('#signin-key').click()])
    expect(res.status()).toBe(400)
    expect(res.headers()['content-type']).toMatch(/^text\/html/)
    await attacker.locator('main#error').waitFor()
    expect(await attacker.locator('form#consent').count()).toBe(0)
    expect(audit()).toContainEqual(
      expect.objectContaining({ event: 'oauth.authorize', decision: 'deny', reason: 'ERR_INVALID_REQUEST', status: 400, detail: expect.stringContaining('CSRF') }),
    )
  })

  it('an unknown client: the error page (400, text/html, main#error), and no redirect to the unverified redirect_uri', async () => {
    const page = await newPage()
    const bad = new URL('/oauth/authorize', origin)
    const params = {
      response_type: 'code',
      client_id: 'no-such-client',
      redirect_uri: 'http://127.0.0.1:9/callback',
      code_challenge: 'A'.repeat(43),
      code_challenge_method: 'S256',
      state: 's',
    }
    for (const [name, value] of Object.entries(params)) bad.searchParams.set(name, value)
    const res = await page.goto(bad.href)
    expect(res?.status()).toBe(400)
    expect(res?.headers()['content-type']).toMatch(/^text\/html/)
    await page.locator('main#error').waitFor()
    expect(new URL(page.url()).origin).toBe(origin)
  })
})
