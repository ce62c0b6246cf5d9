import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import pg from 'pg'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { KeyStore } from '../../src/auth/key-store.js'
import { type SecurityErrorCode, WIRE } from '../../src/errors.js'
import { createBastion } from '../../src/index.js'
import { serveStdioTransport } from '../../src/transport/stdio.js'
import { freePort } from '../helpers/processes.js'
import { MODERN_META } from '../helpers/server.js'
import { PG_ADMIN_URL } from '../helpers/sql.js'
import { initializeStdio, type RawStdio, rawOver, spawnStdio } from '../helpers/stdio-raw.js'
import { waitFor } from '../helpers/wait.js'
import { SwitchableSink } from '../helpers/wire-server.js'
import { type AuditLine, coverageGaps, expectRow, NOT_REACHABLE, type RpcMessage, type Seen } from '../helpers/wire-table.js'
import { type WireUpstreams, wireUpstreams } from '../helpers/wire-upstreams.js'

/**
 * Pins what leaves the process over stdio: the built CLI (`mcp-bastion serve --stdio`, principal
 * from MCP_API_KEY) is driven into every refusal a pipe can carry, and the line it writes and the
 * audit line are read back. Rows only a library user can set up (a resource, a tool that asks for
 * input, an isolated tool) are driven through the same stdio transport served in this process.
 */

const FIXTURES = new URL('../fixtures/isolated-tools.mjs', import.meta.url)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Whether the CLI behind `p` has a `/bin/sleep <secs>` child running (the `nap` command). */
function napping(p: Peer, secs: number): boolean {
  if (p.raw.pid === undefined) throw new Error('not a child process')
  return spawnSync('/usr/bin/pgrep', ['-P', String(p.raw.pid), '-f', `^/bin/sleep ${secs}$`]).status === 0
}

/** One stdio server and where its audit lines are. */
interface Peer {
  readonly raw: RawStdio
  readonly dir: string
  audit(): Promise<AuditLine[]>
  nextId(): number
}

function cliState(config: Record<string, unknown>, roles: string[]): { dir: string; key: string; keysFile: string } {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-wire-stdio-')))
  mkdirSync(join(dir, '.bastion'), { mode: 0o700 })
  writeFileSync(join(dir, 'bastion.yaml'), JSON.stringify({ auth: { reloadIntervalMs: 0 }, alerts: { rules: [] }, ...config }))
  const keysFile = join(dir, '.bastion', 'keys.json')
  const key = new KeyStore(keysFile, [], 0).create({ name: roles.join('+'), roles, expiresAt: null }).key
  return { dir, key, keysFile }
}

function fileAudit(dir: string): () => Promise<AuditLine[]> {
  return async () =>
    readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as AuditLine)
}

function peer(raw: RawStdio, dir: string, audit: () => Promise<AuditLine[]>): Peer {
  let id = 100
  return { raw, dir, audit, nextId: () => ++id }
}

/** A request, its answer, the bytes that carried it and the audit lines written meanwhile. */
async function ask(p: Peer, method: string, params?: Record<string, unknown>, rounds?: number): Promise<Seen> {
  const before = (await p.audit()).length
  const id = p.nextId()
  const message = await p.raw.request({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })
  return seen(p, id, message, before, rounds)
}

async function seen(p: Peer, id: number | string | null, message: RpcMessage | undefined, before: number, rounds?: number): Promise<Seen> {
  const m = (message ?? {}) as { error?: { data?: { requestId?: string } }; result?: { _meta?: Record<string, { requestId?: string }> } }
  const requestId = m.error?.data?.requestId ?? m.result?._meta?.['bastion/error']?.requestId ?? ''
  const text = p.raw.lines.filter((l) => l.includes(`"id":${JSON.stringify(id)}`) || l.includes(requestId || '\u0000')).join('\n')
  return { transport: 'stdio', text, message, requestId, audit: (await p.audit()).slice(before), ...(rounds === undefined ? {} : { rounds }) }
}

const callTool = (p: Peer, name: string, args: unknown, meta?: Record<string, unknown>): Promise<Seen> =>
  ask(p, 'tools/call', { name, arguments: args, ...(meta === undefined ? {} : { _meta: meta }) })

