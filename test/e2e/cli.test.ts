import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Client } from '@modelcontextprotocol/client'
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio'
import { afterEach, describe, expect, it } from 'vitest'
import { post } from '../helpers/server.js'

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
function serve(cwd: string, args: string[]): Promise<{ out: string; url: string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
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
    expect(cli(dir, ['config', 'check', 'bastion.yaml']).status).toBe(0)
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
