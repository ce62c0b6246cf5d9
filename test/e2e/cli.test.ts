import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Client } from '@modelcontextprotocol/client'
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio'
import { afterEach, describe, expect, it } from 'vitest'
import { freePort } from '../helpers/processes.js'
import { MODERN_META, modernHeaders, post, rpcBody } from '../helpers/server.js'

const BIN = resolve('dist/cli/main.js')
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
})

function tempDir(): string {
  return realpathSync(mkdtempSync(join(tmpdir(), 'bastion-cli-')))
}

function cli(cwd: string, args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { ...process.env, ...env } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Start `serve` and resolve with its stdout once it listens. */
function serve(cwd: string, args: string[], env: Record<string, string> = {}): Promise<{ out: string; url: string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  children.push(child)
  return new Promise((resolveStart, reject) => {
    let out = ''
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /listening on (\S+)/.exec(out)
      if (m?.[1] !== undefined) resolveStart({ out, url: m[1] })
    })
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)))
  })
}

describe('mcp-bastion CLI', () => {
  it('first run prints an admin key once; a later start reuses state and prints none', async () => {
    const dir = tempDir()
    const first = await serve(dir, [])
    const key = /(bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43})/.exec(first.out)?.[1] ?? ''
    expect(key).not.toBe('')
    const stored = readFileSync(join(dir, '.bastion', 'keys.json'), 'utf8')
    expect(stored).not.toContain(key.slice(21))
    expect((await post(first.url, { jsonrpc: '2.0', id: 1, method: 'ping' })).status).toBe(401)
    children.pop()?.kill('SIGKILL')
    const second = await serve(dir, [])
    expect(second.out).not.toMatch(/bst_/)
    const ok = await post(
      second.url,
      { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } } },
      { authorization: `Bearer ${key}` },
    )
    expect(ok.status).toBe(200)
  })

  it('keys create / list / revoke', () => {
    const dir = tempDir()
    const created = cli(dir, ['keys', 'create', '--role', 'reader', '--name', 'ci', '--expires', '30d'])
    expect(created.status).toBe(0)
    const key = created.stdout.trim()
    expect(key).toMatch(/^bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    const id = key.slice(4, 20)
    const list = cli(dir, ['keys', 'list'])
    expect(list.stdout).toContain(id)
    expect(list.stdout).toContain('active')
    expect(list.stdout).not.toContain(key.slice(21))
    expect(cli(dir, ['keys', 'revoke', id]).status).toBe(0)
    expect(cli(dir, ['keys', 'list']).stdout).toMatch(new RegExp(`${id}\\s+revoked`))
    expect(cli(dir, ['keys', 'create', '--role', 'wizard']).stderr).toContain('role "wizard" is not defined')
    const audit = readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
    expect(audit).toContain('"event":"key.created"')
    expect(audit).toContain('"event":"key.revoked"')
    expect(audit).not.toContain(key.slice(21))
  })

  it('config check names the bad key path; a missing env var stops start-up naming it', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'typo.yaml'), 'server:\n  prot: 8080\n')
    const typo = cli(dir, ['config', 'check', 'typo.yaml'])
    expect(typo.status).toBe(2)
    expect(typo.stderr).toContain('server: unknown key "prot"')
    writeFileSync(join(dir, 'bastion.yaml'), 'auth:\n  keys:\n    - name: ci\n      roles: [reader]\n      key: { env: CI_BASTION_KEY }\n')
    expect(cli(dir, ['config', 'check', 'bastion.yaml'], { CI_BASTION_KEY: 'x'.repeat(40) }).status).toBe(0)
    const unset = cli(dir, ['config', 'check', 'bastion.yaml'], { CI_BASTION_KEY: '' })
    expect(unset.status).toBe(1)
    expect(unset.stdout).toContain('missing: auth.keys.0.key: environment variable CI_BASTION_KEY is not set')
    expect(cli(dir, ['config', 'check', 'bastion.yaml', '--no-env'], { CI_BASTION_KEY: '' }).status).toBe(0)
    const missing = cli(dir, ['serve', '--port', '0'], { CI_BASTION_KEY: '' })
    expect(missing.status).toBe(2)
    expect(missing.stderr).toContain('auth.keys.0.key: environment variable CI_BASTION_KEY is not set')
  })

  it('refuses a non-loopback bind without TLS', () => {
    const dir = tempDir()
    const r = cli(dir, ['serve', '--host', '0.0.0.0', '--port', '0'])
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('refusing to serve credentials in plaintext')
  })

  it('serves HTTPS with TLS 1.2 minimum when tls is configured', async () => {
    const dir = tempDir()
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=localhost'],
      { cwd: dir, stdio: 'ignore' },
    )
    writeFileSync(join(dir, 'bastion.yaml'), 'server:\n  tls:\n    cert: { file: cert.pem }\n    key: { file: key.pem }\n')
    const { url } = await serve(dir, [])
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/mcp$/)
    const port = new URL(url).port
    const tls11 = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_1'], { input: '', encoding: 'utf8', timeout: 10_000 })
    expect(tls11.status).not.toBe(0)
    const tls12 = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2'], { input: '', encoding: 'utf8', timeout: 10_000 })
    expect(tls12.stdout).toContain('TLSv1.2')
  })
})

