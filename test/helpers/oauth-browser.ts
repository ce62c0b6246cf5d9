import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js'
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js'
import type { Page } from 'playwright-core'
import { expect } from 'vitest'
import { saveScreenshot } from './browser.js'

/** What a person does on bastion's authorization pages. */
export interface BrowserStep {
  /** The admin (or any) API key typed into the sign-in page. */
  readonly key: string
  /** The button pressed on the consent page. */
  readonly decision: 'allow' | 'deny'
  /** Screenshots of the sign-in and consent pages as test-artifacts/PREFIX-signin.png, -consent.png. */
  readonly screenshots?: string
}

/**
 * Opens an authorization URL in `page`, checks the sign-in page's contract (200 text/html,
 * `form#signin`, `#api_key`, `#signin-key`, the flow's `bastion_flow_<id>` cookie HttpOnly and SameSite=Lax),
 * signs in with the key, checks the consent page (`form#consent`, `#allow`, `#deny`), presses one,
 * and resolves with the URL the browser was sent to: the client's redirect URI with code or error.
 * Fails with what the browser said (the CSP violation, the error page) when it lands elsewhere.
 */
export async function signInAndConsent(page: Page, authorizationUrl: string, step: BrowserStep): Promise<URL> {
  const messages = watchConsole(page)
  const redirectUri = new URL(authorizationUrl).searchParams.get('redirect_uri')
  expect(redirectUri, 'the authorization URL names its redirect_uri').not.toBeNull()
  const res = await page.goto(authorizationUrl)
  expect(res?.status(), await page.content()).toBe(200)
  expect(res?.headers()['content-type']).toMatch(/^text\/html/)
  await expect.poll(() => page.locator('form#signin').getAttribute('action')).toBe('/oauth/authorize')
  expect(await page.locator('form#signin').getAttribute('method')).toBe('post')
  expect(await page.locator('#api_key').getAttribute('type')).toBe('password')
  const flow = (await page.context().cookies()).find((c) => /^bastion_flow_[0-9a-f]{16}$/.test(c.name))
  expect(flow, 'the sign-in page sets the flow cookie').toMatchObject({ httpOnly: true, sameSite: 'Lax' })
  if (step.screenshots !== undefined) await saveScreenshot(page, `${step.screenshots}-signin`)
  await page.locator('#api_key').fill(step.key)
  const [signedIn] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.locator('#signin-key').click()])
  expect(signedIn.status(), `the sign-in answered ${signedIn.status()}: ${(await signedIn.text()).slice(0, 300)}\nconsole:\n${messages.join('\n')}`).toBe(200)
  await page.locator('form#consent').waitFor()
  if (step.screenshots !== undefined) await saveScreenshot(page, `${step.screenshots}-consent`)
  await page.locator(step.decision === 'allow' ? '#allow' : '#deny').click()
  return landedAt(page, redirectUri ?? '', messages, step.screenshots)
}

/** What the page logs to its console from now on (a CSP violation says so there, and nowhere else). */
export function watchConsole(page: Page): string[] {
  const messages: string[] = []
  page.on('console', (m) => messages.push(`${m.type()}: ${m.text()}`))
  return messages
}

/** The URL once the browser is at `redirectUri` (query aside); otherwise a failure naming where it is and what the console said. */
export async function landedAt(page: Page, redirectUri: string, messages: readonly string[] = [], screenshots?: string): Promise<URL> {
  const target = new URL(redirectUri)
  const at = (u: URL): boolean => u.origin === target.origin && u.pathname === target.pathname
  try {
    await page.waitForURL(at, { waitUntil: 'commit', timeout: 5_000 })
  } catch {
    if (screenshots !== undefined) await saveScreenshot(page, `${screenshots}-stuck`).catch(() => undefined)
    const text = await page
      .locator('body')
      .textContent()
      .catch(() => '')
    throw new Error(`the browser did not reach ${redirectUri}: it is at ${page.url()}\npage: ${(text ?? '').slice(0, 500)}\nconsole:\n${messages.join('\n')}`)
  }
  return new URL(page.url())
}

/** A loopback redirect URI (RFC 8252 §7.3) that hands each request's query to the test. */
export interface CallbackServer {
  readonly redirectUri: string
  /** The query of the next request to arrive (or of one that came already). */
  next(): Promise<URLSearchParams>
  close(): Promise<void>
}

export async function callbackServer(): Promise<CallbackServer> {
  const arrived: URLSearchParams[] = []
  const waiting: ((q: URLSearchParams) => void)[] = []
  const server = createServer((req, res) => {
    const at = new URL(req.url ?? '/', 'http://127.0.0.1')
    // The browser asks for /favicon.ico too: only the redirect URI's path is an answer.
    if (at.pathname !== '/callback') return void res.writeHead(404).end()
    const query = at.searchParams
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end('<p id="done">You can close this window.</p>')
    const waiter = waiting.shift()
    if (waiter === undefined) arrived.push(query)
    else waiter(query)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    redirectUri: `http://127.0.0.1:${port}/callback`,
    next: () => {
      const first = arrived.shift()
      return first === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(first)
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

/**
 * An SDK v1 OAuth client provider that keeps everything in memory (a public client, `none`, PKCE)
 * and hands the authorization URL to the test instead of opening a browser.
 */
export class MemoryOAuthProvider implements OAuthClientProvider {
  readonly #redirectUri: string
  readonly #state = randomBytes(16).toString('base64url')
  #client: OAuthClientInformationMixed | undefined
  #tokens: OAuthTokens | undefined
  #verifier = ''
  readonly #urls: URL[] = []

  constructor(redirectUri: string) {
    this.#redirectUri = redirectUri
  }

  get redirectUrl(): string {
    return this.#redirectUri
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: 'bastion OAuth browser test',
      redirect_uris: [this.#redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }
  }

  state(): string {
    return this.#state
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.#client
  }

  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.#client = info
  }

  tokens(): OAuthTokens | undefined {
    return this.#tokens
  }

  saveTokens(tokens: OAuthTokens): void {
    this.#tokens = tokens
  }

  redirectToAuthorization(url: URL): void {
    this.#urls.push(url)
  }

  saveCodeVerifier(verifier: string): void {
    this.#verifier = verifier
  }

  codeVerifier(): string {
    return this.#verifier
  }

  /** The authorization URLs the SDK asked to open, oldest first. */
  get authorizationUrls(): readonly URL[] {
    return this.#urls
  }
}
