import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { BIN } from '../helpers/processes.js'
import { callModern, connect, JSON_HEADERS, MODERN_META, modernHeaders, startServer, type TestServer } from '../helpers/server.js'

const RULES_V1 = `rules:
  - id: analysts-own-rows
    effect: allow
    subjects: { roles: [analyst] }
    targets: { tools: [query] }
    when: args.owner == principal.id && args.limit <= 1000
    output: { pii: mask }
  - id: restricted-tables
    effect: deny
    subjects: { roles: [analyst] }
    targets: { tools: [query] }
    when: args.table in ["users", "audit_logs"]
  - id: public-docs
    effect: allow
    subjects: '*'
    targets: { resources: [{ uri: 'file:///public/**' }] }
  - id: analysts-notes
    effect: allow
    subjects: { roles: [analyst] }
    targets: { tools: [read_file] }
    when: args.path.startsWith("notes/")
  - id: analysts-summaries
    effect: allow
    subjects: { roles: [analyst] }
    targets: { prompts: [summary] }
  - id: no-salary-summaries
    effect: deny
    subjects: '*'
    targets: { prompts: [summary] }
    when: args.topic == "salaries"
`
// v2 lowers the row limit to 10.
const RULES_V2 = RULES_V1.replace('args.limit <= 1000', 'args.limit <= 10')

