import { existsSync, mkdirSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { type Browser, type BrowserContext, chromium } from 'playwright-core'

const CHROMIUM = '/usr/bin/chromium'

/** Screenshots of the pages under test (git-ignored). */
export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))

/** Debian's chromium, headless, with nothing of its own on the network (no updates, no sync, no QUIC). */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install -y chromium)`)
  mkdirSync(ARTIFACTS, { recursive: true })
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}

/**
 * A fresh browser profile (its own cookies) that reaches loopback addresses only: anything else a
 * page asks for (oidc-provider's development pages import a web font) is aborted, so the tests
 * never wait on the network.
 */
export async function loopbackContext(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext()
  // Well under the test's timeout: a page that never comes fails with what it waited for.
  context.setDefaultTimeout(8000)
  await context.route(
    (url) => url.hostname !== '127.0.0.1' && url.hostname !== 'localhost',
    (route) => route.abort(),
  )
  return context
}

export interface CallbackServer {
  /** `http://127.0.0.1:<port>/cb`: a native client's loopback redirect URI (RFC 8252 §7.3). */
  readonly redirectUri: string
  /** The query of every request that reached the callback, in order. */
  readonly hits: URLSearchParams[]
  close(): Promise<void>
}

/** The OAuth client's side of the redirect: a loopback listener that records what it was sent. */
export async function startCallback(): Promise<CallbackServer> {
  const hits: URLSearchParams[] = []
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    if (url.pathname === '/cb') hits.push(url.searchParams)
    res.writeHead(url.pathname === '/cb' ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' })
    res.end('<!doctype html><title>done</title><h1 id="done">You can close this window.</h1>')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    redirectUri: `http://127.0.0.1:${(server.address() as AddressInfo).port}/cb`,
    hits,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    },
  }
}
