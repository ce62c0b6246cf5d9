import { z } from 'zod'
import type { NamedQueryConfig, TableConfig } from '../../config/sql-schema.js'
import { SecurityError } from '../../errors.js'
import type { Principal } from '../../principal.js'
import type { CallToolResult } from '../../protocol.js'
import { Confirmations } from '../confirm.js'
import type { InProcessTool, ToolContext } from '../registry.js'
import { compileCount, compileDelete, compileSelect, type Filter, OPERATORS, type RowScope, type TableAllow } from './compile.js'
import type { SqlDatabase } from './database.js'
import { databaseError } from './db-error.js'
import { namedQueriesInput, prepareNamedQuery } from './named.js'

export interface SqlToolsOptions {
  readonly db: SqlDatabase
  readonly schema: string
  readonly tables: Readonly<Record<string, TableConfig>>
  readonly queries: Readonly<Record<string, NamedQueryConfig>>
  readonly maxRows: { readonly default: number; readonly roles: Readonly<Record<string, number>> }
  readonly maxDeleteRows: number
  readonly confirmations: Confirmations
}

const MAX_TEXT = 1024
const value = z.union([
  z.string().max(MAX_TEXT),
  z.number(),
  z.boolean(),
  z
    .array(z.union([z.string().max(MAX_TEXT), z.number()]))
    .min(1)
    .max(100),
])
/** Conditions, all of which must hold: `query` and `delete_records` take the same shape. */
const filterList = (columns: [string, ...string[]]) => z.array(z.strictObject({ column: z.enum(columns), op: z.enum(OPERATORS), value: value.optional() })).max(16)

/** The largest row cap among the caller's roles, else the default. */
export function rowCap(maxRows: SqlToolsOptions['maxRows'], principal: Principal): number {
  let cap: number | undefined
  for (const role of principal.roles) {
    const n = Object.hasOwn(maxRows.roles, role) ? maxRows.roles[role] : undefined
    if (n !== undefined && (cap === undefined || n > cap)) cap = n
  }
  return cap ?? maxRows.default
}

function allowOf(name: string, t: TableConfig): TableAllow {
  return { name, columns: t.columns, ownerColumn: t.owner?.column, primaryKey: t.primaryKey }
}

/**
 * The row scope the deciding policy rule imposes: `output: { rows: own }` limits every statement
 * to rows whose owner column holds the caller. Anything but `own`, `all` or nothing is refused.
 */
function scopeOf(ctx: ToolContext, table: string, t: TableConfig): RowScope {
  const rows = ctx.policy.rows
  if (rows === undefined || rows === 'all') return {}
  if (rows !== 'own') throw new SecurityError('ERR_FORBIDDEN', `policy output rows=${rows} is not own or all`)
  if (t.owner === undefined)
    throw new SecurityError('ERR_FORBIDDEN', `rows=own but table ${table} has no owner`, { expose: `only your own rows are visible to you, and ${table} has no owner` })
  const p = ctx.principal
  const owner = t.owner.principal === 'id' ? p.id : t.owner.principal === 'name' ? p.name : p.tenant
  if (owner === undefined)
    throw new SecurityError('ERR_FORBIDDEN', `rows=own on ${table} by tenant, and ${p.id} has no tenant`, {
      expose: 'only your own rows are visible to you, and you have no tenant',
    })
  return { owner }
}

/** One read-only statement that fetched up to `limit + 1` rows: the rows, cut at `limit`, and whether it cut. */
async function readRows(db: SqlDatabase, text: string, values: readonly unknown[], limit: number, what: string, ctx: ToolContext) {
  const result = await db
    .transaction('read', (s) => s.query(text, values))
    .catch((e: unknown) => {
      throw databaseError(e, what)
    })
  const truncated = result.rows.length > limit
  const rows = truncated ? result.rows.slice(0, limit) : result.rows
  ctx.audit({ rows: rows.length })
  return { columns: result.fields, rows, rowCount: rows.length, truncated }
}

function json(data: unknown): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(data) }] }
}

