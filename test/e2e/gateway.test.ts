import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Client } from '@modelcontextprotocol/client'
import { jwtVerify } from 'jose'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { type Bastion, type BastionConfigInput, createBastion, type RunningServer } from '../../src/index.js'
import { cli } from '../cli/run.js'
import { connect, type Era } from '../helpers/server.js'
import { ECHO, type HttpUpstream, SERVERS, startHttpUpstream, writeDefs } from '../helpers/upstreams.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The gateway in front of real MCP servers from npm (filesystem, memory, everything, over stdio)
 * and an HTTP fixture that records what it receives, driven with the real MCP client in both eras:
 * every layer applies to upstream tools, the caller's credential never leaves bastion, an upstream
 * that dies fails only its own calls and comes back.
 */

const UPSTREAM_CREDENTIAL = 'upstream-credential-5f0c1a9e7d'
const IDENTITY_SECRET = 'identity-signing-secret-0c8e2b7a51d94f36'
const STDERR_SECRET = 'stderr-secret-9a7c55e1b2'

let dir: string
let data: string
let bastion: Bastion
let running: RunningServer
let http: HttpUpstream
const logLines: string[] = []
const keys: Record<string, string> = {}
const auditPath = (): string => join(dir, '.bastion', 'audit.jsonl')
const audit = (): Record<string, unknown>[] =>
  readFileSync(auditPath(), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)

function upstreams(): NonNullable<BastionConfigInput['upstreams']> {
  const node = process.execPath
  return {
    fs: { command: node, args: [SERVERS.filesystem, data], permissions: ['fs:write'] },
    memory: { command: node, args: [SERVERS.memory], env: { MEMORY_FILE_PATH: { env: 'GW_MEMORY_FILE' } }, permissions: ['memory:use'] },
    drift: {
      command: node,
      args: [SERVERS.drift],
      env: { DRIFT_DEFS: { env: 'GW_DEFS' }, SECRET_TOKEN: { env: 'GW_STDERR_SECRET' } },
      permissions: ['drift:use'],
      maxOpenFiles: 256,
      maxMemoryMb: 128,
    },
    crashy: { command: node, args: [SERVERS.drift], env: { DRIFT_DEFS: { env: 'GW_CRASHY_DEFS' }, DRIFT_COUNTER: { env: 'GW_COUNTER' } }, permissions: ['drift:use'] },
    everything: { command: node, args: [SERVERS.everything], pin: 'off', permissions: ['drift:use'] },
    remote: {
      url: http.url,
      headers: { Authorization: { env: 'GW_UPSTREAM_AUTH' } },
      forwardIdentity: { header: 'X-Bastion-Identity', secret: { env: 'GW_IDENTITY' } },
      permissions: ['drift:use'],
    },
  }
}