const TOOLS_LIST = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: MODERN_META } }

/** tools/list at a printed URL: without a key the refusal code, with one the status. */
async function answers(url: string, key: string): Promise<{ anonymous: { status: number; code: unknown }; withKey: number }> {
  const anonymous = await post(url, TOOLS_LIST)
  const body = await rpcBody(anonymous)
  const code = (body.error as { data?: { code?: unknown } } | undefined)?.data?.code
  const withKey = await post(url, TOOLS_LIST, { ...modernHeaders('tools/list'), authorization: `Bearer ${key}` })
  return { anonymous: { status: anonymous.status, code }, withKey: withKey.status }
}

const firstKey = (out: string): string => /(bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43})/.exec(out)?.[1] ?? ''

describe('serve answers the URL it prints', () => {
  it('--host 0.0.0.0 (dangerouslyAllowPlaintext): the URL names loopback, and is answered 401 without a key, 200 with one', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), 'server:\n  dangerouslyAllowPlaintext: true\n')
    const { out, url } = await serve(dir, ['--host', '0.0.0.0'])
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/)
    expect(await answers(url, firstKey(out))).toStrictEqual({ anonymous: { status: 401, code: 'ERR_AUTH_MISSING' }, withKey: 200 })
  })

  it.each([
    { name: '--host', args: ['--host', '127.0.0.2'], env: {} },
    { name: '$BASTION_HOST', args: [], env: { BASTION_HOST: '127.0.0.2' } },
  ])('config says 127.0.0.1, $name says 127.0.0.2: the printed 127.0.0.2 URL is answered, not 403', async ({ args, env }) => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), 'server:\n  host: 127.0.0.1\n')
    const { out, url } = await serve(dir, args, env)
    expect(url).toMatch(/^http:\/\/127\.0\.0\.2:\d+\/mcp$/)
    expect(await answers(url, firstKey(out))).toStrictEqual({ anonymous: { status: 401, code: 'ERR_AUTH_MISSING' }, withKey: 200 })
  })
})

describe('offline commands create nothing and connect nowhere', () => {
  /** A TCP listener standing in for Redis: it only counts connections. */
  async function sentinel(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
    let count = 0
    const sockets: Socket[] = []
    const server = createServer((socket) => {
      count += 1
      sockets.push(socket)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const address = server.address()
    return {
      port: typeof address === 'object' && address !== null ? address.port : 0,
      connections: () => count,
      close: () =>
        new Promise((r) => {
          for (const s of sockets) s.destroy()
          server.close(() => r())
        }),
    }
  }

  it('policy explain and check in an empty folder, with the embedded default: the folder stays empty', () => {
    const dir = tempDir()
    const explain = cli(dir, ['policy', 'explain', '--role', 'reader', '--tool', 'read_file', '--args', '{"path":"notes/todo.txt"}'])
    expect(explain.stderr).toBe('')
    expect(explain.stdout).toMatch(/^allow by role:reader\/files:read \(policy [0-9a-f]{16}\)\n/)
    expect(readdirSync(dir)).toStrictEqual([])
  })

  it.each([
    { name: 'a closed port', listening: false },
    { name: 'a listener that counts connections', listening: true },
  ])('limits.backend redis at $name: policy explain, policy check and config check answer without a connection or a state file', async ({ listening }) => {
    const cwd = tempDir()
    const confDir = tempDir()
    const redis = listening ? await sentinel() : undefined
    const port = redis?.port ?? (await freePort())
    try {
      const config = join(confDir, 'bastion.yaml')
      writeFileSync(
        config,
        `limits:\n  backend: redis\n  redis: { url: { env: REDIS_URL } }\nauth:\n  tokenService: { enabled: true, store: redis, redis: { url: { env: REDIS_URL } } }\n`,
      )
      mkdirSync(join(confDir, 'candidates'))
      writeFileSync(
        join(confDir, 'candidates', 'p.yaml'),
        'rules:\n  - id: notes\n    effect: allow\n    subjects: "*"\n    targets: { tools: [read_file] }\n    when: args.path.startsWith("notes/")\n',
      )
      const env = { REDIS_URL: `redis://127.0.0.1:${port}` }
      const explain = cli(cwd, ['policy', 'explain', '--config', config, '--role', 'admin', '--tool', 'query', '--args', '{"table":"customers"}'], env)
      expect(explain.stdout).toMatch(/^allow by role:admin\/\*/)
      expect(explain.status).toBe(0)
      const check = cli(cwd, ['policy', 'check', join(confDir, 'candidates', 'p.yaml'), '--config', config], env)
      expect(check.stdout).toMatch(/p\.yaml: OK \(policy [0-9a-f]{16}, \d+ rules with the role rules\)/)
      const configCheck = cli(cwd, ['config', 'check', config], env)
      expect(configCheck.stdout).toMatch(/bastion\.yaml: OK \(3 roles, 0 configured keys, \d+ tools; secret references: 2 of 2 resolved\)/)
      expect(readdirSync(cwd)).toStrictEqual([])
      expect(readdirSync(confDir).sort()).toStrictEqual(['bastion.yaml', 'candidates'])
      expect(readdirSync(join(confDir, 'candidates'))).toStrictEqual(['p.yaml'])
      expect(redis?.connections() ?? 0).toBe(0)
    } finally {
      await redis?.close()
    }
  })

  it('config check binds against the built-in tools: a tool name that does not exist is an error naming the key', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'typo.yaml'), 'tools:\n  read_fil: { permissions: [files:read] }\n')
    const typo = cli(dir, ['config', 'check', 'typo.yaml'])
    expect(typo.status).toBe(2)
    expect(typo.stderr).toContain('tools.read_fil: no tool named "read_fil" is registered')
    expect(readdirSync(dir)).toStrictEqual(['typo.yaml'])
  })
})

