import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BrowserContext, chromium, type Page } from 'playwright-core'

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

/** Where screenshots go (git ignores it); CI can keep the folder as the run's artifacts. */
export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url))

export interface TestBrowser {
  /** One browser profile of its own (a fresh user-data-dir): cookies, storage and cache start empty. */
  readonly context: BrowserContext
  /** A new tab in that profile. */
  newPage(): Promise<Page>
  /** Close the browser and delete its profile. */
  close(): Promise<void>
}

/**
 * Headless Chromium on a fresh profile. Fails loudly, naming the package to install, where
 * /usr/bin/chromium is missing: a browser test that cannot run a browser is a failure, not a skip.
 */
export async function launchBrowser(options: { readonly timeoutMs?: number } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium: apt-get install -y chromium`)
  const profile = mkdtempSync(join(tmpdir(), 'bastion-chromium-'))
  let context: BrowserContext
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS],
      timeout: options.timeoutMs ?? 15_000,
      // The proxy variables of the test's environment must not route loopback traffic elsewhere.
      env: { HOME: profile, PATH: process.env.PATH ?? '' },
    })
  } catch (error) {
    rmSync(profile, { recursive: true, force: true })
    throw new Error(`cannot start ${CHROMIUM} headless: ${String(error)}`)
  }
  context.setDefaultTimeout(options.timeoutMs ?? 10_000)
  return {
    context,
    newPage: () => context.newPage(),
    async close() {
      await context.close()
      rmSync(profile, { recursive: true, force: true })
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
