import { z } from 'zod'
import type { NamedQueryConfig, QueryParamConfig } from '../../config/sql-schema.js'

/** A named query ready to run: `$n` placeholders and the parameter each one binds. */
export interface PreparedQuery {
  readonly name: string
  readonly description: string
  readonly text: string
  readonly order: readonly string[]
}

// `:name`, but not `::type` casts or `a:b` inside words.
const PLACEHOLDER = /(?<![:\w]):([a-z_][a-z0-9_]*)/g

/**
 * Turn `:name` placeholders into `$n` bind parameters. Every placeholder must be a declared
 * parameter and every parameter must be used.
 * @throws Error naming the query and the placeholder.
 */
export function prepareNamedQuery(name: string, config: NamedQueryConfig): PreparedQuery {
  const order: string[] = []
  const text = config.sql.replace(PLACEHOLDER, (_match, param: string) => {
    if (!Object.hasOwn(config.params, param)) throw new Error(`sql.queries.${name}.sql: placeholder :${param} is not a declared parameter`)
    let index = order.indexOf(param)
    if (index === -1) index = order.push(param) - 1
    return `$${index + 1}`
  })
  for (const param of Object.keys(config.params)) {
    if (!order.includes(param)) throw new Error(`sql.queries.${name}.params.${param}: not used in the query`)
  }
  if (/;\s*\S/.test(text)) throw new Error(`sql.queries.${name}.sql: one statement only`)
  return { name, description: config.description, text: text.replace(/;\s*$/, ''), order }
}

function paramSchema(p: QueryParamConfig): z.ZodType {
  let schema: z.ZodType
  switch (p.type) {
    case 'string':
      schema = p.enum === undefined ? z.string().max(p.maxLength) : z.enum(p.enum as [string, ...string[]])
      break
    case 'integer': {
      let n = z.number().int()
      if (p.min !== undefined) n = n.min(p.min)
      if (p.max !== undefined) n = n.max(p.max)
      schema = n
      break
    }
    case 'number': {
      let n = z.number()
      if (p.min !== undefined) n = n.min(p.min)
      if (p.max !== undefined) n = n.max(p.max)
      schema = n
      break
    }
    case 'boolean':
      schema = z.boolean()
      break
    case 'date':
      schema = z.iso.date().or(z.iso.datetime({ offset: true }))
      break
  }
  if (p.description !== undefined) schema = schema.describe(p.description)
  return p.optional ? schema.optional() : schema
}

/**
 * The `run_query` input: `name` picks a query, `params` are exactly its typed parameters. The
 * object is checked whole here (a refinement ties the parameters to the name), so the pipeline's
 * single validation is the whole check.
 */
export function namedQueriesInput(queries: Record<string, NamedQueryConfig>) {
  const schemas = new Map(
    Object.entries(queries).map(([name, q]) => [name, z.strictObject(Object.fromEntries(Object.entries(q.params).map(([p, c]) => [p, paramSchema(c)])))] as const),
  )
  const names = [...schemas.keys()] as [string, ...string[]]
  if (names.length === 0) throw new Error('sql.queries: no queries')
  const [first, ...rest] = [...schemas.values()]
  const params = rest.length === 0 || first === undefined ? (first ?? z.strictObject({})) : z.union([first, ...rest])
  return z
    .strictObject({
      name: z.enum(names).describe(
        Object.entries(queries)
          .map(([n, q]) => `${n}: ${q.description}`)
          .join('; '),
      ),
      params: params.default({}),
    })
    .superRefine((value, ctx) => {
      const parsed = schemas.get(value.name)?.safeParse(value.params)
      if (parsed === undefined || parsed.success) return
      for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', path: ['params', ...issue.path.map(String)], message: issue.message })
    })
}
