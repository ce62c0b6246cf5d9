import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../helpers/processes.js'
import { startEverythingHttp } from '../helpers/upstreams.js'

const BIN = resolve('dist/cli/main.js')
let child: ChildProcess | undefined
let dir: string
let url: string
let key: string
let everything: { url: string; stop(): Promise<void> } | undefined

beforeAll(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-call-')))
  const serving = spawn(process.execPath, [BIN, 'serve', '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  child = serving
  ;({ url, key } = await new Promise<{ url: string; key: string }>((ok, reject) => {
    let out = ''
    serving.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const u = /listening on (\S+)/.exec(out)?.[1]
      const k = /(bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43})/.exec(out)?.[1]
      if (u !== undefined && k !== undefined) ok({ url: u, key: k })
    })
    serving.on('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)))
  }))
  everything = await startEverythingHttp()
}, 60_000)

afterAll(async () => {
  child?.kill('SIGKILL')
  await everything?.stop()
})

function cli(args: string[], env: Record<string, string> = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, 'call', ...args], { cwd: dir, env: { ...process.env, MCP_API_KEY: '', ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      done({ status: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr })
    })
  })
}

describe('mcp-bastion call, against bastion', () => {
  it('calls a tool and prints what it returned (the README command)', async () => {
    const r = await cli([url, '--key', key, '--tool', 'read_file', '--arg', 'path=notes/todo.txt'])
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('try read_file on notes/todo.txt')
  })

  it('lists tools by default; the key may come from a file or $MCP_API_KEY', async () => {
    writeFileSync(join(dir, 'admin.key'), `${key}\n`)
    for (const r of [await cli([url, '--key-file', 'admin.key']), await cli([url], { MCP_API_KEY: key })]) {
      expect(r.status).toBe(0)
      expect(r.stdout).toMatch(/^read_file {2}Read a file from the workspace/m)
    }
  })

  it('negotiates either era, or the one asked for', async () => {
    for (const [era, version] of [
      ['auto', '2026-07-28'],
      ['modern', '2026-07-28'],
      ['legacy', '2025-11-25'],
    ] as const) {
      const r = await cli([url, '--key', key, '--era', era, '--tool', 'list_files', '--json'])
      expect(r.status).toBe(0)
      const out = JSON.parse(r.stdout) as { ok: boolean; era: string; result: { content: { text: string }[] } }
      expect(out).toMatchObject({ ok: true, era: version })
      expect(JSON.parse(out.result.content[0]?.text ?? '')).toMatchObject({ path: '.' })
    }
  })

  it('prints a refusal plainly: the code, the text, the HTTP status and the request id, exit 1', async () => {
    const bad = await cli([url, '--key', `bst_0123456789abcdef_${'A'.repeat(43)}`])
    expect(bad.status).toBe(1)
    expect(bad.stdout).toBe('')
    expect(bad.stderr).toMatch(/^mcp-bastion call: ERR_AUTH_INVALID \(-31401\), HTTP 401: invalid credentials \(request id [0-9a-f-]{36}\)\n$/)
    const none = await cli([url])
    expect(none.stderr).toMatch(/ERR_AUTH_MISSING \(-31401\), HTTP 401/)
    const unknown = await cli([url, '--key', key, '--tool', 'no_such_tool'])
    expect(unknown.stderr).toMatch(/^mcp-bastion call: ERR_TOOL_NOT_FOUND \(-32602\): unknown tool \(request id [0-9a-f-]{36}\)\n$/)
    const traversal = await cli([url, '--key', key, '--tool', 'read_file', '--arg', 'path=../../etc/passwd'])
    expect(traversal.status).toBe(1)
    expect(traversal.stderr).toMatch(/^mcp-bastion call: tool error ERR_PATH_FORBIDDEN: .*\(request id [0-9a-f-]{36}\)\n$/)
    expect(traversal.stdout).toBe('')
  })

  it('--arg NAME:=JSON sends a typed value; a type the schema refuses is the tool error it is', async () => {
    const r = await cli([url, '--key', key, '--tool', 'read_file', '--arg', 'path:=42'])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/tool error ERR_VALIDATION: invalid arguments: path: expected string/)
  })

  it('obtains a token by client credentials first (the token service: the key id and the key)', async () => {
    const tokenUrl = `${new URL(url).origin}/oauth/token`
    const r = await cli([url, '--client-credentials', `${key.slice(4, 20)}:${key}@${tokenUrl}`, '--tool', 'read_file', '--arg', 'path=notes/todo.txt'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain('try read_file on notes/todo.txt')
    const env = await cli([url, '--client-credentials', `${key.slice(4, 20)}@${tokenUrl}`], { MCP_CLIENT_SECRET: key })
    expect(env.status).toBe(0)
    const wrong = await cli([url, '--client-credentials', `${key.slice(4, 20)}:bst_wrong@${tokenUrl}`])
    expect(wrong.status).toBe(1)
    expect(wrong.stderr).toMatch(/the token endpoint refused the client: HTTP 401/)
  })

  it('usage mistakes exit 2 with the usage, sending nothing', async () => {
    for (const args of [
      [url, 'tools/call'],
      [url, 'ping'],
      ['not a url'],
      [url, '--arg', 'novalue'],
      [url, '--key', key, '--key-file', 'admin.key'],
      [url, '--client-credentials', 'x:y@http://10.0.0.1/token'],
    ]) {
      const r = await cli(args)
      expect(r.status, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(/^mcp-bastion call: /)
    }
  })

  it('a server that is not there is one line, exit 1', async () => {
    const r = await cli([`http://127.0.0.1:${await freePort()}/mcp`, '--key', key])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^mcp-bastion call: error 0: cannot connect \(ECONNREFUSED\)\n$/)
  })
})

describe('mcp-bastion call, against a third-party server (the everything server from npm)', () => {
  it('lists its tools and calls one, in the era it speaks', async () => {
    const list = await cli([everything?.url ?? '', '--json'])
    expect(list.status).toBe(0)
    const listed = JSON.parse(list.stdout) as { era: string; result: { tools: { name: string }[] } }
    expect(listed.result.tools.map((t) => t.name)).toContain('echo')
    const echo = await cli([everything?.url ?? '', '--tool', 'echo', '--arg', 'message=hello from the shell'])
    expect(echo.stderr).toBe('')
    expect(echo.stdout).toContain('hello from the shell')
  })
})
