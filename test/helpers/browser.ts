import { existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'

/** Debian's Chromium: playwright-core downloads no browser of its own, and this machine reaches no browser download site. */
export const CHROMIUM = '/usr/bin/chromium'

/**
 * Headless, no sandbox (the tests run as root), and nothing that reaches past loopback: no QUIC,
 * no first-run, background, component-update or sync traffic. `--headless` is the one Chromium
 * reads; playwright-core passes it too, with `headless: true`.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** Where screenshots go (git ignores it); CI can keep the folder as the run's artifacts. */
export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))

export interface TestBrowser {
  /** A tab in a profile of its own (cookies, storage and cache start empty, as in a fresh user-data-dir) that reaches loopback only. */
  newPage(): Promise<Page>
  /** Close the browser (and so every profile it made). */
  close(): Promise<void>
}

/**
 * Headless Chromium on a temporary user-data-dir that playwright-core makes and deletes on close;
 * each {@link TestBrowser.newPage} is a fresh profile (a new browser context). Fails loudly, naming the
 * package to install, where /usr/bin/chromium is missing: a browser test that cannot run a
 * browser is a failure, not a skip.
 */
export async function launchBrowser(options: { readonly timeoutMs?: number } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium: apt-get install -y chromium`)
  const timeout = options.timeoutMs ?? 10_000
  let browser: Browser
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS],
      // A cold start on two loaded cores took over 15 s twice in one day; the hook allows 60.
      timeout: 45_000,
      // No proxy variables from the test's environment: loopback traffic goes straight to loopback.
      env: { HOME: tmpdir(), PATH: process.env.PATH ?? '' },
    })
  } catch (error) {
    throw new Error(`cannot start ${CHROMIUM} headless: ${String(error)}`)
  }
  const contexts = new Set<BrowserContext>()
  return {
    async newPage() {
      const context = await browser.newContext()
      context.setDefaultTimeout(timeout)
      // Loopback only: a page that asks for anything else is refused at once, never waited on.
      await context.route(
        (u) => !LOOPBACK.has(u.hostname),
        (route) => route.abort(),
      )
      contexts.add(context)
      return context.newPage()
    },
    async close() {
      for (const context of contexts) await context.close()
      await browser.close()
    },
  }
}

/** A full-page PNG of `page` as test-artifacts/NAME.png; returns its path. */
export async function saveScreenshot(page: Page, name: string): Promise<string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`not a plain file name: ${name}`)
  mkdirSync(ARTIFACTS, { recursive: true })
  const path = join(ARTIFACTS, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  return path
}