beforeAll(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-gateway-')))
  data = join(dir, 'data')
  mkdirSync(data)
  writeFileSync(join(data, 'hello.txt'), 'hello from the filesystem server\n')
  writeFileSync(join(data, 'secret-plans.txt'), 'not for readers\n')
  writeDefs(join(dir, 'defs.json'), [
    ECHO,
    { ...ECHO, name: 'whoami', description: 'Who the process is.', inputSchema: { type: 'object', properties: {} } },
    { name: 'slow', description: 'Waits ms milliseconds.', inputSchema: { type: 'object', properties: { ms: { type: 'number' } } } },
    {
      name: 'structured',
      description: 'Returns the value it is given as its structured content.',
      inputSchema: { type: 'object', properties: { value: {} } },
      outputSchema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] },
    },
  ])
  writeDefs(join(dir, 'crashy.json'), [ECHO, { ...ECHO, name: 'crash', description: 'Exits mid-call.', inputSchema: { type: 'object', properties: {} } }])
  http = await startHttpUpstream({ MODE: 'normal', RECORD_FILE: join(dir, 'records.jsonl'), REQUIRE_BEARER: UPSTREAM_CREDENTIAL })
  Object.assign(process.env, {
    GW_MEMORY_FILE: join(dir, 'memory.jsonl'),
    GW_DEFS: join(dir, 'defs.json'),
    GW_CRASHY_DEFS: join(dir, 'crashy.json'),
    GW_COUNTER: join(dir, 'starts.txt'),
    GW_UPSTREAM_AUTH: `Bearer ${UPSTREAM_CREDENTIAL}`,
    GW_IDENTITY: IDENTITY_SECRET,
    GW_STDERR_SECRET: STDERR_SECRET,
    // Bastion's own environment: no upstream process may see it.
    BASTION_GATEWAY_LEAK_CHECK: 'must-not-reach-an-upstream',
  })
  // Pinned with the CLI, as an operator would (everything runs unpinned: pin: off).
  writeFileSync(join(dir, 'bastion.yaml'), stringify({ upstreams: upstreams() }))
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('GW_'))) as Record<string, string>
  const pinned = cli(dir, ['upstreams', 'pin', 'fs', 'memory', 'drift', 'crashy', 'remote', '--config', 'bastion.yaml'], env)
  expect(pinned.stderr).toBe('')
  expect(pinned.status).toBe(0)
  bastion = await createBastion({
    baseDir: dir,
    announce: false,
    logger: pino({ level: 'info' }, { write: (line: string) => logLines.push(line) }),
    config: {
      upstreams: upstreams(),
      roles: {
        admin: { permissions: ['*'] },
        reader: { permissions: ['fs:read'] },
        writer: { permissions: ['fs:write', 'memory:use', 'drift:use'] },
        nobody: { permissions: [] },
      },
      // The reader may read and list, nothing else; the writer everything the fs upstream offers.
      tools: { fs__read_text_file: { permissions: ['fs:read', 'fs:write'] }, fs__list_directory: { permissions: ['fs:read', 'fs:write'] } },
      policy: {
        rules: [
          // Typed against the upstream tool's pinned JSON Schema: `path` is a string there.
          { id: 'no-secret-files', effect: 'deny', subjects: '*', targets: { tools: ['fs__read_text_file'] }, when: 'args.path.contains("secret")' },
        ],
      },
      alerts: { rules: [] },
      auth: { reloadIntervalMs: 0 },
    },
  })
  running = await bastion.listen({ host: '127.0.0.1', port: 0 })
  for (const role of ['admin', 'reader', 'writer', 'nobody']) keys[role] = bastion.keys.create({ name: role, roles: [role], expiresAt: null }).key
}, 60_000)

afterAll(async () => {
  await bastion?.close()
  await http?.stop()
})

async function client(role: string, era: Era = 'legacy'): Promise<Client> {
  return connect(running.url, era, { authorization: `Bearer ${keys[role]}` })
}

const textOf = (r: { content?: unknown }): string => ((r.content as { type: string; text?: string }[] | undefined) ?? []).map((c) => c.text ?? '').join('')

