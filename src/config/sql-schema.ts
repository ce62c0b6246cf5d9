import { z } from 'zod'
import { secretRef } from './secret-ref.js'

/** A PostgreSQL identifier bastion will quote: lower-case, no quoting tricks needed or allowed. */
export const sqlIdentifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier (letters, digits, _)')
const roleName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a role name')

const tableSchema = z.strictObject({
  /** The columns the query tools may read, filter and order by. Others do not exist for them. */
  columns: z.array(sqlIdentifier).min(1).max(256),
  /** Row ownership: the column compared with the caller when a policy rule says `output: { rows: own }`. */
  owner: z
    .strictObject({
      column: sqlIdentifier,
      /** Which part of the caller the column holds: its principal id (default), its name, or its tenant. */
      principal: z.enum(['id', 'name', 'tenant']).default('id'),
    })
    .optional(),
  /** The key reported for each row `delete_records` removes (audit). */
  primaryKey: sqlIdentifier.optional(),
  /** May `delete_records` delete from this table (permission `sql:delete`, confirmation always)? */
  delete: z.boolean().default(false),
})

const paramSchema = z.strictObject({
  type: z.enum(['string', 'integer', 'number', 'boolean', 'date']),
  description: z.string().max(500).optional(),
  optional: z.boolean().default(false),
  min: z.number().optional(),
  max: z.number().optional(),
  maxLength: z.number().int().min(1).max(65_536).default(256),
  enum: z.array(z.string().max(256)).min(1).max(256).optional(),
})

const namedQuerySchema = z.strictObject({
  description: z.string().min(1).max(1000),
  /**
   * One read-only statement with `:name` placeholders, each a declared parameter. Placeholders
   * become `$n` bind parameters; values never become SQL text.
   */
  sql: z.string().min(1).max(20_000),
  params: z.record(sqlIdentifier, paramSchema).default({}),
})

const rowCap = z.number().int().min(1).max(100_000)

/** The SQL tools: `query`, `run_query` and `delete_records`. */
export const sqlSchema = z
  .strictObject({
    /** Unset: on unless a library registers its own tools (see `builtinFeatures`). */
    enabled: z.boolean().optional(),
    /**
     * A PostgreSQL URL (env or file reference: it may hold a password). Absent: an embedded
     * database (PGlite) under the state directory, seeded with demo tables on first start.
     */
    url: secretRef.optional(),
    /** Folder of the embedded database, under the state directory. */
    embeddedDir: z.string().min(1).default('pgdata'),
    /** Schema the allowlisted tables live in. */
    schema: sqlIdentifier.default('public'),
    /** Connections to a real PostgreSQL. */
    poolSize: z.number().int().min(1).max(100).default(4),
    /** `statement_timeout` of every statement (enforced by PostgreSQL; see README for the embedded database). */
    statementTimeoutMs: z.number().int().min(10).max(600_000).default(5000),
    /** Most rows one call may return: per role (the caller's largest), else `default`. */
    maxRows: z.strictObject({ default: rowCap.default(100), roles: z.record(roleName, rowCap).default({}) }).prefault({}),
    /** Most rows one confirmed `delete_records` call may delete. */
    maxDeleteRows: rowCap.default(1000),
    /** The allowlist. Absent with the embedded database: the demo tables. Required with `url`. */
    tables: z.record(sqlIdentifier, tableSchema).optional(),
    /** Pre-defined read-only queries for `run_query`. Absent with the embedded database: the demo ones. */
    queries: z.record(sqlIdentifier, namedQuerySchema).optional(),
  })
  .superRefine((sql, ctx) => {
    for (const [name, table] of Object.entries(sql.tables ?? {})) {
      const columns = new Set(table.columns)
      if (columns.size !== table.columns.length) ctx.addIssue({ code: 'custom', path: ['tables', name, 'columns'], message: 'a column is listed twice' })
      if (table.owner !== undefined && !columns.has(table.owner.column))
        ctx.addIssue({ code: 'custom', path: ['tables', name, 'owner', 'column'], message: `${table.owner.column} is not one of the table's columns` })
      if (table.primaryKey !== undefined && !columns.has(table.primaryKey))
        ctx.addIssue({ code: 'custom', path: ['tables', name, 'primaryKey'], message: `${table.primaryKey} is not one of the table's columns` })
    }
  })

export type SqlConfig = z.output<typeof sqlSchema>
export type TableConfig = z.output<typeof tableSchema>
export type NamedQueryConfig = z.output<typeof namedQuerySchema>
export type QueryParamConfig = z.output<typeof paramSchema>