describe('stdio mode', () => {
  it('the principal comes from MCP_API_KEY; same tools, same audit trail', async () => {
    const dir = tempDir()
    const key = cli(dir, ['keys', 'create', '--role', 'reader']).stdout.trim()
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [BIN, 'serve', '--stdio'],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', MCP_API_KEY: key },
      stderr: 'pipe',
    })
    const client = new Client({ name: 'stdio-test', version: '1' })
    await client.connect(transport)
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name)).toEqual(['list_files', 'read_file'])
    const result = await client.callTool({ name: 'read_file', arguments: { path: '../../etc/passwd' } })
    expect(result.isError).toBe(true)
    await client.close()
    const lines = readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines).toContainEqual(expect.objectContaining({ event: 'auth.success', transport: 'stdio' }))
    expect(lines).toContainEqual(expect.objectContaining({ event: 'tool.call', transport: 'stdio', reason: 'ERR_PATH_FORBIDDEN' }))
    // The list is audited with the policy version that filtered it.
    expect(lines).toContainEqual(expect.objectContaining({ method: 'tools/list', transport: 'stdio', policy: expect.any(String) }))
  })

  it('every stdio message is rate limited (initialize and its notification take two of four tokens): a JSON-RPC error with data.retryAfterMs, audited with the bucket', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), "limits:\n  roles:\n    reader: { rate: '4/hour' }\n")
    const key = cli(dir, ['keys', 'create', '--role', 'reader', '--config', 'bastion.yaml']).stdout.trim()
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [BIN, 'serve', '--stdio', '--config', 'bastion.yaml'],
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', MCP_API_KEY: key },
      stderr: 'pipe',
    })
    const client = new Client({ name: 'stdio-test', version: '1' })
    await client.connect(transport)
    for (let i = 0; i < 2; i++) expect((await client.callTool({ name: 'list_files', arguments: {} })).isError ?? false).toBe(false)
    const refused = await client.callTool({ name: 'list_files', arguments: {} }).then(
      () => undefined,
      (error: unknown) => error as { code: number; data: { code: string; retryAfterMs: number } },
    )
    await client.close()
    expect(refused?.code).toBe(-31429)
    expect(refused?.data.code).toBe('ERR_RATE_LIMITED')
    expect(refused?.data.retryAfterMs).toBeGreaterThan(14 * 60_000)
    const lines = readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.find((l) => l.event === 'limit.exceeded')).toMatchObject({ transport: 'stdio', tool: 'list_files', reason: 'ERR_RATE_LIMITED', bucket: 'role:reader' })
    // The writer closed its hash chain on the way out.
    expect(lines.at(-1)).toMatchObject({ event: 'audit.closed' })
  })

  it('refuses to start without a valid MCP_API_KEY', () => {
    const dir = tempDir()
    expect(cli(dir, ['serve', '--stdio'], { MCP_API_KEY: '' }).stderr).toContain('MCP_API_KEY is not set')
    const bad = cli(dir, ['serve', '--stdio'], { MCP_API_KEY: `bst_0123456789abcdef_${'x'.repeat(43)}` })
    expect(bad.status).toBe(1)
    expect(bad.stderr).toContain('refused: ERR_AUTH_INVALID')
  })
})
