import { SecurityError } from '../../errors.js'

/** Comparison operators a filter may use: each maps to one fixed SQL fragment. */
export const OPERATORS = ['eq', 'ne', 'lt', 'lte', 'gt', 'gte', 'like', 'ilike', 'in', 'not_in', 'is_null', 'not_null'] as const
export type Operator = (typeof OPERATORS)[number]

const SQL_OP: Record<Exclude<Operator, 'in' | 'not_in' | 'is_null' | 'not_null'>, string> = {
  eq: '=',
  ne: '<>',
  lt: '<',
  lte: '<=',
  gt: '>',
  gte: '>=',
  like: 'LIKE',
  ilike: 'ILIKE',
}

export type FilterValue = string | number | boolean | readonly (string | number)[]

export interface Filter {
  readonly column: string
  readonly op: Operator
  readonly value?: FilterValue | undefined
}

export interface OrderBy {
  readonly column: string
  readonly direction: 'asc' | 'desc'
}

/** What the caller may touch: a table's allowlisted columns and, for ownership, its owner column. */
export interface TableAllow {
  readonly name: string
  readonly columns: readonly string[]
  readonly ownerColumn?: string | undefined
  readonly primaryKey?: string | undefined
}

/** A statement and its bind values: values never become SQL text. */
export interface Compiled {
  readonly text: string
  readonly values: readonly unknown[]
}

/** Row scope the policy imposed: only rows whose owner column equals `owner`. */
export interface RowScope {
  readonly owner?: string | undefined
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/

/**
 * Quote an identifier that came from the allowlist. Allowlisted names are validated at load; this
 * refuses anything else again, so no path from input to SQL text exists even through a bug.
 */
export function quoteIdent(name: string): string {
  if (!IDENTIFIER.test(name)) throw new SecurityError('ERR_INTERNAL', 'identifier outside the allowlist grammar reached the SQL compiler')
  return `"${name}"`
}

function invalid(where: string, what: string): never {
  throw new SecurityError('ERR_VALIDATION', `${where}: ${what}`, { expose: `${where}: ${what}` })
}

function column(table: TableAllow, name: string, where: string): string {
  if (!table.columns.includes(name)) invalid(where, `not a column of ${table.name}`)
  return quoteIdent(name)
}

/** WHERE clause of filters (ANDed) plus the row scope; bind values are numbered from `values.length + 1`. */
export function compileWhere(table: TableAllow, filters: readonly Filter[], scope: RowScope, values: unknown[]): string {
  const parts: string[] = []
  const bind = (v: unknown): string => {
    values.push(v)
    return `$${values.length}`
  }
  filters.forEach((f, i) => {
    const where = `filters.${i}`
    const col = column(table, f.column, `${where}.column`)
    const v = f.value
    if (f.op === 'is_null' || f.op === 'not_null') {
      if (v !== undefined) invalid(`${where}.value`, `${f.op} takes no value`)
      parts.push(`${col} IS ${f.op === 'is_null' ? '' : 'NOT '}NULL`)
      return
    }
    if (v === undefined) invalid(`${where}.value`, `${f.op} needs a value`)
    if (f.op === 'in' || f.op === 'not_in') {
      if (!Array.isArray(v) || v.length === 0) invalid(`${where}.value`, `${f.op} needs a non-empty list`)
      parts.push(f.op === 'in' ? `${col} = ANY(${bind([...v])})` : `NOT (${col} = ANY(${bind([...v])}))`)
      return
    }
    if (Array.isArray(v)) invalid(`${where}.value`, `${f.op} takes one value, not a list`)
    if ((f.op === 'like' || f.op === 'ilike') && typeof v !== 'string') invalid(`${where}.value`, `${f.op} needs a text pattern`)
    parts.push(`${col} ${SQL_OP[f.op]} ${bind(v)}`)
  })
  if (scope.owner !== undefined) {
    if (table.ownerColumn === undefined)
      throw new SecurityError('ERR_FORBIDDEN', `row ownership applies but table ${table.name} has no owner column`, {
        expose: `only your own rows are visible to you, and ${table.name} has no owner`,
      })
    parts.push(`${quoteIdent(table.ownerColumn)} = ${bind(scope.owner)}`)
  }
  return parts.length === 0 ? '' : ` WHERE ${parts.join(' AND ')}`
}

export interface SelectSpec {
  readonly columns?: readonly string[] | undefined
  readonly filters: readonly Filter[]
  readonly orderBy: readonly OrderBy[]
  readonly limit: number
  readonly offset: number
}

/**
 * `SELECT` over one allowlisted table. Identifiers come only from the allowlist; every value,
 * the limit and the offset are bind parameters. One row more than the limit is fetched to tell
 * the caller the result was cut.
 * Does not check: who may read the table or how many rows (the tool and the policy do).
 */
export function compileSelect(schema: string, table: TableAllow, spec: SelectSpec, scope: RowScope): Compiled {
  const values: unknown[] = []
  const columns = spec.columns ?? table.columns
  const list = columns.map((c, i) => column(table, c, `columns.${i}`)).join(', ')
  const where = compileWhere(table, spec.filters, scope, values)
  const order = spec.orderBy.map((o, i) => `${column(table, o.column, `orderBy.${i}.column`)} ${o.direction === 'desc' ? 'DESC' : 'ASC'}`)
  if (!Number.isSafeInteger(spec.limit) || spec.limit < 1) invalid('limit', 'must be a positive integer')
  if (!Number.isSafeInteger(spec.offset) || spec.offset < 0) invalid('offset', 'must be zero or more')
  values.push(spec.limit + 1)
  const limit = `$${values.length}`
  values.push(spec.offset)
  const offset = `$${values.length}`
  const text = `SELECT ${list} FROM ${quoteIdent(schema)}.${quoteIdent(table.name)}${where}${order.length === 0 ? '' : ` ORDER BY ${order.join(', ')}`} LIMIT ${limit} OFFSET ${offset}`
  return { text, values }
}

/** `SELECT count(*)` of the rows a filter set selects: the dry run of a delete. */
export function compileCount(schema: string, table: TableAllow, filters: readonly Filter[], scope: RowScope): Compiled {
  const values: unknown[] = []
  const where = compileWhere(table, filters, scope, values)
  return { text: `SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.${quoteIdent(table.name)}${where}`, values }
}

/** `DELETE … RETURNING` the primary key (or nothing) of the rows a non-empty filter set selects. */
export function compileDelete(schema: string, table: TableAllow, filters: readonly Filter[], scope: RowScope): Compiled {
  if (filters.length === 0) invalid('filters', 'a delete needs at least one filter')
  const values: unknown[] = []
  const where = compileWhere(table, filters, scope, values)
  const returning = table.primaryKey === undefined ? '' : ` RETURNING ${quoteIdent(table.primaryKey)}`
  return { text: `DELETE FROM ${quoteIdent(schema)}.${quoteIdent(table.name)}${where}${returning}`, values }
}
