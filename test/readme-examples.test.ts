import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bindBuiltins } from '../src/compose/bind.js'
import { parseYaml, validateConfig } from '../src/config/load.js'
import { configSchema } from '../src/config/schema.js'
import type { BastionConfigInput } from '../src/index.js'
import type { Principal } from '../src/principal.js'
import { BIN, runProcess } from './helpers/processes.js'
import { readmeBlock, readmeBlocks, shellCommands } from './helpers/readme.js'
import { callModern, startServer, type TestServer } from './helpers/server.js'

/** Where each `test: NAME` block of README.md is run. A marker not listed here fails. */
const RUN_BY: Record<string, string> = {
  'quick-start': 'test/e2e/clients.test.ts',
  'try-it': 'test/e2e/clients.test.ts',
  'connect-inspector': 'test/e2e/clients.test.ts',
  'connect-mcp-remote': 'test/e2e/clients.test.ts',
  'connect-sdk-v1': 'test/e2e/clients.test.ts',
  'connect-oauth': 'test/e2e/oauth-clients.test.ts',
  'library-setup': 'test/e2e/library-package.test.ts',
  library: 'test/e2e/library-package.test.ts',
  'cli-synopsis': 'test/readme-examples.test.ts',
  'config-reference': 'test/readme-examples.test.ts',
  'limits-example': 'test/readme-examples.test.ts',
  'tokens-example': 'test/readme-examples.test.ts',
  'policy-seed': 'test/readme-examples.test.ts',
  'policy-cli': 'test/readme-examples.test.ts',
  'sql-policy': 'test/readme-examples.test.ts',
  'commands-example': 'test/readme-examples.test.ts',
  'gateway-example': 'test/e2e/gateway-readme.test.ts',
  'gateway-commands': 'test/e2e/gateway-readme.test.ts',
  'console-api': 'test/e2e/console-api.test.ts',
}

function yamlOf(name: string): Record<string, unknown> {
  const parsed = parseYaml(readmeBlock(name))
  if ('error' in parsed) throw new Error(`README block ${name}: ${parsed.error}`)
  return parsed.value as Record<string, unknown>
}

/** `config check` of a README block: validated and bound to the built-in tools, nothing opened. */
function configCheck(config: unknown): ReturnType<typeof bindBuiltins> {
  return bindBuiltins(validateConfig(config, 'README', process.cwd()))
}

/** A value with every null (YAML `~`, "unset") and undefined member removed. */
function withoutUnset(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutUnset)
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = withoutUnset(v)
  return out
}

/** The rows of a `query` result (its text is the JSON of the table, columns and rows). */
function rowsOf(body: Record<string, unknown>): unknown[] {
  const result = body.result as { isError?: boolean; content: { text: string }[] }
  expect(result.isError ?? false, JSON.stringify(body)).toBe(false)
  return (JSON.parse(result.content[0]?.text ?? '{}') as { rows: unknown[] }).rows
}

/** The built CLI, as a user runs it. */
function cli(cwd: string, args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** {@link cli}, not waiting for the others. */
const cliAsync = (cwd: string, args: readonly string[]) => runProcess(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '' } })

const principal = (name: string, roles: string[]): Principal => ({ id: `key:${name}`, kind: 'api-key', name, roles })

