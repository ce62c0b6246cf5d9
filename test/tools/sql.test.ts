import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BastionConfigInput } from '../../src/index.js'
import { DEMO_CANARY, DEMO_QUERIES, DEMO_TABLES } from '../../src/tools/sql/demo.js'
import { callModern, reopenServer, startServer, type TestServer } from '../helpers/server.js'
import { demoPostgres } from '../helpers/sql.js'

type Outcome = { code: string; rows: Record<string, unknown>[]; wire: string; truncated?: boolean }

/** A call's outcome as the client sees it: a result's rows, or the refusal code (in-band or protocol). */
async function call(server: TestServer, key: string, tool: string, args: unknown): Promise<Outcome> {
  const { body } = await callModern(server.url, key, tool, args)
  const wire = JSON.stringify(body)
  const error = body.error as { data?: { code?: string } } | undefined
  if (error !== undefined) return { code: error.data?.code ?? 'RPC', rows: [], wire }
  const result = body.result as { isError?: boolean; content: { text: string }[]; _meta?: Record<string, { code: string }> }
  if (result.isError === true) return { code: result._meta?.['bastion/error']?.code ?? 'ERROR', rows: [], wire }
  const data = JSON.parse(result.content[0]?.text ?? '{}') as { rows: Record<string, unknown>[]; truncated?: boolean }
  return { code: 'OK', rows: data.rows, wire, ...(data.truncated === undefined ? {} : { truncated: data.truncated }) }
}

// Nothing of the database may reach the client: its messages, the SQL, the secrets table.
const LEAK = /canary|select |syntax|sqlstate|relation|postgres|pglite|error:|pg_|stack|\.ts:|\.js:/i

const Q = (args: Record<string, unknown>) => ({ tool: 'query', args: { table: 'customers', ...args } })
const RUN = (name: string, params: Record<string, unknown>) => ({ tool: 'run_query', args: { name, params } })