/**
 * `query`: read rows of one allowlisted table with structured filters. Table, columns, operators
 * and ordering come only from the allowlist; every value, the limit and the offset are bind
 * parameters; the statement runs in a `READ ONLY` transaction under `statement_timeout`.
 * Does not check: which tables a role may read or argument rules (policy rules on `args.table`
 * do), personal data in the rows (the PII stage masks the result).
 */
export function queryTool(o: SqlToolsOptions) {
  const names = Object.keys(o.tables) as [string, ...string[]]
  const columns = [...new Set(Object.values(o.tables).flatMap((t) => t.columns))] as [string, ...string[]]
  const globalMax = Math.max(o.maxRows.default, ...Object.values(o.maxRows.roles))
  const input = z.strictObject({
    table: z.enum(names).describe('Table to read'),
    columns: z.array(z.enum(columns)).min(1).max(64).optional().describe('Columns to return (default: all allowed)'),
    filters: filterList(columns)
      .default([])
      .describe('Conditions, all of which must hold. in/not_in take a list; is_null/not_null take no value; like/ilike take a pattern with % and _'),
    orderBy: z
      .array(z.strictObject({ column: z.enum(columns), direction: z.enum(['asc', 'desc']).default('asc') }))
      .max(4)
      .default([]),
    limit: z.number().int().min(1).max(globalMax).optional().describe(`Most rows to return (capped per role; default ${o.maxRows.default})`),
    offset: z.number().int().min(0).max(1_000_000).default(0),
  })
  const tool: InProcessTool<typeof input> = {
    name: 'query',
    title: 'Query the database',
    description: `Read rows from one table with structured filters. Tables: ${names.map((n) => `${n} (${o.tables[n]?.columns.join(', ')})`).join('; ')}.`,
    input,
    permissions: ['sql:query'],
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run(args, ctx) {
      const t = o.tables[args.table]
      if (t === undefined) throw new SecurityError('ERR_VALIDATION', 'table outside the allowlist', { expose: 'table: not allowed' })
      const cap = rowCap(o.maxRows, ctx.principal)
      const limit = args.limit ?? Math.min(cap, o.maxRows.default)
      if (limit > cap) throw new SecurityError('ERR_VALIDATION', `limit ${limit} over the role cap ${cap}`, { expose: `limit: at most ${cap} rows for your roles` })
      const scope = scopeOf(ctx, args.table, t)
      const compiled = compileSelect(
        o.schema,
        allowOf(args.table, t),
        { columns: args.columns, filters: args.filters as Filter[], orderBy: args.orderBy, limit, offset: args.offset },
        scope,
      )
      ctx.audit({ sql: { table: args.table, filters: args.filters.length, limit, scoped: scope.owner !== undefined } })
      return json({ table: args.table, ...(await readRows(o.db, compiled.text, compiled.values, limit, `query on ${args.table}`, ctx)) })
    },
  }
  return tool
}

/**
 * `run_query`: one of the operator's pre-defined read-only queries, with typed parameters bound
 * as values. The result is cut at the caller's row cap.
 * Does not check: what the operator's SQL reads (it is trusted config), row ownership (write it
 * into the query), personal data (the PII stage masks the result).
 */
export function runQueryTool(o: SqlToolsOptions) {
  const prepared = new Map(Object.entries(o.queries).map(([name, q]) => [name, prepareNamedQuery(name, q)]))
  const input = namedQueriesInput(o.queries) as z.ZodType<{ name: string; params: Record<string, unknown> }>
  const tool: InProcessTool<typeof input> = {
    name: 'run_query',
    title: 'Run a pre-defined query',
    description: `Run one of the pre-defined read-only queries: ${[...prepared.values()].map((q) => `${q.name} (${q.description})`).join('; ')}.`,
    input,
    permissions: ['sql:query'],
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run(args, ctx) {
      const q = prepared.get(args.name)
      if (q === undefined) throw new SecurityError('ERR_VALIDATION', 'unknown query', { expose: 'name: not a defined query' })
      const cap = rowCap(o.maxRows, ctx.principal)
      const values: unknown[] = q.order.map((p) => args.params[p] ?? null)
      values.push(cap + 1)
      ctx.audit({ sql: { query: q.name } })
      const text = `SELECT * FROM (\n${q.text}\n) AS bastion_named LIMIT $${values.length}`
      return json({ query: q.name, ...(await readRows(o.db, text, values, cap, `named query ${q.name}`, ctx)) })
    },
  }
  return tool
}

