import { randomBytes } from 'node:crypto'
import type { Page } from 'playwright-core'
import { expect } from 'vitest'
import { JSON_HEADERS, modernCall, modernHeaders, rpcBody } from './server.js'

/**
 * What the console tests share: the overview's counts computed from the audit file (the oracle the
 * console is checked against), a `tools/call` that carries a request id of the test's choosing, a
 * sign-in through the real form, and a watch on what a page complains about.
 */

export interface Totals {
  allow: number
  deny: number
  error: number
}

/**
 * The overview's "requests" in audit records, counted as the console promises: lines with a string
 * `requestId` and a `decision` of allow, deny or error, leaving out the console's own lines (those
 * whose `method` starts with `console/`), over the hour and the day before `now`.
 */
export function requestCounts(records: readonly Record<string, unknown>[], now = Date.now()): { hour: Totals; day: Totals } {
  const hour: Totals = { allow: 0, deny: 0, error: 0 }
  const day: Totals = { allow: 0, deny: 0, error: 0 }
  for (const r of records) {
    if (typeof r.requestId !== 'string' || typeof r.ts !== 'string') continue
    if (typeof r.method === 'string' && r.method.startsWith('console/')) continue
    const d = r.decision
    if (d !== 'allow' && d !== 'deny' && d !== 'error') continue
    const age = now - Date.parse(r.ts)
    if (age < 0 || age > 86_400_000) continue
    day[d] += 1
    if (age <= 3_600_000) hour[d] += 1
  }
  return { hour, day }
}

/** A request id that no other test sends: `prefix-` and 16 hex digits. */
export const requestId = (prefix: string): string => `${prefix}-${randomBytes(8).toString('hex')}`

/**
 * A 2026-07-28 `tools/call` over HTTP with `key` (sent as a bearer token; `undefined` sends none)
 * and `x-request-id: id`. Resolves with the HTTP status, the parsed JSON-RPC body and the request id
 * the server answered with (bastion keeps the client's id when it is well-formed).
 */
export async function toolCall(
  url: string,
  key: string | undefined,
  tool: string,
  args: unknown,
  id: string = requestId('call'),
): Promise<{ status: number; body: Record<string, unknown>; requestId: string | null }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', tool), 'x-request-id': id, ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
    body: JSON.stringify(modernCall(tool, args)),
  })
  return { status: res.status, body: await rpcBody(res), requestId: res.headers.get('x-request-id') }
}

/**
 * Signs in at `<origin><path>/signin` the way a person does: types `key` into `#api_key`, clicks
 * `#signin-key`, and waits for the page the 303 leads to (the overview). Fails with the page's
 * text when it lands anywhere else.
 */
export async function signIn(page: Page, origin: string, key: string, path = '/console'): Promise<void> {
  const res = await page.goto(`${origin}${path}/signin`)
  expect(res?.status()).toBe(200)
  await page.locator('#api_key').fill(key)
  await Promise.all([page.waitForURL(`${origin}${path}`, { waitUntil: 'load' }), page.locator('#signin-key').click()])
  expect(await page.locator('h1').first().textContent(), (await page.locator('body').textContent()) ?? '').toBe('Overview')
}

export interface PageWatch {
  /**
   * What went wrong on the page so far: console errors and warnings, any message about the Content
   * Security Policy, uncaught exceptions, failed requests (to loopback: a broken asset or API; to
   * anything else: a request the console should never make). `allowed` patterns are left out (an
   * expected 403 page logs "Failed to load resource").
   */
  problems(allowed?: readonly RegExp[]): string[]
}

/** Starts watching `page`; call before the first navigation. */
export function watchPage(page: Page): PageWatch {
  const seen: string[] = []
  page.on('console', (m) => {
    const text = m.text()
    if (m.type() === 'error' || m.type() === 'warning' || /Content Security Policy/i.test(text)) seen.push(`console ${m.type()}: ${text}`)
  })
  page.on('pageerror', (e) => seen.push(`page error: ${e.message}`))
  page.on('requestfailed', (r) => seen.push(`request failed: ${r.method()} ${r.url()} (${r.failure()?.errorText ?? '?'})`))
  return { problems: (allowed = []) => seen.filter((s) => !allowed.some((a) => a.test(s))) }
}