/** One row per payload, named after what it tries. `OK` rows must return no rows at all. */
const INJECTIONS: { name: string; tool: string; args: unknown; code: string }[] = [
  { name: 'table: the secrets table', ...Q({ table: 'secrets' }), code: 'ERR_VALIDATION' },
  { name: 'table: stacked statement', ...Q({ table: 'customers; DROP TABLE orders; --' }), code: 'ERR_VALIDATION' },
  { name: 'table: quote break-out', ...Q({ table: 'customers" UNION SELECT * FROM secrets --' }), code: 'ERR_VALIDATION' },
  { name: 'table: schema-qualified', ...Q({ table: 'public.secrets' }), code: 'ERR_VALIDATION' },
  { name: 'table: catalog', ...Q({ table: 'pg_catalog.pg_authid' }), code: 'ERR_VALIDATION' },
  { name: 'table: case variant', ...Q({ table: 'CUSTOMERS' }), code: 'ERR_VALIDATION' },
  { name: 'columns: a column of another table', ...Q({ columns: ['value'] }), code: 'ERR_VALIDATION' },
  { name: 'columns: subquery', ...Q({ columns: ['(SELECT value FROM secrets)'] }), code: 'ERR_VALIDATION' },
  { name: 'columns: star', ...Q({ columns: ['*'] }), code: 'ERR_VALIDATION' },
  { name: 'columns: allowlisted elsewhere (orders.total on customers)', ...Q({ columns: ['total'] }), code: 'ERR_VALIDATION' },
  { name: 'filter column: expression', ...Q({ filters: [{ column: 'id = id OR 1=1 --', op: 'eq', value: 1 }] }), code: 'ERR_VALIDATION' },
  { name: 'operator: raw SQL', ...Q({ filters: [{ column: 'id', op: '= 1 OR 1=1 --', value: 1 }] }), code: 'ERR_VALIDATION' },
  { name: 'operator: UNION', ...Q({ filters: [{ column: 'id', op: 'UNION', value: 1 }] }), code: 'ERR_VALIDATION' },
  { name: 'value: classic tautology', ...Q({ filters: [{ column: 'name', op: 'eq', value: "' OR '1'='1" }] }), code: 'OK' },
  { name: 'value: stacked DROP', ...Q({ filters: [{ column: 'name', op: 'eq', value: "x'; DROP TABLE orders; --" }] }), code: 'OK' },
  { name: 'value: UNION in a LIKE pattern', ...Q({ filters: [{ column: 'email', op: 'ilike', value: "%' UNION SELECT value FROM secrets --" }] }), code: 'OK' },
  { name: 'value: tautology into an integer column', ...Q({ filters: [{ column: 'id', op: 'eq', value: '1 OR 1=1' }] }), code: 'ERR_VALIDATION' },
  { name: 'value: list break-out', ...Q({ filters: [{ column: 'id', op: 'in', value: ['1) OR (1=1'] }] }), code: 'ERR_VALIDATION' },
  { name: 'value: operator object (NoSQL style)', ...Q({ filters: [{ column: 'name', op: 'eq', value: { $gt: '' } }] }), code: 'ERR_VALIDATION' },
  { name: 'value: pg_sleep as text', ...Q({ filters: [{ column: 'name', op: 'eq', value: "'||pg_sleep(5)||'" }] }), code: 'OK' },
  { name: 'orderBy column: stacked', ...Q({ orderBy: [{ column: 'id; DROP TABLE orders', direction: 'asc' }] }), code: 'ERR_VALIDATION' },
  { name: 'orderBy column: subquery', ...Q({ orderBy: [{ column: '(SELECT 1)', direction: 'asc' }] }), code: 'ERR_VALIDATION' },
  { name: 'orderBy direction: injected', ...Q({ orderBy: [{ column: 'id', direction: 'desc; DROP TABLE orders' }] }), code: 'ERR_VALIDATION' },
  { name: 'limit: stacked string', ...Q({ limit: '1; DROP TABLE orders' }), code: 'ERR_VALIDATION' },
  { name: 'limit: ALL', ...Q({ limit: 'ALL' }), code: 'ERR_VALIDATION' },
  { name: 'limit: negative', ...Q({ limit: -1 }), code: 'ERR_VALIDATION' },
  { name: 'limit: fractional', ...Q({ limit: 10.5 }), code: 'ERR_VALIDATION' },
  { name: 'limit: huge', ...Q({ limit: 1e12 }), code: 'ERR_VALIDATION' },
  { name: 'offset: injected', ...Q({ offset: '0; DELETE FROM orders' }), code: 'ERR_VALIDATION' },
  { name: 'unknown key: raw sql', ...Q({ sql: 'SELECT * FROM secrets' }), code: 'ERR_VALIDATION' },
  { name: 'named: unknown query', ...RUN('secrets', {}), code: 'ERR_VALIDATION' },
  { name: 'named: integer param as tautology', ...RUN('orders_of_customer', { customer_id: '1 OR 1=1', max_rows: 5 }), code: 'ERR_VALIDATION' },
  { name: 'named: integer param fractional', ...RUN('orders_of_customer', { customer_id: 1.5, max_rows: 5 }), code: 'ERR_VALIDATION' },
  { name: 'named: bound exceeded', ...RUN('orders_of_customer', { customer_id: 1, max_rows: 1_000_000 }), code: 'ERR_VALIDATION' },
  { name: 'named: enum param break-out', ...RUN('sales_by_category', { status: "paid' OR '1'='1" }), code: 'ERR_VALIDATION' },
  { name: 'named: extra param', ...RUN('sales_by_category', { status: 'paid', sql: 'DROP TABLE orders' }), code: 'ERR_VALIDATION' },
  { name: "named: another query's params", ...RUN('sales_by_category', { customer_id: 1, max_rows: 5 }), code: 'ERR_VALIDATION' },
]

const EXTRA_QUERIES = {
  // A write smuggled into a read: READ ONLY transactions refuse it.
  write_probe: { description: 'advances a sequence', sql: "SELECT nextval('orders_id_seq') AS n" },
  broken: { description: 'reads a missing table', sql: 'SELECT * FROM no_such_table' },
  slow: { description: 'sleeps', sql: 'SELECT pg_sleep(:secs) AS s', params: { secs: { type: 'number' as const, min: 0, max: 10 } } },
}

function config(url?: string): BastionConfigInput {
  return {
    roles: { admin: { permissions: ['*'] }, analyst: { permissions: ['sql:query'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] } },
    limits: { principal: { rate: '100000/s' }, concurrency: { perPrincipal: 32 } },
    policy: {
      rules: [
        { id: 'analysts-own-rows', effect: 'allow', subjects: { roles: ['analyst'] }, targets: { tools: ['query'] }, output: { rows: 'own' } },
        { id: 'analysts-no-products', effect: 'deny', subjects: { roles: ['analyst'] }, targets: { tools: ['query'] }, when: 'args.table == "products"' },
      ],
    },
    sql: {
      ...(url === undefined ? {} : { url: { env: 'BASTION_TEST_SQL_URL' }, tables: DEMO_TABLES }),
      statementTimeoutMs: 1000,
      maxRows: { default: 20, roles: { analyst: 50, admin: 1000 } },
      queries: { ...DEMO_QUERIES, ...EXTRA_QUERIES },
    },
  }
}