/**
 * A line the SDK's reader may drop: what, if anything, answers it within a moment. Polls for the
 * answer and its audit line (the rows expect both) and reads whatever is there after 2 s, so a
 * missing answer fails the row's own assertion rather than a timeout here.
 */
async function line(p: Peer, text: string, id: string | null): Promise<Seen> {
  const before = (await p.audit()).length
  const from = p.raw.lines.length
  const answers = (): RpcMessage[] =>
    p.raw.lines
      .slice(from)
      .map((l) => JSON.parse(l) as RpcMessage)
      .filter((m) => m.method === undefined && (m.id ?? null) === id)
  p.raw.writeLine(text)
  await waitFor(async () => answers().length > 0 && (await p.audit()).length > before, { what: 'an answer and an audit line', timeoutMs: 2000 }).catch(() => undefined)
  return seen(p, id, answers()[0], before)
}

/** A call whose tool asks the client (elicitation/create on the pipe); `answer` replies to it. */
async function elicited(p: Peer, name: string, args: unknown, answer: () => unknown): Promise<Seen> {
  p.raw.onRequest = (request) => (request.method === 'elicitation/create' ? answer() : undefined)
  try {
    return await ask(p, 'tools/call', { name, arguments: args }, 2)
  } finally {
    p.raw.onRequest = undefined
  }
}

/**
 * Run `fn` while the stdio principal's stored key is changed the way an operator would change it
 * (expired, revoked, deleted), then put the key store back as it was.
 */
async function withKeyChanged(change: (keys: Record<string, unknown>[], id: string) => Record<string, unknown>[], fn: () => Promise<Seen>): Promise<Seen> {
  const original = readFileSync(modern.keysFile, 'utf8')
  const store = JSON.parse(original) as { version: 1; keys: Record<string, unknown>[] }
  const write = (text: string): void => {
    writeFileSync(`${modern.keysFile}.edit`, text, { mode: 0o600 })
    renameSync(`${modern.keysFile}.edit`, modern.keysFile)
  }
  write(JSON.stringify({ version: 1, keys: change(store.keys, modern.key.slice(4, 20)) }))
  try {
    return await fn()
  } finally {
    write(original)
  }
}

let main: Peer
let modern: Peer & { key: string; keysFile: string }
let outage: Peer & { table: string }
// Its own peer: the audit row drops its table for good, which must not reach the limits row's audit trail.
let auditOutage: Peer & { table: string }
let pgClient: pg.Client
let library: Peer
// Upstreams of `main`: one that cannot start, one whose tool drifted from its pin.
let upstreams: WireUpstreams
const closers: (() => Promise<void>)[] = []
const secrets: string[] = []
const forbidden = (): string[] => [main.dir, modern.dir, outage.dir, auditOutage.dir, library.dir, upstreams.dir, ...secrets.map((k) => k.slice(21))]

/** Once `main`'s audit trail has a line of this upstream event (its gateway state is then settled). */
const upstreamEvent = (event: string, upstream: string): Promise<AuditLine> =>
  waitFor(async () => (await main.audit()).find((l) => l.event === event && l.upstream === upstream), { what: `${event} of upstream ${upstream}` })

interface Driver {
  readonly code: SecurityErrorCode
  readonly name: string
  readonly run: () => Promise<Seen>
}