function describeFilters(filters: readonly Filter[]): string {
  return filters.map((f) => `${f.column} ${f.op}${f.value === undefined ? '' : ` ${JSON.stringify(f.value)}`}`).join(' and ')
}

/**
 * `delete_records`: delete the rows of a deletable table that match at least one filter, after
 * a dry run and the user's confirmation. The deletion happens only if the confirmed count still
 * holds; it is audited with the table, the count and the deleted keys.
 * Does not check: rows in other tables that depend on these (PostgreSQL's foreign keys do).
 */
export function deleteRecordsTool(o: SqlToolsOptions) {
  const deletable = Object.entries(o.tables).filter(([, t]) => t.delete)
  const names = deletable.map(([n]) => n) as [string, ...string[]]
  const columns = [...new Set(deletable.flatMap(([, t]) => t.columns))] as [string, ...string[]]
  const input = z.strictObject({
    table: z.enum(names),
    filters: filterList(columns).min(1),
  })
  const tool: InProcessTool<typeof input> = {
    name: 'delete_records',
    title: 'Delete rows (asks the user first)',
    description: `Delete the rows matching all filters from ${names.join(', ')}. Shows how many rows would go and asks the user to confirm first.`,
    input,
    permissions: ['sql:delete'],
    annotations: { destructiveHint: true, idempotentHint: false, openWorldHint: false },
    async run(args, ctx) {
      const t = o.tables[args.table]
      if (t === undefined || !t.delete) throw new SecurityError('ERR_VALIDATION', 'table not deletable', { expose: 'table: not deletable' })
      const allow = allowOf(args.table, t)
      const scope = scopeOf(ctx, args.table, t)
      const filters = args.filters as Filter[]
      const state = Confirmations.stateOf(ctx)
      if (state === undefined) {
        const count = compileCount(o.schema, allow, filters, scope)
        const n = await o.db
          .transaction('read', (s) => s.query(count.text, count.values))
          .then((r) => Number(r.rows[0]?.n ?? 0))
          .catch((e: unknown) => {
            throw databaseError(e, `delete dry run on ${args.table}`)
          })
        ctx.audit({ dryRun: { table: args.table, rows: n } })
        if (n === 0) return json({ table: args.table, deleted: 0, note: 'no rows match; nothing to delete' })
        if (n > o.maxDeleteRows)
          throw new SecurityError('ERR_VALIDATION', `would delete ${n} rows, cap ${o.maxDeleteRows}`, { expose: `would delete ${n} rows; at most ${o.maxDeleteRows} per call` })
        const message = `Delete ${n} row${n === 1 ? '' : 's'} from ${args.table} where ${describeFilters(filters)}? This cannot be undone.`.slice(0, 1000)
        return o.confirmations.ask(ctx, tool.name, args, message, { table: args.table, rows: n })
      }
      const preview = await o.confirmations.redeem(ctx, tool.name, args, state)
      const statement = compileDelete(o.schema, allow, filters, scope)
      const deleted = await o.db
        .transaction('write', async (s) => {
          const r = await s.query(statement.text, statement.values)
          // The user confirmed a number of rows: if the data moved since, change nothing.
          if (r.rowCount !== preview.rows)
            throw new SecurityError('ERR_CONFIRMATION_INVALID', `confirmed ${String(preview.rows)} rows, ${r.rowCount} match now; rolled back`, {
              expose: `the matching rows changed since you confirmed (${String(preview.rows)} then, ${r.rowCount} now); nothing was deleted`,
            })
          return r
        })
        .catch((e: unknown) => {
          throw databaseError(e, `delete on ${args.table}`)
        })
      const keys = t.primaryKey === undefined ? undefined : deleted.rows.slice(0, 100).map((r) => r[t.primaryKey as string])
      ctx.audit({ changed: { table: args.table, deleted: deleted.rowCount, ...(keys === undefined ? {} : { keys }) } })
      return json({ table: args.table, deleted: deleted.rowCount })
    },
  }
  return tool
}
