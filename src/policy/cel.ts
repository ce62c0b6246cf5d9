import { Environment } from '@marcbachmann/cel-js'
import type { Principal } from '../principal.js'

/** A JSON Schema object as the registry produces it (from zod), or undefined for "any". */
export type JsonSchema = Readonly<Record<string, unknown>>

/** A CEL field declaration: a type name, or nested fields. */
type CelField = string | { [field: string]: CelField }

const DYN_MAP = 'map<string, dyn>'

function scalarType(schema: JsonSchema): string | undefined {
  const type = schema.type
  if (type === 'string') return 'string'
  if (type === 'integer') return 'int'
  if (type === 'number') return 'double'
  if (type === 'boolean') return 'bool'
  if (Array.isArray(schema.enum) && schema.enum.length > 0 && schema.enum.every((v) => typeof v === 'string')) return 'string'
  if (typeof schema.const === 'string') return 'string'
  return undefined
}

/** CEL type of a JSON Schema node: typed where the schema is precise, `dyn` where it is not. */
function celField(schema: unknown): CelField {
  if (schema === null || typeof schema !== 'object') return 'dyn'
  const s = schema as JsonSchema
  const scalar = scalarType(s)
  if (scalar !== undefined) return scalar
  if (s.type === 'array') {
    const items = s.items === undefined ? 'dyn' : celField(s.items)
    return typeof items === 'string' && items !== DYN_MAP ? `list<${items}>` : 'list<dyn>'
  }
  // zod strips unknown keys, so the validated object holds only the declared properties.
  if (s.type === 'object' && s.properties !== null && typeof s.properties === 'object' && (s.additionalProperties === undefined || s.additionalProperties === false)) {
    const fields: Record<string, CelField> = {}
    for (const [key, value] of Object.entries(s.properties as Record<string, unknown>)) fields[key] = celField(value)
    return fields
  }
  if (s.type === 'object') return DYN_MAP
  return 'dyn'
}

/**
 * The CEL declaration of a tool's `args`: nested fields for objects with known properties, so a
 * rule naming an argument the tool does not have, or comparing it to the wrong type, fails to load.
 */
export function argsDeclaration(schema: JsonSchema | undefined): CelField {
  if (schema === undefined) return DYN_MAP
  if (schema.type === 'object' && schema.properties !== null && typeof schema.properties === 'object') {
    const fields: Record<string, CelField> = {}
    for (const [key, value] of Object.entries(schema.properties as Record<string, unknown>)) fields[key] = celField(value)
    return fields
  }
  return DYN_MAP
}

/**
 * The value CEL sees for validated arguments: the same data, with integers as CEL ints (BigInt)
 * where the schema says integer. A copy: the tool receives the validated object itself.
 */
export function toCel(value: unknown, schema: unknown): unknown {
  const s = schema !== null && typeof schema === 'object' ? (schema as JsonSchema) : {}
  if (typeof value === 'number') return s.type === 'integer' && Number.isSafeInteger(value) ? BigInt(value) : value
  if (Array.isArray(value)) return value.map((v) => toCel(v, s.items))
  if (value !== null && typeof value === 'object') {
    const props = s.properties !== null && typeof s.properties === 'object' ? (s.properties as Record<string, unknown>) : {}
    const out: Record<string, unknown> = {}
    // defineProperty: a key named `__proto__` stays an own key and never becomes the prototype.
    for (const [k, v] of Object.entries(value))
      Object.defineProperty(out, k, { value: toCel(v, Object.hasOwn(props, k) ? props[k] : undefined), enumerable: true, writable: false })
    return out
  }
  return value
}

/** What CEL sees as `principal`. */
export function principalValue(p: Principal): Record<string, unknown> {
  return {
    id: p.id,
    sub: p.id,
    kind: p.kind,
    name: p.name,
    roles: [...p.roles],
    scopes: [...(p.scopes ?? [])],
    tenant: p.tenant ?? '',
    claims: { ...(p.claims ?? {}) },
  }
}