const DRIVERS: readonly Driver[] = [
  {
    code: 'ERR_AUTH_INVALID',
    name: 'the key is deleted from the store mid-connection',
    run: () =>
      withKeyChanged(
        (keys, id) => keys.filter((k) => k.id !== id),
        () => ask(modern, 'tools/list', { _meta: MODERN_META }),
      ),
  },
  {
    code: 'ERR_AUTH_EXPIRED',
    name: 'the key expires mid-connection',
    run: () =>
      withKeyChanged(
        (keys, id) => keys.map((k) => (k.id === id ? { ...k, expiresAt: new Date(Date.now() - 1000).toISOString() } : k)),
        () => ask(modern, 'tools/list', { _meta: MODERN_META }),
      ),
  },
  {
    code: 'ERR_AUTH_REVOKED',
    name: 'the key is revoked mid-connection',
    run: () =>
      withKeyChanged(
        (keys, id) => keys.map((k) => (k.id === id ? { ...k, revokedAt: new Date().toISOString() } : k)),
        () => ask(modern, 'tools/list', { _meta: MODERN_META }),
      ),
  },
  { code: 'ERR_FORBIDDEN', name: 'a role without vault:read calls get_secret', run: () => callTool(main, 'get_secret', { name: 'x' }) },
  { code: 'ERR_PARSE', name: 'a line that is not JSON', run: () => line(main, '{"jsonrpc":"2.0",', null) },
  {
    code: 'ERR_BODY_TOO_LARGE',
    name: 'a line over the byte cap (server.maxBodyBytes, 1 MiB)',
    run: () => line(main, `{"jsonrpc":"2.0","id":"big","method":"ping","params":{"pad":"${'x'.repeat(1100 * 1024)}"}}`, null),
  },
  {
    code: 'ERR_JSON_TOO_DEEP',
    name: 'a line nested past the depth cap (server.maxJsonDepth, 64)',
    run: () => line(main, `{"jsonrpc":"2.0","id":"deep","method":"ping","params":{"deep":${'['.repeat(100)}${']'.repeat(100)}}}`, null),
  },
  { code: 'ERR_INVALID_REQUEST', name: 'params that are an array', run: () => line(main, '{"jsonrpc":"2.0","id":"bad-params","method":"ping","params":[]}', 'bad-params') },
  { code: 'ERR_METHOD_NOT_FOUND', name: 'a method nobody serves', run: () => ask(main, 'no/such') },
  { code: 'ERR_INVALID_PARAMS', name: 'tools/call whose name is a number', run: () => ask(main, 'tools/call', { name: 5 }) },
  {
    code: 'ERR_CAPABILITY_MISSING',
    name: 'a tool asks for input the client did not declare it can give',
    run: () => callTool(library, 'ask', {}),
  },
  {
    code: 'ERR_UNSUPPORTED_VERSION',
    name: 'the opening message claims protocol 1999-01-01',
    run: () => ask(modern, 'tools/list', { _meta: { ...MODERN_META, 'io.modelcontextprotocol/protocolVersion': '1999-01-01' } }),
  },
  {
    code: 'ERR_UNSUPPORTED_VERSION',
    name: 'a later message on a 2026-07-28 connection claims protocol 1999-01-01',
    run: async () => {
      await ask(modern, 'tools/list', { _meta: MODERN_META })
      return ask(modern, 'tools/list', { _meta: { ...MODERN_META, 'io.modelcontextprotocol/protocolVersion': '1999-01-01' } })
    },
  },
  { code: 'ERR_TOOL_NOT_FOUND', name: 'an unregistered tool', run: () => callTool(main, 'drop_database', {}) },
  { code: 'ERR_RESOURCE_NOT_FOUND', name: 'a resource the principal may not see', run: () => ask(library, 'resources/read', { uri: 'wire://hidden' }) },
  {
    code: 'ERR_CANCELLED',
    name: 'notifications/cancelled for a running command',
    run: async () => {
      const before = (await main.audit()).length
      const id = main.nextId()
      const pending = main.raw
        .request({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'run_command', arguments: { command: 'nap', args: { secs: 3 } } } })
        .catch(() => undefined)
      await waitFor(() => napping(main, 3), { what: 'the nap command to run' })
      main.raw.notify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'wire test' } })
      await expect.poll(async () => (await main.audit()).slice(before).some((l) => l.reason === 'ERR_CANCELLED'), { timeout: 3000 }).toBe(true)
      await Promise.race([pending, sleep(300)])
      const lines = (await main.audit()).slice(before)
      const requestId = String(lines.find((l) => l.reason === 'ERR_CANCELLED')?.requestId)
      return { transport: 'stdio', text: main.raw.lines.filter((l) => l.includes(`"id":${id}`)).join('\n'), message: main.raw.answersTo(id)[0], requestId, audit: lines }
    },
  },
  { code: 'ERR_VALIDATION', name: 'read_file with a number for a path', run: () => callTool(main, 'read_file', { path: 42 }) },
  { code: 'ERR_PATH_FORBIDDEN', name: 'read_file ../../etc/passwd', run: () => callTool(main, 'read_file', { path: '../../../../etc/passwd' }) },
  { code: 'ERR_FILE_NOT_FOUND', name: 'read_file of a missing file', run: () => callTool(main, 'read_file', { path: 'no-such-file.txt' }) },
  { code: 'ERR_FILE_TOO_LARGE', name: 'read_file over maxFileBytes', run: () => callTool(main, 'read_file', { path: 'big.txt' }) },
  { code: 'ERR_TOOL_FAILED', name: 'a command whose working directory is missing', run: () => callTool(main, 'run_command', { command: 'lost' }) },
  { code: 'ERR_TOOL_TIMEOUT', name: 'a command past its timeout', run: () => callTool(main, 'run_command', { command: 'slow' }) },
  { code: 'ERR_OUTPUT_TOO_LARGE', name: 'read_file over the tool output cap', run: () => callTool(main, 'read_file', { path: 'mid.txt' }) },
  { code: 'ERR_TOOL_RESOURCE_LIMIT', name: 'an isolated tool past its CPU cap', run: () => callTool(library, 'spin', {}) },
  { code: 'ERR_PII_BLOCKED', name: 'read_file of personal data with pii: block', run: () => callTool(main, 'read_file', { path: 'contact.txt' }) },
  { code: 'ERR_DATABASE', name: 'a named query over a missing table', run: () => callTool(main, 'run_query', { name: 'broken', params: {} }) },
  {
    code: 'ERR_UPSTREAM_UNAVAILABLE',
    name: 'a pinned tool whose upstream cannot start',
    run: async () => {
      await upstreamEvent('upstream.failed', 'gone')
      return callTool(main, upstreams.unavailable, { text: 'hi' })
    },
  },
  {
    code: 'ERR_TOOL_BLOCKED',
    name: 'a tool whose upstream definition drifted from its pin',
    run: async () => {
      await upstreamEvent('upstream.drift', 'drift')
      return callTool(main, upstreams.blocked, { text: 'hi' })
    },
  },
  {
    code: 'ERR_CONFIRMATION_REQUIRED',
    name: 'write_file in an envelope without elicitation',
    run: () => callTool(modern, 'write_file', { path: 'w.txt', content: 'x' }, MODERN_META),
  },
  {
    code: 'ERR_CONFIRMATION_INVALID',
    name: 'the file changes while the user is asked',
    run: () => {
      const path = join(main.dir, '.bastion', 'workspace', 'race.txt')
      writeFileSync(path, 'v1\n')
      return elicited(main, 'write_file', { path: 'race.txt', content: 'v3\n' }, () => {
        writeFileSync(path, 'v2 by someone else\n')
        return { action: 'accept', content: { confirm: true } }
      })
    },
  },
  { code: 'ERR_DECLINED', name: 'the user declines the elicitation', run: () => elicited(main, 'write_file', { path: 'd.txt', content: 'x' }, () => ({ action: 'decline' })) },
  {
    code: 'ERR_RATE_LIMITED',
    name: "the tool's own bucket is empty",
    run: async () => {
      await callTool(main, 'list_files', {})
      return callTool(main, 'list_files', {})
    },
  },
  {
    code: 'ERR_CONCURRENCY_LIMIT',
    name: 'a second command while the principal runs its one allowed',
    run: async () => {
      const first = callTool(main, 'run_command', { command: 'nap', args: { secs: 1 } })
      await waitFor(() => napping(main, 1), { what: 'the first nap command to run' })
      const second = await callTool(main, 'run_command', { command: 'nap', args: { secs: 0 } })
      await first
      return second
    },
  },
  { code: 'ERR_LIMITS_UNAVAILABLE', name: 'the Redis rate-limit backend is down', run: () => ask(outage, 'tools/list') },
  {
    code: 'ERR_AUDIT_UNAVAILABLE',
    name: 'the PostgreSQL audit table is gone',
    run: async () => {
      // For good: the sink may retry what it could not store, and the lines must stay unstored.
      await pgClient.query(`ALTER TABLE IF EXISTS ${auditOutage.table} RENAME TO ${auditOutage.table}_gone`)
      const s = await ask(auditOutage, 'tools/list')
      return { ...s, audit: await auditOutage.audit() }
    },
  },
  { code: 'ERR_INTERNAL', name: 'a resource whose handler throws', run: () => ask(library, 'resources/read', { uri: 'wire://boom' }) },
]