describe.each(['embedded', 'postgres'] as const)('SQL tools over %s', (backend) => {
  let server: TestServer
  let pg: Awaited<ReturnType<typeof demoPostgres>> | undefined
  const keys: Record<string, string> = {}
  const counts = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {}
    for (const table of ['customers', 'orders', 'products']) out[table] = (await call(server, keys.admin ?? '', 'query', { table, columns: ['id'], limit: 1000 })).rows.length
    return out
  }

  beforeAll(async () => {
    if (backend === 'postgres') {
      pg = await demoPostgres()
      process.env.BASTION_TEST_SQL_URL = pg.url
    }
    server = await startServer(config(pg?.url))
    keys.admin = server.keys.admin
    keys.alice = server.bastion.keys.create({ name: 'alice', roles: ['analyst'], expiresAt: null }).key
    keys.bob = server.bastion.keys.create({ name: 'bob', roles: ['analyst'], expiresAt: null }).key
    keys.reader = server.keys.reader
  }, 60_000)
  afterAll(async () => {
    await server?.close()
    await pg?.drop()
    delete process.env.BASTION_TEST_SQL_URL
  })

  it('the admin key reads the demo data; personal data is masked', async () => {
    const r = await call(server, server.keys.admin, 'query', { table: 'customers', limit: 5, orderBy: [{ column: 'id', direction: 'asc' }] })
    expect(r.code).toBe('OK')
    expect(r.rows).toHaveLength(5)
    expect(r.rows[0]).toMatchObject({ id: 1, email: '[EMAIL]', phone: '[PHONE]', account_manager: 'alice' })
    expect(r.truncated).toBe(true)
    expect(await counts()).toStrictEqual({ customers: 40, orders: 120, products: 10 })
  })

  it('concurrent calls share the database safely', async () => {
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => call(server, server.keys.admin, 'query', { table: 'orders', filters: [{ column: 'id', op: 'eq', value: i + 1 }] })),
    )
    expect(results.map((r) => [r.code, r.rows[0]?.id])).toStrictEqual(Array.from({ length: 24 }, (_, i) => ['OK', i + 1]))
  })

  it('filters, operators and ordering compile to parameters', async () => {
    const r = await call(server, server.keys.admin, 'query', {
      table: 'orders',
      columns: ['id', 'status', 'quantity'],
      filters: [
        { column: 'status', op: 'in', value: ['paid', 'refunded'] },
        { column: 'quantity', op: 'gte', value: 3 },
      ],
      orderBy: [{ column: 'quantity', direction: 'desc' }],
      limit: 1000,
    })
    expect(r.code).toBe('OK')
    expect(r.rows.length).toBeGreaterThan(0)
    for (const row of r.rows) {
      expect(['paid', 'refunded']).toContain(row.status)
      expect(row.quantity).toBeGreaterThanOrEqual(3)
      expect(Object.keys(row)).toStrictEqual(['id', 'status', 'quantity'])
    }
  })

  it.each(INJECTIONS)('injection: $name → $code', async ({ tool, args, code }) => {
    const mark = server.mark()
    const r = await call(server, server.keys.admin, tool, args)
    expect(r.code).toBe(code)
    if (code === 'OK') expect(r.rows).toStrictEqual([])
    expect(r.wire).not.toMatch(LEAK)
    const lines = mark()
    expect(lines).toHaveLength(1)
    // Refused by the schema (validation.failed) or by the compiler's allowlist (tool.call): either way audited.
    expect(lines[0]).toMatchObject({ event: expect.stringMatching(/^(validation\.failed|tool\.call)$/), reason: code, tool })
  })

  it('after every attempt the data is unchanged and the canary is where it was', async () => {
    // The attempts run here, not only in the rows above: alone or shuffled, this test still follows them.
    for (const { tool, args } of INJECTIONS) await call(server, server.keys.admin, tool, args)
    expect(await counts()).toStrictEqual({ customers: 40, orders: 120, products: 10 })
    if (pg !== undefined) expect(await pg.query('SELECT value FROM secrets')).toStrictEqual([{ value: DEMO_CANARY }])
  })

  it('a database error reaches the client as a code and a request id; the cause goes to the audit line', async () => {
    const mark = server.mark()
    const r = await call(server, server.keys.admin, 'run_query', { name: 'broken', params: {} })
    expect(r.code).toBe('ERR_DATABASE')
    expect(r.wire).not.toMatch(LEAK)
    expect(r.wire).toMatch(/database error \(request id [0-9a-f-]{36}\)/)
    expect(mark()[0]).toMatchObject({ event: 'tool.call', decision: 'error', reason: 'ERR_DATABASE', detail: expect.stringContaining('SQLSTATE 42P01') })
  })

  it('reads run in READ ONLY transactions: a write hidden in a named query is refused by the database', async () => {
    const mark = server.mark()
    const r = await call(server, server.keys.admin, 'run_query', { name: 'write_probe', params: {} })
    expect(r.code).toBe('ERR_DATABASE')
    expect(mark()[0]?.detail).toContain('SQLSTATE 25006')
  })

  it('role row caps: analysts get at most 50 rows, by default 20', async () => {
    const over = await call(server, keys.alice ?? '', 'query', { table: 'orders', limit: 51 })
    expect(over.code).toBe('ERR_VALIDATION')
    expect(over.wire).toContain('at most 50 rows for your roles')
    const byDefault = await call(server, keys.alice ?? '', 'query', { table: 'orders' })
    expect(byDefault.rows).toHaveLength(20)
    const named = await call(server, keys.alice ?? '', 'run_query', { name: 'sales_by_category', params: { status: 'paid' } })
    expect(named.code).toBe('OK')
  })

  it('row ownership through the policy: each analyst sees only their own rows, whatever the filters say', async () => {
    for (const who of ['alice', 'bob']) {
      const r = await call(server, keys[who] ?? '', 'query', { table: 'customers', limit: 50 })
      expect(r.rows).toHaveLength(20)
      expect(new Set(r.rows.map((row) => row.account_manager))).toStrictEqual(new Set([who]))
    }
    const other = await call(server, keys.alice ?? '', 'query', { table: 'orders', filters: [{ column: 'account_manager', op: 'eq', value: 'bob' }], limit: 50 })
    expect(other).toMatchObject({ code: 'OK', rows: [] })
  })

  it('restricted tables through the policy; delete is admin-only by default', async () => {
    const mark = server.mark()
    expect((await call(server, keys.alice ?? '', 'query', { table: 'products' })).code).toBe('ERR_FORBIDDEN')
    expect(mark()[0]).toMatchObject({ event: 'authz.denied', rule: 'analysts-no-products' })
    expect((await call(server, keys.alice ?? '', 'delete_records', { table: 'orders', filters: [{ column: 'id', op: 'eq', value: 1 }] })).code).toBe('ERR_FORBIDDEN')
    expect((await call(server, keys.reader ?? '', 'query', { table: 'orders' })).code).toBe('ERR_FORBIDDEN')
  })

  // Backend-specific rows: PGlite has no timer interrupt (README: the embedded database does not enforce statement_timeout).
  if (backend === 'postgres')
    it('statement timeout: PostgreSQL cancels a statement past it', async () => {
      const started = Date.now()
      const r = await call(server, server.keys.admin, 'run_query', { name: 'slow', params: { secs: 5 } })
      expect(r.code).toBe('ERR_TOOL_TIMEOUT')
      expect(r.wire).toContain('the statement ran past its timeout')
      expect(Date.now() - started).toBeLessThan(4000)
    })

  if (backend === 'embedded')
    it('the embedded database is stored under the state directory and keeps the canary out of reach', async () => {
      // The shared server is stopped to open its files, then started again on them: the tests that
      // run after this one (in any order) find it serving the same data. The query first: the
      // database opens on first use.
      expect(await counts()).toStrictEqual({ customers: 40, orders: 120, products: 10 })
      await server.close()
      const db = await PGlite.create(join(server.dir, '.bastion', 'pgdata'))
      try {
        expect((await db.query<{ value: string }>('SELECT value FROM secrets')).rows).toStrictEqual([{ value: DEMO_CANARY }])
        expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders')).rows[0]?.n).toBe(120)
      } finally {
        await db.close()
      }
      server = await reopenServer(server, config())
      expect(await counts()).toStrictEqual({ customers: 40, orders: 120, products: 10 })
    })
})