describe('policy end to end', () => {
  let server: TestServer
  let analyst: string
  let policyFile: string
  const received: unknown[] = []
  beforeAll(async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-policy-')))
    policyFile = join(dir, 'policy.yaml')
    writeFileSync(policyFile, RULES_V1)
    server = await startServer(
      {
        roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] }, analyst: { permissions: [] } },
        policy: { file: policyFile, reloadIntervalMs: 100 },
        // This suite registers its own `query` tool, beside the built-in file tools.
        sql: { enabled: false },
        workspace: { enabled: true },
        limits: { principal: { rate: '100000/s' } },
      },
      (b) => {
        b.tool({
          name: 'query',
          description: 'rows of a table',
          input: z.strictObject({ table: z.string().max(64), owner: z.string().max(64), limit: z.number().int().min(1).max(100_000) }),
          run: async (args) => {
            received.push(args)
            return { content: [{ type: 'text', text: JSON.stringify(args) }] }
          },
        })
        b.prompt({
          name: 'summary',
          args: z.object({ topic: z.string().max(64) }),
          get: async (args) => ({ messages: [{ role: 'user', content: { type: 'text', text: `summarise ${args.topic}` } }] }),
        })
        b.prompt({ name: 'internal', permissions: ['internal'], get: async () => ({ messages: [] }) })
        b.resource({ name: 'readme', uri: 'file:///public/readme.md', read: async (uri) => ({ contents: [{ uri: uri.href, text: 'public' }] }) })
        b.resource({ name: 'keys', uri: 'file:///private/keys.txt', read: async (uri) => ({ contents: [{ uri: uri.href, text: 'CANARY-PRIVATE' }] }) })
      },
    )
    analyst = server.bastion.keys.create({ name: 'analyst', roles: ['analyst'], expiresAt: null }).key
  })
  afterAll(async () => {
    await server.close()
  })

  const analystId = (): string => `key:${analyst.slice(4, 20)}`

  it.each(['modern', 'legacy'] as const)('%s client: lists show only what the analyst may use', async (era) => {
    const client = await connect(server.url, era, { authorization: `Bearer ${analyst}` })
    expect((await client.listTools()).tools.map((t) => t.name)).toStrictEqual(['query', 'read_file'])
    expect((await client.listResources()).resources.map((r) => r.uri)).toStrictEqual(['file:///public/readme.md'])
    expect((await client.readResource({ uri: 'file:///public/readme.md' })).contents[0]).toMatchObject({ text: 'public' })
    await expect(client.readResource({ uri: 'file:///private/keys.txt' })).rejects.toThrow()
    expect((await client.listPrompts()).prompts.map((p) => p.name)).toStrictEqual(['summary'])
    expect((await client.getPrompt({ name: 'summary', arguments: { topic: 'q3' } })).messages[0]?.content).toMatchObject({ text: 'summarise q3' })
    const since = server.mark()
    await expect(client.getPrompt({ name: 'summary', arguments: { topic: 'salaries' } })).rejects.toMatchObject({ code: -31403 })
    await client.close()
    expect(since().find((l) => l.method === 'prompts/get')).toMatchObject({ decision: 'deny', rule: 'no-salary-summaries', authz: 'deny', args: { topic: 'salaries' } })
  })

  it('the seed example: own rows only, at most 1,000, never the users table; audited with rule, version and arguments', async () => {
    const client = await connect(server.url, 'modern', { authorization: `Bearer ${analyst}` })
    const since = server.mark()
    const own = await client.callTool({ name: 'query', arguments: { table: 'orders', owner: analystId(), limit: 1000 } })
    expect(own.isError ?? false).toBe(false)
    const denials = [
      { table: 'orders', owner: 'key:someoneelse00000', limit: 5 },
      { table: 'orders', owner: analystId(), limit: 1001 },
      { table: 'users', owner: analystId(), limit: 5 },
    ]
    for (const args of denials) {
      await expect(client.callTool({ name: 'query', arguments: args })).rejects.toMatchObject({ code: -31403 })
    }
    await client.close()
    const calls = since().filter((l) => l.tool === 'query')
    const version = server.bastion.policy().version
    expect(calls.map((l) => [l.decision, l.rule, l.authz])).toStrictEqual([
      ['allow', 'analysts-own-rows', 'allow'],
      ['deny', 'default-deny', 'deny'],
      ['deny', 'default-deny', 'deny'],
      ['deny', 'restricted-tables', 'deny'],
    ])
    for (const l of calls) expect(l).toMatchObject({ policy: version, event: l.decision === 'allow' ? 'tool.call' : 'authz.denied' })
    expect(calls[3]?.args).toStrictEqual({ table: 'users', owner: analystId(), limit: 5 })
  })

  // One parse: whatever the bytes, the tool receives exactly the object the policy decided on.
  const ONE_PARSE = [
    { name: 'duplicate key, victim first', args: (me: string) => `{"table":"orders","owner":"key:victim0000000000","owner":"${me}","limit":5}`, allowed: true },
    { name: 'duplicate key, victim last', args: (me: string) => `{"table":"orders","owner":"${me}","owner":"key:victim0000000000","limit":5}`, allowed: false },
    { name: 'duplicate table key hides "users"', args: (me: string) => `{"table":"orders","table":"users","owner":"${me}","limit":5}`, allowed: false },
    { name: '__proto__ smuggling an owner', args: () => `{"table":"orders","__proto__":{"owner":"x"},"owner":"key:victim0000000000","limit":5}`, allowed: false },
    { name: 'unicode escapes in a key and a value', args: (me: string) => `{"table":"\\u0075sers","\\u006fwner":"${me}","limit":5}`, allowed: false },
    { name: 'unicode escapes that decode to an allowed value', args: (me: string) => `{"table":"\\u006frders","\\u006fwner":"${me}","limit":5}`, allowed: true },
    { name: 'number as a string', args: (me: string) => `{"table":"orders","owner":"${me}","limit":"5"}`, allowed: false },
    { name: 'number in exponent form', args: (me: string) => `{"table":"orders","owner":"${me}","limit":1e3}`, allowed: true },
    { name: 'number just over, in exponent form', args: (me: string) => `{"table":"orders","owner":"${me}","limit":1.001e3}`, allowed: false },
    { name: 'fraction that rounds to the limit', args: (me: string) => `{"table":"orders","owner":"${me}","limit":1000.0000000000001}`, allowed: false },
    { name: 'table with a trailing NUL', args: (me: string) => `{"table":"users\\u0000","owner":"${me}","limit":5}`, allowed: true },
  ]
  it.each(ONE_PARSE)('one parse: $name', async ({ args, allowed }) => {
    received.length = 0
    const since = server.mark()
    const body = `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"query","arguments":${args(analystId())},"_meta":${JSON.stringify(MODERN_META)}}}`
    const res = await fetch(server.url, { method: 'POST', headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'query'), authorization: `Bearer ${analyst}` }, body })
    const reply = (await res.json()) as { result?: { isError?: boolean }; error?: unknown }
    const line = since().find((l) => l.tool === 'query')
    if (allowed) {
      expect(reply.result?.isError ?? false).toBe(false)
      expect(received).toHaveLength(1)
      // The tool got exactly what the policy evaluated (and what the audit line recorded).
      expect(received[0]).toStrictEqual(line?.args)
      expect((received[0] as { owner: string }).owner).toBe(analystId())
      expect((received[0] as { table: string }).table).not.toBe('users')
    } else {
      expect(received).toHaveLength(0)
      expect(line?.decision).toBe('deny')
    }
  })

  it('hot reload: the watched file takes effect for new requests; a broken file is refused and the old policy stays', async () => {
    const v1 = server.bastion.policy().version
    const since = server.mark()
    const call = () => callModern(server.url, analyst, 'query', { table: 'orders', owner: analystId(), limit: 500 })
    expect((await call()).body.result).toBeDefined()
    writeFileSync(policyFile, RULES_V2)
    await expect.poll(() => server.bastion.policy().version, { timeout: 5000, interval: 50 }).not.toBe(v1)
    const v2 = server.bastion.policy().version
    expect((await call()).body.error).toMatchObject({ data: { code: 'ERR_FORBIDDEN' } })
    writeFileSync(policyFile, `${RULES_V2}  - id: broken\n    effect: allow\n    subjects: '*'\n    targets: { tools: [query] }\n    when: args.nope == 1\n`)
    await expect.poll(() => since().some((l) => l.event === 'policy.rejected'), { timeout: 5000, interval: 50 }).toBe(true)
    expect(server.bastion.policy().version).toBe(v2)
    expect((await call()).body.error).toMatchObject({ data: { code: 'ERR_FORBIDDEN' } })
    const events = since().filter((l) => String(l.event).startsWith('policy.'))
    expect(events[0]).toMatchObject({ event: 'policy.loaded', policy: v2, previous: v1 })
    expect(events[1]).toMatchObject({ event: 'policy.rejected', policy: v2, decision: 'error' })
    expect(String(events[1]?.detail)).toMatch(/rule broken .*No such key: nope at line 1, column 6/)
    writeFileSync(policyFile, RULES_V1)
    await expect.poll(() => server.bastion.policy().version, { timeout: 5000, interval: 50 }).toBe(v1)
  })

  it('under concurrent requests every call is decided by one whole version, never a mix', async () => {
    const source = server.bastion.policySource()
    const v1 = server.bastion.policy().version
    const since = server.mark()
    let stop = false
    const flipper = (async () => {
      let i = 0
      while (!stop) {
        writeFileSync(policyFile, i % 3 === 0 ? RULES_V2 : i % 3 === 1 ? 'rules: [ {' : RULES_V1)
        source.reload()
        i += 1
        await new Promise((r) => setTimeout(r, 5))
      }
    })()
    const results = await Promise.all(Array.from({ length: 120 }, () => callModern(server.url, analyst, 'query', { table: 'orders', owner: analystId(), limit: 500 })))
    stop = true
    await flipper
    writeFileSync(policyFile, RULES_V1)
    source.reload()
    const v2 = since().find((l) => l.event === 'policy.loaded' && l.policy !== v1)?.policy
    expect(v2).toBeDefined()
    const lines = since().filter((l) => l.tool === 'query')
    expect(lines).toHaveLength(120)
    expect(results.every((r) => r.res.status === 200)).toBe(true)
    for (const l of lines) {
      // limit 500: allowed by v1, denied by v2; nothing else may decide.
      expect([v1, v2]).toContain(l.policy)
      expect(l.decision).toBe(l.policy === v1 ? 'allow' : 'deny')
    }
    expect(new Set(lines.map((l) => l.policy)).size).toBe(2)
  })
})