beforeAll(async () => {
  upstreams = wireUpstreams('upstreams:call')
  const env = { WIRE_PG: PG_ADMIN_URL, WIRE_REDIS: `redis://127.0.0.1:${await freePort()}`, ...upstreams.env }
  const sql = {
    url: { env: 'WIRE_PG' },
    tables: { wire_nothing: { columns: ['id'] } },
    queries: { broken: { description: 'reads a missing table', sql: 'SELECT * FROM wire_no_such_table' } },
  }
  const m = cliState(
    {
      roles: { ops: { permissions: ['files:read', 'files:write', 'sql:query', 'commands:run', 'upstreams:call'] } },
      limits: { concurrency: { perPrincipal: 1 }, tools: { list_files: { rate: { rate: '1/hour' } }, read_file: { maxOutputBytes: 2000 } } },
      workspace: { maxFileBytes: 4096 },
      pii: { tools: { read_file: 'block' } },
      // Named: with upstreams configured, the vault and SQL tools are not on by default.
      vault: { enabled: true },
      sql: { enabled: true, ...sql },
      commands: {
        nap: { description: 'sleeps', executable: '/bin/sleep', args: ['{secs}'], params: { secs: { type: 'integer', min: 0, max: 5 } }, timeoutMs: 10_000 },
        slow: { description: 'sleeps past its timeout', executable: '/bin/sleep', args: ['3'], timeoutMs: 100 },
        lost: { description: 'its working directory is missing', executable: '/bin/true', cwd: 'no-such-dir' },
      },
      upstreams: upstreams.config,
    },
    ['ops'],
  )
  upstreams.pin(m.dir)
  const workspace = join(m.dir, '.bastion', 'workspace')
  mkdirSync(workspace, { recursive: true })
  writeFileSync(join(workspace, 'README.md'), '# wire\n')
  writeFileSync(join(workspace, 'big.txt'), 'b'.repeat(5000))
  writeFileSync(join(workspace, 'mid.txt'), 'm'.repeat(3000))
  writeFileSync(join(workspace, 'contact.txt'), 'write to bob.smith@example.com\n')
  const mo = cliState({ sql: { enabled: false } }, ['admin'])
  const outageState = (table: string) =>
    cliState(
      {
        limits: { backend: 'redis', redis: { url: { env: 'WIRE_REDIS' }, timeoutMs: 200 } },
        audit: { sink: 'postgres', postgres: { url: { env: 'WIRE_PG' }, table } },
        sql: { enabled: false },
      },
      ['admin'],
    )
  const stamp = `${Date.now().toString(36)}_${process.pid}`
  const [table, auditTable] = [`wire_audit_${stamp}`, `wire_audit_gone_${stamp}`]
  const [o, ao] = [outageState(table), outageState(auditTable)]
  secrets.push(m.key, mo.key, o.key, ao.key)
  const args = ['--config', 'bastion.yaml']
  main = peer(spawnStdio(m.dir, m.key, args, env), m.dir, fileAudit(m.dir))
  modern = { ...peer(spawnStdio(mo.dir, mo.key, args, env), mo.dir, fileAudit(mo.dir)), key: mo.key, keysFile: mo.keysFile }
  pgClient = new pg.Client({ connectionString: PG_ADMIN_URL })
  await pgClient.connect()
  const outageRaw = spawnStdio(o.dir, o.key, args, env)
  const auditOutageRaw = spawnStdio(ao.dir, ao.key, args, env)
  // Their audit trails are in PostgreSQL (both names: the audit-outage driver renames its table).
  const pgAudit = (t: string) => async (): Promise<AuditLine[]> => {
    const found = await pgClient.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [t])
    const from = found.rows[0]?.t === null ? `${t}_gone` : t
    const rows = await pgClient.query<{ line: string }>(`SELECT line FROM ${from} ORDER BY id`)
    return rows.rows.map((r) => JSON.parse(r.line) as AuditLine)
  }
  outage = { ...peer(outageRaw, o.dir, pgAudit(table)), table }
  auditOutage = { ...peer(auditOutageRaw, ao.dir, pgAudit(auditTable)), table: auditTable }
  closers.push(
    () => main.raw.close(),
    () => modern.raw.close(),
    () => outageRaw.close(),
    () => auditOutageRaw.close(),
  )

  // A library user's bastion over the same stdio transport, served in this process.
  const libDir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-wire-lib-')))
  const sink = new SwitchableSink()
  const bastion = await createBastion({
    baseDir: libDir,
    logger: pino({ level: 'silent' }),
    announce: false,
    auditSink: sink,
    config: { roles: { lib: { permissions: ['lib:use'] } }, limits: { tools: { spin: { cpuMs: 200 } } }, sql: { enabled: false }, alerts: { rules: [] } },
  })
  bastion
    .tool({ name: 'spin', description: 'loops forever', permissions: ['lib:use'], input: z.object({}), isolate: { module: FIXTURES, export: 'spin' } })
    .tool({
      name: 'ask',
      description: 'asks the client, whatever it declared',
      permissions: ['lib:use'],
      input: z.object({}),
      run: async (_a, ctx) =>
        ctx.input.required({
          inputRequests: { colour: ctx.input.required.elicit({ message: 'Favourite colour?', requestedSchema: { type: 'object', properties: { colour: { type: 'string' } } } }) },
        }),
    })
    .resource({ name: 'hidden', uri: 'wire://hidden', permissions: ['secret:read'], read: async (uri) => ({ contents: [{ uri: uri.href, text: 'hidden' }] }) })
    .resource({
      name: 'boom',
      uri: 'wire://boom',
      permissions: ['lib:use'],
      read: async () => {
        throw new Error(`ENOENT: open ${process.cwd()}/secret.db`)
      },
    })
  const libKey = bastion.keys.create({ name: 'lib', roles: ['lib'], expiresAt: null }).key
  secrets.push(libKey)
  const toServer = new PassThrough()
  const fromServer = new PassThrough()
  const handle = await serveStdioTransport({ ...bastion.stdioOptions(), env: { MCP_API_KEY: libKey }, stdin: toServer, stdout: fromServer })
  const libRaw = rawOver(toServer, fromServer, { stderr: () => '', close: async () => undefined })
  library = peer(libRaw, libDir, async () => sink.lines.map((l) => JSON.parse(l) as AuditLine))
  closers.push(async () => {
    await handle.close()
    await bastion.close()
  })

  await Promise.all([
    initializeStdio(main.raw, { elicitation: { form: {} } }),
    initializeStdio(library.raw),
    outageRaw.request({ jsonrpc: '2.0', id: 'up', method: 'ping' }),
    auditOutageRaw.request({ jsonrpc: '2.0', id: 'up', method: 'ping' }),
  ])
}, 60_000)

afterAll(async () => {
  await Promise.all(closers.map((c) => c().catch(() => undefined)))
  for (const t of [outage?.table, auditOutage?.table]) if (t !== undefined) await pgClient?.query(`DROP TABLE IF EXISTS ${t}, ${t}_gone`).catch(() => undefined)
  await pgClient?.end().catch(() => undefined)
})

describe('the WIRE table over stdio', () => {
  it('every row a pipe can carry is driven, the others are listed with the reason they cannot occur', () => {
    expect(
      coverageGaps(
        ['stdio'],
        DRIVERS.map((d) => ({ code: d.code, transport: 'stdio' })),
      ),
    ).toStrictEqual([])
    for (const n of NOT_REACHABLE) expect(n.reason.length, n.code).toBeGreaterThan(10)
  })

  for (const code of Object.keys(WIRE) as SecurityErrorCode[]) {
    const drivers = DRIVERS.filter((d) => d.code === code)
    if (drivers.length === 0) continue
    describe(code, () => {
      for (const d of drivers) it(`stdio: ${d.name}`, async () => expectRow(code, await d.run(), forbidden()))
    })
  }
})
