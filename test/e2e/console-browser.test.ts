import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, saveScreenshot, type TestBrowser } from '../helpers/browser.js'
import { type PageWatch, requestCounts, requestId, signIn, toolCall, watchPage } from '../helpers/console.js'
import { connect, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

// The operator console in headless Chromium against a real server: real MCP calls (the SDK's client
// and raw HTTP) write the audit trail, and a person signs in, reads the overview, filters the trail,
// explains and replays decisions, manages keys and watches the live tail. Each test makes the calls
// it looks for and signs in on a fresh profile: the tests shuffle.

const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url))
const UPDATE_DOCS = process.env.UPDATE_DOCS_SCREENSHOTS === '1'
const READ_TODO = { path: 'notes/todo.txt' }
const PRIVATE = { path: 'private/plan.txt' }

let server: TestServer
let browser: TestBrowser
let origin = ''
let auditorKey = ''

beforeAll(async () => {
  const [started, launched] = await Promise.allSettled([
    startServer({
      roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] }, auditor: { permissions: ['console:read'] } },
      // A denial on the arguments: recorded with them, so the console can explain and replay it.
      policy: {
        rules: [
          { id: 'no-key-files', effect: 'deny', subjects: { roles: ['reader'] }, targets: { tools: ['read_file'] }, when: 'args.path.endsWith(".pem")' },
          { id: 'no-private-notes', effect: 'deny', subjects: { roles: ['reader'] }, targets: { tools: ['read_file'] }, when: 'args.path.startsWith("private/")' },
        ],
      },
    }),
    launchBrowser(),
  ])
  if (started.status === 'fulfilled') server = started.value
  if (launched.status === 'fulfilled') browser = launched.value
  if (started.status === 'rejected') throw started.reason
  if (launched.status === 'rejected') throw launched.reason
  origin = new URL(server.url).origin
  auditorKey = server.bastion.keys.create({ name: 'auditor', roles: ['auditor'], expiresAt: null }).key
})
// Each test's tabs close with it: a live tail left polling would outlive its test otherwise.
const opened: Page[] = []
afterEach(async () => {
  for (const page of opened.splice(0)) await page.context().close()
})
afterAll(async () => {
  await browser?.close()
  await server?.close()
})

/** `key:<id>`, the principal the audit log names for an API key. */
const principalOf = (key: string): string => `key:${key.split('_')[1] ?? ''}`

/** A fresh profile's tab, watched from its first request. */
async function openPage(viewport = { width: 1280, height: 800 }): Promise<{ page: Page; watch: PageWatch }> {
  const page = await browser.newPage()
  opened.push(page)
  await page.setViewportSize(viewport)
  return { page, watch: watchPage(page) }
}

/** The audit lines of one request, once it has written at least one with a decision. */
const linesOf = (id: string): Promise<Record<string, unknown>[]> =>
  waitFor(
    () => {
      const lines = server.audit().filter((r) => r.requestId === id)
      return lines.some((r) => typeof r.decision === 'string') ? lines : undefined
    },
    { what: `the audit line of ${id}` },
  )

/** A role's denial: the `nobody` key calling `read_file`, refused before its arguments are read (default-deny). */
async function roleDenial(): Promise<string> {
  const id = requestId('deny-role')
  const denied = await toolCall(server.url, server.keys.nobody, 'read_file', READ_TODO, id)
  expect(denied.status).toBe(403)
  expect(denied.requestId).toBe(id)
  expect(JSON.stringify(denied.body)).not.toContain('try read_file')
  const lines = await linesOf(id)
  expect(lines.find((r) => typeof r.decision === 'string')).toMatchObject({
    requestId: id,
    decision: 'deny',
    reason: 'ERR_FORBIDDEN',
    rule: 'default-deny',
    principal: principalOf(server.keys.nobody),
  })
  return id
}