describe('policy CLI: explain and replay', () => {
  let server: TestServer
  let dir: string
  let analyst: string
  const config = `roles:
  admin: { permissions: ['*'] }
  reader: { permissions: ['files:read'] }
  nobody: { permissions: [] }
  analyst: { permissions: [] }
policy:
  rules:
    - id: analysts-notes
      effect: allow
      subjects: { roles: [analyst] }
      targets: { tools: [read_file] }
      when: args.path.startsWith("notes/") || args.path == "README.md"
`
  beforeAll(async () => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-policy-cli-')))
    writeFileSync(join(dir, 'bastion.yaml'), config)
    writeFileSync(
      join(dir, 'candidate.yaml'),
      'rules:\n  - id: analysts-notes-only\n    effect: allow\n    subjects: { roles: [analyst] }\n    targets: { tools: [read_file] }\n    when: args.path.startsWith("notes/")\n',
    )
    server = await startServer({
      roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] }, analyst: { permissions: [] } },
      policy: {
        rules: [
          {
            id: 'analysts-notes',
            effect: 'allow',
            subjects: { roles: ['analyst'] },
            targets: { tools: ['read_file'] },
            when: 'args.path.startsWith("notes/") || args.path == "README.md"',
          },
        ],
      },
    })
    analyst = server.bastion.keys.create({ name: 'analyst', roles: ['analyst'], expiresAt: null }).key
  })
  afterAll(async () => {
    await server.close()
  })

  const cli = (args: string[]) => spawnSync(process.execPath, [BIN, 'policy', ...args], { cwd: dir, encoding: 'utf8' })

  it('explain prints the decision and every rule evaluated', () => {
    const allow = cli(['explain', '--role', 'analyst', '--tool', 'read_file', '--args', '{"path":"notes/todo.txt"}'])
    expect(allow.status).toBe(0)
    expect(allow.stdout).toMatch(/^allow by analysts-notes \(policy [0-9a-f]{16}\)\n/)
    expect(allow.stdout).toMatch(/allow +analysts-notes +matched/)
    const deny = cli(['explain', '--role', 'analyst', '--tool', 'read_file', '--args', '{"path":"data/products.csv"}', '--json'])
    const parsed = JSON.parse(deny.stdout) as { decision: { allow: boolean; rule: string }; trace: { rule: string; result: string }[] }
    expect(parsed.decision).toMatchObject({ allow: false, rule: 'default-deny' })
    expect(parsed.trace).toContainEqual({ rule: 'analysts-notes', effect: 'allow', result: 'condition-false' })
    expect(parsed.trace).toContainEqual({ rule: 'role:admin/*', effect: 'allow', result: 'subject-mismatch' })
    expect(parsed.trace.filter((t) => t.result === 'matched')).toStrictEqual([])
    const admin = cli(['explain', '--role', 'admin', '--tool', 'read_file', '--args', '{"path":"x"}'])
    expect(admin.stdout).toMatch(/^allow by role:admin\/\*/)
    const bad = cli(['explain', '--role', 'analyst', '--tool', 'read_file', '--args', '{"path":42}'])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toMatch(/arguments do not validate/)
  })

  it('replay lists every recorded decision a candidate policy would change', async () => {
    for (const path of ['notes/todo.txt', 'README.md', 'data/products.csv', 'README.md']) await callModern(server.url, analyst, 'read_file', { path })
    const out = cli(['replay', '--audit', server.auditPath, '--policy', 'candidate.yaml'])
    expect(out.status).toBe(0)
    expect(out.stdout).toMatch(/^replayed 4 decisions against policy [0-9a-f]{16}: 2 would change\n/)
    expect(out.stdout.match(/read_file: allow \(analysts-notes\) → deny \(default-deny\)/g)).toHaveLength(2)
    const strict = cli(['replay', '--audit', server.auditPath, '--policy', 'candidate.yaml', '--fail-on-change', '--json'])
    expect(strict.status).toBe(1)
    const report = JSON.parse(strict.stdout) as { changes: { requestId: string }[] }
    const recorded = readFileSync(server.auditPath, 'utf8')
    for (const c of report.changes) expect(recorded).toContain(c.requestId)
    const check = cli(['check', 'candidate.yaml'])
    expect(check.stdout).toMatch(/candidate.yaml: OK/)
    writeFileSync(join(dir, 'broken.yaml'), 'rules:\n  - id: b\n    effect: allow\n    subjects: "*"\n    targets: { tools: [read_file] }\n    when: args.path > 3\n')
    const broken = cli(['check', 'broken.yaml'])
    expect(broken.status).toBe(2)
    expect(broken.stderr).toMatch(/rule b \(#\d+\): when \(for tool read_file\): no such overload: string > int at line 1, column 1/)
  })
})