describe('README examples', () => {
  it('every code block is run by a test or marked illustrative, and every marker names where it runs', () => {
    const blocks = readmeBlocks()
    expect(blocks.length).toBeGreaterThan(10)
    for (const b of blocks) {
      expect(b.marker, `README.md:${b.line}: a code block with no <!-- test: NAME --> or <!-- illustrative: WHY --> marker`).toBeDefined()
      if (b.marker?.kind !== 'test') continue
      const file = RUN_BY[b.marker.name]
      expect(file, `README.md:${b.line}: no test runs "test: ${b.marker.name}"`).toBeDefined()
      // The file that runs it names it.
      expect(readFileSync(new URL(`../${file}`, import.meta.url), 'utf8')).toContain(`'${b.marker.name}'`)
    }
    for (const name of Object.keys(RUN_BY)) expect(() => readmeBlock(name)).not.toThrow()
  })

  it('the configuration reference shows exactly the schema defaults', () => {
    const documented = withoutUnset(yamlOf('config-reference'))
    expect(documented).toStrictEqual(withoutUnset(configSchema.parse({})))
  })

  it('the tokens example passes config check', () => {
    const bound = configCheck(yamlOf('tokens-example'))
    expect(bound.loaded.config.auth.issuers[0]?.issuer).toBe('https://login.example.com/realms/main')
  })

  it('the run_command example passes config check and serves the two commands', () => {
    const bound = configCheck({ ...yamlOf('commands-example') })
    const schema = JSON.stringify(bound.registry.get('run_command')?.descriptor.inputSchema)
    expect(schema).toContain('word_count')
    expect(schema).toContain('git_log')
  })

  it('the seed policy loads against the built-in tools and restricts analysts: own rows, at most 1,000, never the restricted tables', () => {
    const { rules } = yamlOf('policy-seed') as { rules: NonNullable<BastionConfigInput['policy']>['rules'] }
    const { policy } = configCheck({ policy: { rules } })
    const alice = principal('alice', ['analyst'])
    const query = { kind: 'tool', name: 'query' } as const
    expect(policy.decide(alice, query, { table: 'customers' })).toMatchObject({ allow: true, rule: 'analysts-own-rows', output: { rows: 'own', pii: 'mask' } })
    expect(policy.decide(alice, query, { table: 'customers', limit: 1000 })).toMatchObject({ allow: true, rule: 'analysts-own-rows' })
    expect(policy.decide(alice, query, { table: 'customers', limit: 1001 })).toMatchObject({ allow: false, rule: 'analysts-at-most-1000' })
    expect(policy.decide(alice, query, { table: 'users' })).toMatchObject({ allow: false, rule: 'restricted-tables' })
    expect(policy.decide(alice, query, { table: 'audit_logs', limit: 5 })).toMatchObject({ allow: false, rule: 'restricted-tables' })
    // Admins are not analysts: the rules leave them to their role.
    expect(policy.decide(principal('root', ['admin']), query, { table: 'customers', limit: 5000 })).toMatchObject({ allow: true, rule: 'role:admin/*' })
  })

  it('the SQL policy example passes config check and keeps analysts out of products', () => {
    const { policy, loaded } = configCheck(yamlOf('sql-policy'))
    expect(loaded.config.sql.maxRows).toStrictEqual({ default: 20, roles: { analyst: 1000, admin: 10000 } })
    const query = { kind: 'tool', name: 'query' } as const
    expect(policy.decide(principal('alice', ['analyst']), query, { table: 'products' })).toMatchObject({ allow: false, rule: 'analysts-not-products' })
    expect(policy.decide(principal('alice', ['analyst']), query, { table: 'orders' })).toMatchObject({ allow: true, rule: 'analysts-own-rows', output: { rows: 'own' } })
  })
})

describe('README CLI examples', () => {
  it('every command of the CLI synopsis has its help, naming every flag the synopsis shows', async () => {
    const lines = readmeBlock('cli-synopsis').split('\n')
    expect(lines.length).toBeGreaterThan(5)
    const checks: { command: string[]; flags: string[] }[] = []
    for (const line of lines) {
      const [synopsis = ''] = line.split(/\s+#/)
      const words = synopsis.split(/\s+/).slice(1)
      const path = words.slice(0, words.findIndex((w) => /^[[-]|^[A-Z]/.test(w) || w === '|') >>> 0)
      // `policy explain | replay | check`: each alternative is a subcommand of its own.
      const alternatives =
        synopsis.includes(' | ') && !synopsis.includes('[') ? synopsis.split('|').map((a, i) => (i === 0 ? a.trim().split(/\s+/).slice(1) : [path[0] ?? '', a.trim()])) : [path]
      for (const command of alternatives) checks.push({ command, flags: synopsis.match(/--[a-z][a-z-]*/g) ?? [] })
    }
    expect(checks.length).toBeGreaterThan(10)
    // Each help is a process of its own: all at once.
    const helps = await Promise.all(checks.map(({ command }) => cliAsync(process.cwd(), [...command, '--help'])))
    checks.forEach(({ command, flags }, i) => {
      const r = helps[i]
      expect(r?.code, `${command.join(' ')} --help: ${r?.stderr}`).toBe(0)
      expect(r?.stdout).toContain(`mcp-bastion ${command.join(' ')}`)
      for (const flag of flags) expect(r?.stdout, `${command.join(' ')} --help names ${flag}`).toContain(flag)
    })
  })

  it('the policy commands of "Policies" run as shown: explain, replay of a recorded trail under the seed policy, check', async () => {
    const server = await startServer({
      roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] }, analyst: { permissions: ['sql:query'] } },
    })
    try {
      for (let i = 0; i < 2; i++) expect((await callModern(server.url, server.keys.reader, 'read_file', { path: 'notes/todo.txt' })).res.status).toBe(200)
    } finally {
      await server.close()
    }
    writeFileSync(join(server.dir, 'candidate.yaml'), readmeBlock('policy-seed'))
    const [explain, replay, check] = shellCommands(readmeBlock('policy-cli'))
    expect(explain?.slice(0, 3)).toStrictEqual(['mcp-bastion', 'policy', 'explain'])
    const explained = cli(server.dir, explain?.slice(1) ?? [])
    // Analysts hold sql:query, not files:read: denied by default, and explain says which rules it weighed.
    expect(explained.status, explained.stderr).toBe(0)
    expect(explained.stdout).toMatch(/deny/)
    expect(explained.stdout).toContain('default-deny')
    const replayArgs = (replay ?? []).slice(1).filter((w) => !/^\[.*\]$/.test(w))
    expect(replayArgs).toStrictEqual(['policy', 'replay', '--audit', '.bastion/audit.jsonl', '--policy', 'candidate.yaml'])
    for (const args of [replayArgs, [...replayArgs, '--fail-on-change']]) {
      const replayed = cli(server.dir, args)
      expect(replayed.status, replayed.stdout + replayed.stderr).toBe(0)
      expect(replayed.stdout).toMatch(/\b2\b.*decision/)
    }
    const checked = cli(server.dir, check?.slice(1) ?? [])
    expect(checked.status, checked.stderr).toBe(0)
  })
})