/** A denial on the arguments, which the line records with them (so it can be explained and replayed): the reader reading under private/. */
async function argumentDenial(): Promise<string> {
  const id = requestId('deny-args')
  const denied = await toolCall(server.url, server.keys.reader, 'read_file', PRIVATE, id)
  // Decided inside the MCP exchange: a JSON-RPC error on a 200.
  expect(denied.status).toBe(200)
  expect(denied.body).toMatchObject({ error: { message: 'forbidden', data: { code: 'ERR_FORBIDDEN', requestId: id } } })
  expect(denied.requestId).toBe(id)
  const lines = await linesOf(id)
  expect(lines.find((r) => typeof r.decision === 'string')).toMatchObject({
    requestId: id,
    decision: 'deny',
    reason: 'ERR_FORBIDDEN',
    authz: 'deny',
    rule: 'no-private-notes',
    args: PRIVATE,
    principal: principalOf(server.keys.reader),
  })
  return id
}

/** Where the page is wider than the window: the widest elements that stick out (for the failure message). */
const OVERFLOW = `(() => {
  const w = window.innerWidth
  const out = [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > w + 1 && ![...e.children].some((c) => c.getBoundingClientRect().right > w + 1))
    .slice(0, 5)
    .map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '') + ' right=' + Math.round(e.getBoundingClientRect().right) + ' ' + JSON.stringify((e.textContent || '').slice(0, 40)))
  return { scrollWidth: document.documentElement.scrollWidth, innerWidth: w, out }
})()`
const overflowOf = (page: Page): Promise<{ scrollWidth: number; innerWidth: number; out: string[] }> => page.evaluate(OVERFLOW)

const cardNumber = async (page: Page, id: string): Promise<number> => Number(await page.locator(`#${id} .n`).textContent())

async function docsShot(page: Page, name: string): Promise<void> {
  if (!UPDATE_DOCS) return
  mkdirSync(DOCS, { recursive: true })
  await page.screenshot({ path: `${DOCS}${name}.png`, fullPage: true })
}