describe('gateway: upstream tools behind every layer', () => {
  for (const era of ['legacy', 'modern'] as const) {
    it(`lists each role only the upstream tools it may call (${era})`, async () => {
      const names = async (role: string): Promise<string[]> => {
        const c = await client(role, era)
        try {
          return (await c.listTools()).tools.map((t) => t.name).sort()
        } finally {
          await c.close()
        }
      }
      const admin = await names('admin')
      expect(admin).toEqual(
        expect.arrayContaining(['fs__read_text_file', 'fs__write_file', 'memory__read_graph', 'drift__echo', 'crashy__crash', 'everything__echo', 'remote__echo']),
      )
      expect(admin.filter((n) => n.startsWith('fs__'))).toHaveLength(14)
      expect(await names('reader')).toStrictEqual(['fs__list_directory', 'fs__read_text_file'])
      expect(await names('nobody')).toStrictEqual([])
      // The demo tools do not join a gateway's own.
      expect(admin).not.toContain('read_file')
    })
  }

  it('serves the pinned definitions as pinned: schemas, annotations, the upstream name prefixed', async () => {
    const c = await client('admin')
    try {
      const { tools } = await c.listTools()
      const write = tools.find((t) => t.name === 'fs__write_file')
      expect(write?.annotations?.destructiveHint).toBe(true)
      expect(write?.inputSchema.properties).toHaveProperty('path')
      expect(write?.outputSchema).toBeDefined()
      const lock = JSON.parse(readFileSync(join(dir, 'bastion.lock.json'), 'utf8'))
      expect(write?.inputSchema).toStrictEqual(lock.upstreams.fs.tools.write_file.definition.inputSchema)
    } finally {
      await c.close()
    }
  })

  it('reads through the real filesystem server for a reader; refuses its writes and a path the policy denies', async () => {
    const c = await client('reader', 'modern')
    try {
      const read = await c.callTool({ name: 'fs__read_text_file', arguments: { path: join(data, 'hello.txt') } })
      expect(read.isError).not.toBe(true)
      expect(textOf(read)).toContain('hello from the filesystem server')
      await expect(c.callTool({ name: 'fs__write_file', arguments: { path: join(data, 'x.txt'), content: 'x' } })).rejects.toThrow()
      await expect(c.callTool({ name: 'fs__read_text_file', arguments: { path: join(data, 'secret-plans.txt') } })).rejects.toThrow()
    } finally {
      await c.close()
    }
    const lines = audit().slice(-3)
    expect(lines.map((l) => [l.tool, l.reason, l.upstream])).toStrictEqual([
      ['fs__read_text_file', 'OK', 'fs'],
      ['fs__write_file', 'ERR_FORBIDDEN', 'fs'],
      ['fs__read_text_file', 'ERR_FORBIDDEN', 'fs'],
    ])
    expect(lines[2]?.rule).toBe('no-secret-files')
    expect(existsSync(join(data, 'x.txt'))).toBe(false)
  })

  it('validates arguments against the pinned schema before anything leaves bastion', async () => {
    const c = await client('writer')
    try {
      const r = await c.callTool({ name: 'drift__echo', arguments: { text: 'x'.repeat(101) } })
      expect(r.isError).toBe(true)
      expect(textOf(r)).toContain('invalid arguments: text: at most 100 characters')
      const unknown = await c.callTool({ name: 'drift__echo', arguments: { text: 'hi', extra: 1 } })
      expect(textOf(unknown)).toContain('extra: an unknown key')
      const ok = await c.callTool({ name: 'drift__echo', arguments: { text: 'hi' } })
      expect(textOf(ok)).toBe('{"text":"hi"}')
    } finally {
      await c.close()
    }
  })

  it('refuses an upstream result that breaks its own output schema, never forwarding it', async () => {
    const c = await client('writer')
    try {
      const good = await c.callTool({ name: 'drift__structured', arguments: { value: { n: 1 } } })
      expect(good.structuredContent).toStrictEqual({ n: 1 })
      const bad = await c.callTool({ name: 'drift__structured', arguments: { value: { n: 'not a number' } } })
      expect(bad.isError).toBe(true)
      expect(textOf(bad)).toContain('tool failed: the upstream server answered outside its declared schema')
      expect(JSON.stringify(bad)).not.toContain('not a number')
    } finally {
      await c.close()
    }
    expect(audit().at(-1)).toMatchObject({ tool: 'drift__structured', reason: 'ERR_TOOL_FAILED', upstream: 'drift' })
  })

  it('cancels the upstream call when the client cancels, and records it', async () => {
    const c = await client('writer', 'modern')
    const started = Date.now()
    try {
      const cancel = new AbortController()
      setTimeout(() => cancel.abort(), 200)
      await expect(c.callTool({ name: 'drift__slow', arguments: { ms: 20_000 } }, { signal: cancel.signal })).rejects.toThrow()
    } finally {
      await c.close()
    }
    const line = await waitFor(() => audit().find((l) => l.tool === 'drift__slow'), { what: 'the cancelled call audited' })
    expect(line).toMatchObject({ reason: 'ERR_CANCELLED', upstream: 'drift' })
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it("asks for the user's confirmation before a destructive upstream tool runs", async () => {
    const c = await client('writer')
    try {
      const r = await c.callTool({ name: 'fs__write_file', arguments: { path: join(data, 'created.txt'), content: 'new' } })
      expect(r.isError).toBe(true)
      expect(textOf(r)).toContain("this operation needs the user's confirmation")
    } finally {
      await c.close()
    }
    expect(existsSync(join(data, 'created.txt'))).toBe(false)
    expect(audit().at(-1)).toMatchObject({ tool: 'fs__write_file', reason: 'ERR_CONFIRMATION_REQUIRED', upstream: 'fs' })
  })

  it("never sends the caller's credential upstream: bastion's own, and a signed identity", async () => {
    const before = http.records().length
    const c = await client('writer')
    try {
      const r = await c.callTool({ name: 'remote__headers', arguments: {} })
      expect(r.isError).not.toBe(true)
    } finally {
      await c.close()
    }
    const records = http.records().slice(before)
    expect(records.length).toBeGreaterThan(0)
    for (const rec of records) {
      expect(rec.headers.authorization).toBe(`Bearer ${UPSTREAM_CREDENTIAL}`)
      expect(JSON.stringify(rec)).not.toContain(keys.writer?.slice(21) as string)
    }
    const call = records.find((r) => r.rpcMethod === 'tools/call')
    const identity = call?.headers['x-bastion-identity'] as string
    const { payload } = await jwtVerify(identity, new TextEncoder().encode(IDENTITY_SECRET), { issuer: 'mcp-bastion', audience: 'remote' })
    expect(payload.sub).toMatch(/^key:[0-9a-f]{16}$/)
    expect(payload.roles).toStrictEqual(['writer'])
  })

  it('gives an upstream process only PATH, LANG, HOME and its configured variables', async () => {
    const c = await client('writer')
    try {
      const r = await c.callTool({ name: 'drift__whoami', arguments: {} })
      const who = JSON.parse(textOf(r)) as { env: Record<string, string> }
      expect(who.env.SECRET_TOKEN).toBe(STDERR_SECRET)
      expect(Object.keys(who.env).filter((k) => k.startsWith('BASTION_'))).toStrictEqual([])
      expect(Object.keys(who.env).every((k) => ['PATH', 'LANG', 'HOME', 'SECRET_TOKEN'].includes(k))).toBe(true)
    } finally {
      await c.close()
    }
  })

  it('caps an upstream process: open files (RLIMIT_NOFILE, by prlimit) and the V8 heap', () => {
    const pid = bastion.gateway?.report().find((u) => u.name === 'drift')?.pid
    expect(pid).toBeTypeOf('number')
    expect(readFileSync(`/proc/${pid}/limits`, 'utf8')).toMatch(/Max open files\s+256\s+256/)
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain('NODE_OPTIONS=--max-old-space-size=128')
  })

  it('logs what an upstream writes to stderr, with the secrets it was given redacted', async () => {
    await waitFor(() => logLines.some((l) => l.includes('"upstream":"drift"') && l.includes('SECRET_TOKEN=')), { what: 'the drift upstream stderr line' })
    const stderr = logLines.filter((l) => l.includes('upstream stderr'))
    expect(stderr.join('\n')).not.toContain(STDERR_SECRET)
    expect(stderr.find((l) => l.includes('SECRET_TOKEN='))).toContain('SECRET_TOKEN=[REDACTED]')
  })

  it('audits every upstream call in exactly one line that names its upstream', async () => {
    const start = audit().length
    const c = await client('writer', 'modern')
    try {
      await c.callTool({ name: 'memory__create_entities', arguments: { entities: [{ name: 'gw', entityType: 'test', observations: ['seen'] }] } })
      await c.callTool({ name: 'memory__read_graph', arguments: {} })
      await c.callTool({ name: 'everything__echo', arguments: { message: 'hi' } })
      await c.callTool({ name: 'remote__echo', arguments: { text: 'hi' } })
    } finally {
      await c.close()
    }
    const calls = audit()
      .slice(start)
      .filter((l) => l.event === 'tool.call')
    expect(calls.map((l) => [l.tool, l.upstream, l.reason])).toStrictEqual([
      ['memory__create_entities', 'memory', 'OK'],
      ['memory__read_graph', 'memory', 'OK'],
      ['everything__echo', 'everything', 'OK'],
      ['remote__echo', 'remote', 'OK'],
    ])
    expect(new Set(calls.map((l) => l.requestId)).size).toBe(4)
    expect(readFileSync(join(dir, 'memory.jsonl'), 'utf8')).toContain('"gw"')
  })

  it('fails the call of an upstream that dies mid-call, keeps serving the others, and restarts it', async () => {
    const c = await client('writer')
    try {
      const r = await c.callTool({ name: 'crashy__crash', arguments: {} })
      expect(r.isError).toBe(true)
      expect(textOf(r)).toContain('the server behind this tool is unavailable')
      const other = await c.callTool({ name: 'memory__read_graph', arguments: {} })
      expect(other.isError).not.toBe(true)
      await waitFor(
        async () => {
          const again = await c.callTool({ name: 'crashy__echo', arguments: { text: 'back' } })
          return again.isError !== true && textOf(again) === '{"text":"back"}'
        },
        { what: 'the crashed upstream restarted', timeoutMs: 10_000, intervalMs: 100 },
      )
    } finally {
      await c.close()
    }
    expect(readFileSync(join(dir, 'starts.txt'), 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(2)
    const events = audit().map((l) => l.event)
    expect(events).toContain('upstream.down')
    expect(events).toContain('upstream.restart')
  })

  it('says on /healthz which upstreams are up, naming nothing else', async () => {
    const body = (await (await fetch(new URL('/healthz', running.url))).json()) as { status: string; upstreams: Record<string, string> }
    expect(Object.keys(body.upstreams).sort()).toStrictEqual(['crashy', 'drift', 'everything', 'fs', 'memory', 'remote'])
    expect(Object.values(body.upstreams).every((s) => ['up', 'down', 'starting', 'failed'].includes(s))).toBe(true)
  })
})
