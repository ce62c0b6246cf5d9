import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { validateConfig } from '../../src/config/load.js'
import { createBastion } from '../../src/index.js'
import { compileDelete, compileSelect, type Filter, OPERATORS, quoteIdent, type TableAllow } from '../../src/tools/sql/compile.js'
import { prepareNamedQuery } from '../../src/tools/sql/named.js'

const TABLE: TableAllow = { name: 'customers', columns: ['id', 'name', 'email', 'owner'], ownerColumn: 'owner', primaryKey: 'id' }
// Everything a compiled SELECT may contain: allowlisted quoted identifiers, fixed keywords, $n.
const GRAMMAR = /^SELECT ("(id|name|email|owner)"(, )?)+ FROM "public"\."customers"( WHERE .+)?( ORDER BY .+)? LIMIT \$\d+ OFFSET \$\d+$/
const TOKEN = /"(?:id|name|email|owner)"|\$\d+|=|<>|<=|>=|<|>|\bI?LIKE\b|\bIS\b|\bNOT\b|\bNULL\b|\bAND\b|\bANY\b|\bASC\b|\bDESC\b|[(),]/g

const value = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.array(fc.oneof(fc.string(), fc.integer()), { minLength: 1, maxLength: 3 }))
const filter = fc.record({ column: fc.constantFrom(...TABLE.columns), op: fc.constantFrom(...OPERATORS), value: fc.option(value, { nil: undefined }) })

describe('SQL compiler', () => {
  it('property: whatever the values, the statement text is allowlisted identifiers, fixed keywords and $n only', () => {
    fc.assert(
      fc.property(fc.array(filter, { maxLength: 6 }), fc.boolean(), fc.integer({ min: 1, max: 1000 }), (filters, own, limit) => {
        let compiled: ReturnType<typeof compileSelect>
        try {
          compiled = compileSelect(
            'public',
            TABLE,
            { filters: filters as Filter[], orderBy: [{ column: 'name', direction: 'desc' }], limit, offset: 0 },
            own ? { owner: 'alice' } : {},
          )
        } catch (error) {
          // Only shape errors (a value missing, a list where one value goes): never a partial statement.
          expect((error as { code?: string }).code).toBe('ERR_VALIDATION')
          return
        }
        expect(compiled.text).toMatch(GRAMMAR)
        const where = compiled.text.slice(compiled.text.indexOf('FROM "public"."customers"') + 25)
        expect(where.replace(TOKEN, '').replace(/WHERE|ORDER BY|LIMIT|OFFSET|\s/g, '')).toBe('')
        // Every value travels as a bind parameter, in order; the owner is last before limit and offset.
        const placeholders = compiled.text.match(/\$\d+/g) ?? []
        expect(placeholders).toStrictEqual(compiled.values.map((_, i) => `$${i + 1}`))
        if (own) expect(compiled.values.at(-3)).toBe('alice')
      }),
      { numRuns: 500 },
    )
  })

  it('refuses identifiers outside the allowlist grammar even if one reached it', () => {
    expect(() => quoteIdent('name"; DROP TABLE x; --')).toThrow(/outside the allowlist grammar/)
    expect(() => compileSelect('public', TABLE, { columns: ['value'], filters: [], orderBy: [], limit: 1, offset: 0 }, {})).toThrow(/columns.0: not a column of customers/)
  })

  it('a delete needs a filter and returns the primary key', () => {
    expect(() => compileDelete('public', TABLE, [], {})).toThrow(/at least one filter/)
    expect(compileDelete('public', TABLE, [{ column: 'id', op: 'in', value: [1, 2] }], { owner: 'bob' })).toStrictEqual({
      text: 'DELETE FROM "public"."customers" WHERE "id" = ANY($1) AND "owner" = $2 RETURNING "id"',
      values: [[1, 2], 'bob'],
    })
  })

  it('named queries: :name becomes $n, casts stay, undeclared or unused parameters are load errors', () => {
    const q = prepareNamedQuery('q', { description: 'd', sql: 'SELECT x::int FROM t WHERE a = :a AND b > :b OR a2 = :a', params: { a: p('string'), b: p('integer') } })
    expect(q).toMatchObject({ text: 'SELECT x::int FROM t WHERE a = $1 AND b > $2 OR a2 = $1', order: ['a', 'b'] })
    expect(() => prepareNamedQuery('q', { description: 'd', sql: 'SELECT :nope', params: {} })).toThrow('sql.queries.q.sql: placeholder :nope is not a declared parameter')
    expect(() => prepareNamedQuery('q', { description: 'd', sql: 'SELECT 1', params: { a: p('string') } })).toThrow('sql.queries.q.params.a: not used in the query')
    expect(() => prepareNamedQuery('q', { description: 'd', sql: 'SELECT 1; DELETE FROM t', params: {} })).toThrow('one statement only')
  })
})

function p(type: 'string' | 'integer') {
  return { type, optional: false, maxLength: 256 }
}

describe('sql configuration errors name the key', () => {
  it.each([
    [{ sql: { tables: { t: { columns: ['a', 'a'] } } } }, 'sql.tables.t.columns: a column is listed twice'],
    [{ sql: { tables: { t: { columns: ['a'], owner: { column: 'b' } } } } }, 'sql.tables.t.owner.column: b is not one of the'],
    [{ sql: { tables: { 'T; DROP': { columns: ['a'] } } } }, 'sql.tables'],
    [{ sql: { tables: { t: { columns: ['a"b'] } } } }, 'sql.tables.t.columns.0'],
    [{ sql: { statementTimeoutMs: 0 } }, 'sql.statementTimeoutMs'],
  ])('%j', (input, says) => {
    expect(() => validateConfig(input, 'object', '/tmp')).toThrow(says)
  })

  it.each([
    [{ sql: { url: { env: 'BASTION_TEST_PG' } } }, 'sql.tables: list the tables'],
    [{ sql: { maxRows: { roles: { wizard: 5 } } } }, 'sql.maxRows.roles.wizard: not a role defined under roles'],
    [{ sql: { queries: { q: { description: 'd', sql: 'SELECT :x' } } } }, 'sql.queries.q.sql: placeholder :x is not a declared parameter'],
    [{ sql: { url: { env: 'BASTION_TEST_PG' }, tables: { t: { columns: ['a'] } } } }, 'sql.url: not a postgres:// or postgresql:// URL'],
  ])('at start: %j', async (config, says) => {
    await expect(
      createBastion({ config, env: { BASTION_TEST_PG: 'mysql://x' }, baseDir: mkdtempSync(join(tmpdir(), 'bastion-sqlcfg-')), logger: pino({ level: 'silent' }), announce: false }),
    ).rejects.toThrow(says)
  })
})