const PRINCIPAL_DECLARATION = { id: 'string', sub: 'string', kind: 'string', name: 'string', roles: 'list<string>', scopes: 'list<string>', tenant: 'string', claims: DYN_MAP }

/** Macros that iterate: one level is linear in the input, nested ones are not. */
const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter'])
/** JavaScript regular expressions can backtrack exponentially on hostile input (CEL assumes RE2). */
const FORBIDDEN_CALLS = new Set(['matches'])

export class ConditionError extends Error {
  override readonly name = 'ConditionError'
}

/** Line and column (1-based) of a character offset. */
function position(text: string, offset: number): string {
  const before = text.slice(0, Math.max(0, offset))
  const line = before.split('\n').length
  return `line ${line}, column ${offset - before.lastIndexOf('\n')}`
}

interface Node {
  readonly op: string
  readonly args: unknown
  readonly pos?: number
}

/** Refuse what would break the cost bound: nested comprehensions and regular expressions. */
function assertBounded(node: unknown, text: string, depth = 0): void {
  if (Array.isArray(node)) {
    for (const n of node) assertBounded(n, text, depth)
    return
  }
  if (node === null || typeof node !== 'object' || !('op' in node)) return
  const n = node as Node
  let inner = depth
  if ((n.op === 'rcall' || n.op === 'call') && Array.isArray(n.args) && typeof n.args[0] === 'string') {
    const fn = n.args[0]
    if (FORBIDDEN_CALLS.has(fn)) throw new ConditionError(`${fn}() is not allowed (regular expressions have no cost bound here) at ${position(text, n.pos ?? 0)}`)
    if (COMPREHENSIONS.has(fn)) {
      if (depth >= 1) throw new ConditionError(`nested ${fn}() is not allowed (cost grows with the square of the input) at ${position(text, n.pos ?? 0)}`)
      inner = depth + 1
    }
  }
  if (Array.isArray(n.args)) for (const a of n.args) assertBounded(a, text, inner)
}

/** A compiled condition: evaluates to a boolean or throws. */
export type Condition = (vars: { principal: Record<string, unknown>; args: unknown }) => boolean

/**
 * Compile and type-check a CEL condition once, against the `args` declaration of its target.
 * Cost bound: at most 512 syntax nodes, depth 32, literal lists of 100, no nested comprehensions
 * and no regular expressions, so evaluation is linear in the size of the (size-capped) arguments.
 * @throws ConditionError with the position of the problem.
 */
export function compileCondition(text: string, args: CelField): Condition {
  const env = new Environment({ limits: { maxAstNodes: 512, maxDepth: 32, maxListElements: 100, maxMapEntries: 100, maxCallArguments: 8 } })
    .registerVariable(typeof args === 'string' ? { name: 'args', type: args } : { name: 'args', schema: args })
    .registerVariable({ name: 'principal', schema: PRINCIPAL_DECLARATION })
  let compiled: ReturnType<Environment['parse']>
  try {
    compiled = env.parse(text)
  } catch (error) {
    throw new ConditionError(describe(error, text))
  }
  assertBounded(compiled.ast, text)
  const checked = env.check(text)
  if (!checked.valid) throw new ConditionError(describe(checked.error, text))
  if (checked.type !== 'bool') throw new ConditionError(`the condition is of type ${checked.type}, not bool`)
  return (vars) => {
    const result: unknown = compiled(vars)
    if (typeof result !== 'boolean') throw new ConditionError('condition did not evaluate to a boolean')
    return result
  }
}

function describe(error: unknown, text: string): string {
  if (!(error instanceof Error)) return 'invalid condition'
  const first = error.message.split('\n')[0] ?? 'invalid condition'
  const node = (error as { node?: { pos?: number } }).node
  return node?.pos === undefined ? first : `${first} at ${position(text, node.pos)}`
}