describe('README examples against a running server', () => {
  let limits: TestServer
  let seeded: TestServer
  beforeAll(async () => {
    ;[limits, seeded] = await Promise.all([
      startServer(yamlOf('limits-example') as BastionConfigInput),
      startServer({
        roles: { admin: { permissions: ['*'] }, analyst: { permissions: ['sql:query'] } },
        // A role cap above the policy's 1,000, so that the policy is what refuses 1,001.
        sql: { maxRows: { default: 100, roles: { analyst: 5000 } } },
        policy: { rules: (yamlOf('policy-seed') as { rules: NonNullable<BastionConfigInput['policy']>['rules'] }).rules },
      }),
    ])
  })
  afterAll(async () => {
    await Promise.all([limits?.close(), seeded?.close()])
  })

  it('the limits example: a viewer may query 30 times a minute, then is refused with 429 until the bucket refills', async () => {
    const viewer = limits.bastion.keys.create({ name: 'viewer', roles: ['viewer'], expiresAt: null }).key
    // The embedded database opens on its first query (seconds): the admin's, whose buckets are its own.
    expect((await callModern(limits.url, limits.keys.admin, 'query', { table: 'products', limit: 1 })).res.status).toBe(200)
    const since = limits.mark()
    const started = performance.now()
    let admitted = 0
    let refused: Record<string, unknown> | undefined
    while (refused === undefined && admitted < 100) {
      const { res, body } = await callModern(limits.url, viewer, 'query', { table: 'products', limit: 1 })
      if (res.status === 429) refused = body
      else {
        expect(res.status, JSON.stringify(body)).toBe(200)
        expect((body.result as { isError?: boolean }).isError ?? false).toBe(false)
        admitted++
      }
    }
    const elapsedS = (performance.now() - started) / 1000
    // 30 in the bucket, plus what 30 a minute refilled meanwhile: never more, never fewer.
    expect(admitted).toBeGreaterThanOrEqual(30)
    expect(admitted).toBeLessThanOrEqual(30 + Math.ceil(elapsedS / 2))
    expect(refused, 'a refusal within 100 calls').toBeDefined()
    const { data } = (refused as { error: { data: { code: string; retryAfterMs: number } } }).error
    expect(data.code).toBe('ERR_RATE_LIMITED')
    // The next token of 30 a minute comes within two seconds.
    expect(data.retryAfterMs).toBeLessThanOrEqual(2000)
    const line = since().at(-1)
    expect(line).toMatchObject({ event: 'limit.exceeded', reason: 'ERR_RATE_LIMITED' })
    // The viewer's role rate and the database tier both hold 30 a minute: either may refuse.
    expect(String(line?.bucket)).toMatch(/^(role:viewer|tier:database)/)
    // The admin's own, more generous buckets are untouched.
    expect((await callModern(limits.url, limits.keys.admin, 'query', { table: 'products', limit: 1 })).res.status).toBe(200)
  })

  it('the seed policy: an analyst sees only the rows it manages, and no more than 1,000 at a time', async () => {
    const alice = seeded.bastion.keys.create({ name: 'alice', roles: ['analyst'], expiresAt: null }).key
    const { body } = await callModern(seeded.url, alice, 'query', { table: 'customers', columns: ['id', 'account_manager'], limit: 100 })
    const rows = rowsOf(body) as { account_manager: string }[]
    expect(rows.length).toBeGreaterThan(0)
    expect(new Set(rows.map((r) => r.account_manager))).toStrictEqual(new Set(['alice']))
    const all = await callModern(seeded.url, seeded.keys.admin, 'query', { table: 'customers', columns: ['id', 'account_manager'], limit: 100 })
    const allRows = rowsOf(all.body)
    expect(allRows.length).toBeGreaterThan(rows.length)
    const tooMany = await callModern(seeded.url, alice, 'query', { table: 'customers', limit: 1001 })
    expect(tooMany.res.status).toBe(200)
    expect(JSON.stringify(tooMany.body)).toContain('ERR_FORBIDDEN')
  })
})