describe('operator console in a browser', () => {
  it('overview: the six counts are the audit file’s requests by decision; charts and top lists show the calls', async () => {
    // A mix of real calls: the SDK's client for allowed ones, raw HTTP for refusals.
    const admin = await connect(server.url, 'modern', { authorization: `Bearer ${server.keys.admin}` })
    expect((await admin.callTool({ name: 'read_file', arguments: READ_TODO })).isError).not.toBe(true)
    expect((await admin.callTool({ name: 'read_file', arguments: READ_TODO })).isError).not.toBe(true)
    expect((await admin.callTool({ name: 'list_files', arguments: { path: 'notes' } })).isError).not.toBe(true)
    await admin.close()
    const allowed = await toolCall(server.url, server.keys.reader, 'read_file', READ_TODO)
    expect(allowed.status).toBe(200)
    await roleDenial()
    await argumentDenial()
    const wrongKey = await toolCall(server.url, `bst_${'0'.repeat(16)}_${'A'.repeat(43)}`, 'read_file', READ_TODO)
    expect(wrongKey.status).toBe(401)
    for (const id of [allowed.requestId, wrongKey.requestId]) await linesOf(id ?? '')

    const { page, watch } = await openPage()
    // The oracle: the audit file read right before the overview loads (sign-in lands on it).
    const records = server.audit()
    const expected = requestCounts(records)
    expect(expected.hour.allow).toBeGreaterThanOrEqual(4)
    expect(expected.hour.deny).toBeGreaterThanOrEqual(3)
    await signIn(page, origin, server.keys.admin)
    // Pictures first: a failing count below still leaves the page to look at.
    await saveScreenshot(page, 'console-overview')
    await docsShot(page, 'console-overview')
    const shown = {
      hour: { allow: await cardNumber(page, 'hour-allow'), deny: await cardNumber(page, 'hour-deny'), error: await cardNumber(page, 'hour-error') },
      day: { allow: await cardNumber(page, 'day-allow'), deny: await cardNumber(page, 'day-deny'), error: await cardNumber(page, 'day-error') },
    }
    // Said in the failure: what the counts would be if the console's own lines were counted.
    const withConsole = requestCounts(records.map(({ method: _, ...r }) => r))
    expect(shown, `the audit file's requests; with the console's own lines (before this sign-in) they would be ${JSON.stringify(withConsole)}`).toEqual(expected)
    expect(await page.locator('#p50 .n').textContent()).toMatch(/^\d+(\.\d)? ms$/)
    expect(await page.locator('#p99 .n').textContent()).toMatch(/^\d+(\.\d)? ms$/)
    expect(await page.locator('#per-minute svg rect').count()).toBeGreaterThan(0)
    expect(await page.locator('#per-hour svg rect').count()).toBeGreaterThan(0)
    expect(await page.locator('#top-principals').textContent()).toContain(principalOf(server.keys.admin))
    expect(await page.locator('#top-tools').textContent()).toContain('read_file')
    expect(await page.locator('#top-denials').textContent()).toContain('ERR_FORBIDDEN')
    expect(watch.problems()).toEqual([])
  })

  it('audit: a known denial is found by request id, by decision and by text; its chain verifies, its line expands, and its explain link says deny', async () => {
    const id = await argumentDenial()
    const other = await roleDenial()
    const lines = server.audit().filter((r) => r.requestId === id)
    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await Promise.all([page.waitForURL(`${origin}/console/audit`), page.locator('nav a', { hasText: 'Audit' }).click()])

    // By request id: exactly that request's lines, denied, and the chain verifies them.
    await page.locator('#f-requestId').fill(id)
    await Promise.all([page.waitForURL((u) => u.searchParams.get('requestId') === id), page.locator('#apply').click()])
    const rows = page.locator('#lines tr.line')
    expect(await rows.count()).toBe(lines.length)
    for (const rid of await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-request-id')))) expect(rid).toBe(id)
    expect(await rows.first().locator('td.deny').textContent()).toBe('deny')
    expect(await page.locator('#verification').getAttribute('data-status')).toBe('verified')
    const details = rows.first().locator('details')
    expect(await details.locator('pre').isVisible()).toBe(false)
    await details.locator('summary').click()
    await expect.poll(() => details.locator('pre').isVisible()).toBe(true)
    const record = JSON.parse((await details.locator('pre').textContent()) ?? '{}') as Record<string, unknown>
    expect(record).toMatchObject({ requestId: id, decision: 'deny', reason: 'ERR_FORBIDDEN', tool: 'read_file', args: PRIVATE })
    await saveScreenshot(page, 'console-audit')

    // By decision: both denials are among the denied lines, and only denied lines are shown.
    await page.locator('#f-requestId').fill('')
    await page.locator('#f-decision').selectOption('deny')
    await Promise.all([page.waitForURL((u) => u.searchParams.get('decision') === 'deny' && !u.searchParams.get('requestId')), page.locator('#apply').click()])
    expect(await page.locator(`#lines tr.line[data-request-id="${id}"]`).count()).toBe(lines.length)
    expect(await page.locator(`#lines tr.line[data-request-id="${other}"]`).count()).toBe(1)
    const decisions = await page.locator('#lines tr.line td:nth-child(5)').allTextContents()
    expect(new Set(decisions)).toEqual(new Set(['deny']))
    // A denial refused before its arguments were read is explained on principal and tool alone.
    const otherLink = page.locator(`#lines tr.line[data-request-id="${other}"] a`, { hasText: 'explain' })
    expect(await otherLink.count()).toBe(1)
    const explainOther = await page.context().newPage()
    await explainOther.goto(new URL((await otherLink.getAttribute('href')) ?? '', page.url()).href)
    expect(await explainOther.locator('#verdict').textContent()).toMatch(/^deny by default-deny \(policy [0-9a-f]+\)$/)
    expect(await explainOther.locator('#stage').textContent()).toContain('before its arguments were read')
    await explainOther.close()

    // By free text (case-insensitive, on the stored line): the random part of the id finds it alone.
    const part = id.slice('deny-args-'.length).toUpperCase()
    await page.locator('#f-decision').selectOption('')
    await page.locator('#f-text').fill(part)
    await Promise.all([page.waitForURL((u) => u.searchParams.get('text') === part), page.locator('#apply').click()])
    expect(await page.locator('#lines tr.line').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-request-id')))).toEqual(lines.map(() => id))

    // Its explain link: decided again under the policy in force, a deny by the same rule, with the rules evaluated.
    await Promise.all([
      page.waitForURL((u) => u.pathname === '/console/explain' && u.searchParams.get('requestId') === id),
      page.locator(`#lines tr.line[data-request-id="${id}"] a`, { hasText: 'explain' }).first().click(),
    ])
    expect(await page.locator('#verdict').textContent()).toMatch(/^deny by no-private-notes \(policy [0-9a-f]+\)$/)
    expect(await page.locator('#recorded').textContent()).toMatch(/^Recorded: deny by no-private-notes/)
    // Denies are evaluated first, and the first that matches decides.
    const trace: string[][] = []
    const traceRows = page.locator('#trace tbody tr')
    for (let i = 0; i < (await traceRows.count()); i++) trace.push(await traceRows.nth(i).locator('td').allTextContents())
    expect(trace).toEqual([
      ['no-key-files', 'deny', 'condition-false', ''],
      ['no-private-notes', 'deny', 'matched', ''],
    ])
    await saveScreenshot(page, 'console-explain')
    await docsShot(page, 'console-explain')
    expect(watch.problems()).toEqual([])
  })

  it('explain forms: a call typed in and a recorded line by its request id are decided, with their traces', async () => {
    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await Promise.all([page.waitForURL(`${origin}/console/explain`), page.locator('nav a', { hasText: 'Explain' }).click()])
    await page.locator('#principal').fill('key:0123456789abcdef')
    await page.locator('#roles').fill('reader')
    await page.locator('#tool').selectOption('read_file')
    await page.locator('#args').fill(JSON.stringify(PRIVATE))
    await Promise.all([page.waitForURL((u) => u.searchParams.get('tool') === 'read_file'), page.locator('#explain-call button[type=submit]').click()])
    expect(await page.locator('#verdict').textContent()).toMatch(/^deny by no-private-notes/)
    await page.locator('#args').fill(JSON.stringify(READ_TODO))
    await Promise.all([page.waitForURL((u) => u.searchParams.get('args') === JSON.stringify(READ_TODO)), page.locator('#explain-call button[type=submit]').click()])
    expect(await page.locator('#verdict').textContent()).toMatch(/^allow by role:reader\/files:read/)
    expect(await page.locator('#trace tbody tr', { hasText: 'no-private-notes' }).locator('td').nth(2).textContent()).toBe('condition-false')
    expect(await page.locator('#trace tbody tr', { hasText: 'role:reader/files:read' }).locator('td').nth(2).textContent()).toBe('matched')

    const id = await argumentDenial()
    await page.locator('#requestId').fill(id)
    await Promise.all([page.waitForURL((u) => u.searchParams.get('requestId') === id), page.locator('#explain-line button[type=submit]').click()])
    expect(await page.locator('#verdict').textContent()).toMatch(/^deny by no-private-notes/)
    expect(await page.locator('#trace tbody tr', { hasText: 'no-private-notes' }).locator('td').allTextContents()).toEqual(['no-private-notes', 'deny', 'matched', ''])
    // A request id no line has is said so, not an error page.
    const unknown = requestId('never-sent')
    await page.locator('#requestId').fill(unknown)
    await Promise.all([page.waitForURL((u) => u.searchParams.get('requestId') === unknown), page.locator('#explain-line button[type=submit]').click()])
    expect(await page.locator('#problem').textContent()).toBe(`No line with request id ${unknown}.`)
    expect(await page.locator('#verdict').count()).toBe(0)
    expect(watch.problems()).toEqual([])
  })

  it('replay: a candidate policy lists exactly the recorded decisions in the range it would change', async () => {
    const from = new Date().toISOString()
    const readerRead = await toolCall(server.url, server.keys.reader, 'read_file', READ_TODO, requestId('reader-read'))
    expect(readerRead.status).toBe(200)
    const readerPrivate = await argumentDenial()
    const adminRead = await toolCall(server.url, server.keys.admin, 'read_file', READ_TODO, requestId('admin-read'))
    expect(adminRead.status).toBe(200)
    // Refused before its arguments: recorded without an argument decision, so not replayed.
    await roleDenial()
    for (const r of [readerRead, adminRead]) await linesOf(r.requestId ?? '')
    const to = new Date(Date.now() + 1).toISOString()

    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await page.goto(`${origin}/console/explain`)
    // Instead of no-private-notes: readers may read only outside notes/.
    const candidate = [
      'rules:',
      '  - id: readers-not-notes',
      '    effect: deny',
      '    subjects: { roles: [reader] }',
      '    targets: { tools: [read_file] }',
      '    when: args.path.startsWith("notes/")',
      '',
    ].join('\n')
    await page.locator('#policy').fill(candidate)
    await page.locator('#r-from').fill(from)
    await page.locator('#r-to').fill(to)
    await Promise.all([page.waitForURL((u) => u.pathname === '/console/explain/replay'), page.locator('#replay-run').click()])
    expect(await page.locator('#problem').count(), (await page.locator('#content').textContent()) ?? '').toBe(0)
    const changeRows = page.locator('#replay-changes tbody tr')
    const changes: string[][] = []
    for (let i = 0; i < (await changeRows.count()); i++) changes.push(await changeRows.nth(i).locator('td').allTextContents())
    const byId = new Map(changes.map((c) => [c[0], c]))
    expect([...byId.keys()].sort()).toEqual([readerRead.requestId, readerPrivate].sort())
    expect(byId.get(readerRead.requestId ?? '')?.slice(1)).toEqual([
      principalOf(server.keys.reader),
      'tool read_file',
      'allow (role:reader/files:read)',
      'deny (readers-not-notes)',
    ])
    expect(byId.get(readerPrivate)?.slice(1)).toEqual([principalOf(server.keys.reader), 'tool read_file', 'deny (no-private-notes)', 'allow (role:reader/files:read)'])
    expect(await page.locator('#replay-summary').textContent()).toMatch(/^3 decision\(s\) replayed, 2 would change/)
    expect(watch.problems()).toEqual([])
  })

  it('replay: the candidate policy the form offers as its example loads', async () => {
    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await page.goto(`${origin}/console/explain`)
    const example = await page.locator('#policy').inputValue()
    expect(example).toMatch(/^rules:/)
    await Promise.all([page.waitForURL((u) => u.pathname === '/console/explain/replay'), page.locator('#replay-run').click()])
    expect(await page.locator('#problem').count(), `the example ${JSON.stringify(example)} is refused: ${(await page.locator('#problem').allTextContents()).join(' ')}`).toBe(0)
    expect(await page.locator('#replay-summary').textContent()).toMatch(/^\d+ decision\(s\) replayed/)
    expect(watch.problems()).toEqual([])
  })

  it('keys: a key made in the form is shown once, works, and is refused with 401 once revoked by its button', async () => {
    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await page.locator('nav a', { hasText: 'Keys' }).click()
    await page.waitForURL(`${origin}/console/keys`)
    const name = requestId('browser-key')
    await page.locator('#key-name').fill(name)
    await page.locator('input[name=roles][value=reader]').check()
    await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST' && r.url() === `${origin}/console/keys`), page.locator('#create').click()])
    const key = ((await page.locator('#new-key').textContent()) ?? '').trim()
    expect(key).toMatch(/^bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    const id = key.split('_')[1] ?? ''
    const row = page.locator(`#keys tr[data-key-id="${id}"]`)
    expect(await row.locator('td').nth(1).textContent()).toBe(name)
    expect(await row.locator('td').nth(2).textContent()).toBe('reader')
    expect(await row.locator('td').nth(3).textContent()).toBe('active')
    expect(server.audit().some((r) => r.event === 'console.key.created' && r.key === id)).toBe(true)
    await saveScreenshot(page, 'console-keys')

    // Loaded again, the page lists the key but never shows its secret.
    await page.goto(`${origin}/console/keys`)
    expect(await page.locator('#new-key').count()).toBe(0)
    expect(await page.content()).not.toContain(key.split('_')[2])
    expect(await page.locator(`#keys tr[data-key-id="${id}"]`).count()).toBe(1)

    const works = await toolCall(server.url, key, 'read_file', READ_TODO)
    expect(works.status).toBe(200)
    expect(JSON.stringify(works.body)).toContain('try read_file')

    await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.url() === `${origin}/console/keys/revoke`),
      page.locator(`#keys tr[data-key-id="${id}"] button.revoke`).click(),
    ])
    expect(await page.locator(`#keys tr[data-key-id="${id}"] td`).nth(3).textContent()).toBe('revoked')
    expect(await page.locator(`#keys tr[data-key-id="${id}"] button.revoke`).count()).toBe(0)
    const refused = await toolCall(server.url, key, 'read_file', READ_TODO)
    expect(refused.status).toBe(401)
    expect(JSON.stringify(refused.body)).not.toContain('try read_file')
    expect((await linesOf(refused.requestId ?? '')).find((r) => typeof r.decision === 'string')).toMatchObject({ decision: 'deny' })
    expect(watch.problems()).toEqual([])
  })

  it('live tail: a call made while the tail runs appears at the top of the table', async () => {
    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await page.goto(`${origin}/console/audit`)
    const polling = page.waitForRequest((r) => r.url().startsWith(`${origin}/console/api/audit?`) && r.url().includes('wait=1'))
    await page.locator('#live').click()
    expect(await page.locator('#live').getAttribute('aria-pressed')).toBe('true')
    await polling
    const id = requestId('live')
    expect((await toolCall(server.url, server.keys.admin, 'read_file', READ_TODO, id)).status).toBe(200)
    await expect.poll(() => page.locator('#lines tbody tr').first().getAttribute('data-request-id'), { timeout: 10_000 }).toBe(id)
    const top = page.locator('#lines tbody tr').first()
    expect(await top.locator('td').nth(4).textContent()).toBe('allow')
    expect(JSON.parse((await top.locator('pre').textContent()) ?? '{}')).toMatchObject({ requestId: id, tool: 'read_file' })
    await expect.poll(() => page.locator('#live-status').textContent()).toMatch(/^Live: \d+ new line\(s\)$/)
    // The session ends under it (signed out in another tab): the tail says why it paused, in its own words.
    const other = await page.context().newPage()
    await other.goto(`${origin}/console`)
    await other.locator('#signout').click()
    await other.waitForURL(`${origin}/console/signin`)
    await expect.poll(() => page.locator('#live-status').textContent(), { timeout: 10_000 }).toBe('Live tail paused (HTTP 401); retrying')
    // Stopping the tail aborts its pending long poll: that one failed request is expected.
    await page.locator('#live').click()
    expect(await page.locator('#live').getAttribute('aria-pressed')).toBe('false')
    expect(watch.problems([/^request failed: GET .*\/console\/api\/audit\?.*wait=1 \(net::ERR_ABORTED\)$/, /status of 401/])).toEqual([])
  })

  it('limits: the admin principal is listed with its buckets as meters', async () => {
    expect((await toolCall(server.url, server.keys.admin, 'list_files', { path: 'notes' })).status).toBe(200)
    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await page.locator('nav a', { hasText: 'Limits' }).click()
    await page.waitForURL(`${origin}/console/limits`)
    const row = page.locator('#buckets tbody tr', { hasText: principalOf(server.keys.admin) })
    expect(await row.count()).toBe(1)
    const meters = row.locator('meter')
    expect(await meters.count()).toBeGreaterThan(0)
    const m = await meters.first().evaluate((el) => ({ max: Number(el.getAttribute('max')), value: Number(el.getAttribute('value')) }))
    expect(m.max).toBeGreaterThan(0)
    expect(m.value).toBeGreaterThanOrEqual(0)
    expect(m.value).toBeLessThanOrEqual(m.max)
    for (const id of ['#refused', '#alerts', '#alert-rules']) expect(await page.locator(id).count()).toBe(1)
    await saveScreenshot(page, 'console-limits')
    expect(watch.problems()).toEqual([])
  })

  it('a console:read key looks but has no Keys page: no link, and GET /console/keys answers a 403 page', async () => {
    const { page, watch } = await openPage()
    await signIn(page, origin, auditorKey)
    expect(await page.locator('nav a').allTextContents()).toEqual(['Overview', 'Audit', 'Explain', 'Limits'])
    expect(await page.locator('nav .who').textContent()).toBe('auditor (read)')
    const res = await page.goto(`${origin}/console/keys`)
    expect(res?.status()).toBe(403)
    expect(res?.headers()['content-type']).toMatch(/^text\/html/)
    expect(await page.locator('#error').textContent()).toContain('ERR_FORBIDDEN')
    expect(await page.locator('#keys').count()).toBe(0)
    expect((await page.goto(`${origin}/console/audit`))?.status()).toBe(200)
    expect(watch.problems([/^console error: Failed to load resource: the server responded with a status of 403/])).toEqual([])
  })

  it('sign-out ends the session: the console sends the browser to the sign-in page', async () => {
    const { page, watch } = await openPage()
    await signIn(page, origin, server.keys.admin)
    await Promise.all([page.waitForURL(`${origin}/console/signin`), page.locator('#signout').click()])
    expect(await page.locator('form#signin').count()).toBe(1)
    const res = await page.goto(`${origin}/console`)
    expect(new URL(page.url()).pathname).toBe('/console/signin')
    expect(res?.status()).toBe(200)
    expect(await page.locator('#api_key').count()).toBe(1)
    expect(watch.problems()).toEqual([])
  })

  it('readable at 1280×800 and at 390×844: the overview and the audit trail need no sideways scrolling', async () => {
    await argumentDenial()
    for (const viewport of [
      { width: 1280, height: 800 },
      { width: 390, height: 844 },
    ]) {
      const { page, watch } = await openPage(viewport)
      await signIn(page, origin, server.keys.admin)
      if (viewport.width < 500) await saveScreenshot(page, 'console-overview-phone')
      const overview = await overflowOf(page)
      // Soft: every page at every width is measured, and each one too wide is named.
      expect.soft(overview.scrollWidth, `overview at ${viewport.width}px, sticking out: ${overview.out.join('; ')}`).toBeLessThanOrEqual(overview.innerWidth + 1)
      await page.goto(`${origin}/console/audit`)
      expect(await page.locator('#lines tr.line').count()).toBeGreaterThan(0)
      if (viewport.width < 500) await saveScreenshot(page, 'console-audit-phone')
      const audit = await overflowOf(page)
      expect.soft(audit.scrollWidth, `audit at ${viewport.width}px, sticking out: ${audit.out.join('; ')}`).toBeLessThanOrEqual(audit.innerWidth + 1)
      expect(watch.problems()).toEqual([])
    }
  })

  it('the sign-in form works from the keyboard alone: Tab from the top reaches the key, Enter signs in', async () => {
    const { page, watch } = await openPage()
    await page.goto(`${origin}/console/signin`)
    await page.keyboard.press('Tab')
    expect(await page.evaluate<string | undefined>('document.activeElement?.id')).toBe('api_key')
    await page.keyboard.type(server.keys.admin)
    await Promise.all([page.waitForURL(`${origin}/console`), page.keyboard.press('Enter')])
    expect(await page.locator('h1').textContent()).toBe('Overview')
    expect(watch.problems()).toEqual([])
  })
})
