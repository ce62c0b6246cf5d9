import { createRequire } from 'node:module'
import type { ErrorObject, ValidateFunction } from 'ajv'
import type { Ajv2020 as Ajv2020Class } from 'ajv/dist/2020.js'

// CommonJS with a default export: required, so the class is the same under tsc and Node.
const Ajv2020 = createRequire(import.meta.url)('ajv/dist/2020.js').default as typeof Ajv2020Class

/** One validator for every upstream schema: compiled once per tool, at start. */
// `logger: false`: the library's warnings (an unknown format) would go to the console, not the operator log.
const ajv = new Ajv2020({ strict: false, allErrors: false, validateSchema: true, addUsedSchema: false, logger: false })

/** The first problem with a value, in bastion's words (never the library's), or undefined when it is valid. */
export type Check = (value: unknown) => { readonly path: string; readonly what: string } | undefined

const bound = (n: unknown, unit: string): string => `${String(n)}${unit}`

/** An ajv error in bastion's own words: where, and what is wrong (never the value). */
function describe(error: ErrorObject): { path: string; what: string } {
  const at = error.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
  const p = error.params as Record<string, unknown>
  const path = (key: unknown): string => [...at, ...(key === undefined ? [] : [String(key)])].join('.') || 'arguments'
  switch (error.keyword) {
    case 'type':
      return { path: path(undefined), what: `expected ${String(p.type)}` }
    case 'required':
      return { path: path(p.missingProperty), what: 'required' }
    case 'additionalProperties':
      return { path: path(p.additionalProperty), what: 'an unknown key' }
    case 'enum':
    case 'const':
      return { path: path(undefined), what: 'not one of the allowed values' }
    case 'minimum':
    case 'exclusiveMinimum':
      return { path: path(undefined), what: `at least ${bound(p.limit, '')}` }
    case 'maximum':
    case 'exclusiveMaximum':
      return { path: path(undefined), what: `at most ${bound(p.limit, '')}` }
    case 'minLength':
      return { path: path(undefined), what: `at least ${bound(p.limit, ' characters')}` }
    case 'maxLength':
      return { path: path(undefined), what: `at most ${bound(p.limit, ' characters')}` }
    case 'minItems':
      return { path: path(undefined), what: `at least ${bound(p.limit, ' items')}` }
    case 'maxItems':
      return { path: path(undefined), what: `at most ${bound(p.limit, ' items')}` }
    case 'pattern':
      return { path: path(undefined), what: 'does not match the required pattern' }
    case 'format':
      return { path: path(undefined), what: `not a valid ${String(p.format)}` }
    case 'anyOf':
    case 'oneOf':
      return { path: path(undefined), what: 'matches none of the allowed forms' }
    default:
      return { path: path(undefined), what: 'invalid' }
  }
}

/**
 * Compile a JSON Schema (2020-12; a `$schema` naming another draft is read as 2020-12, the MCP
 * default) into a check. @throws Error when the schema is not a valid JSON Schema
 * Does not check: `format` values (formats are annotations here); remote `$ref`s (none is fetched).
 */
export function compileSchema(schema: Readonly<Record<string, unknown>>): Check {
  const { $schema: _dialect, $id: _id, ...rest } = schema
  let validate: ValidateFunction
  try {
    validate = ajv.compile(rest)
  } catch (error) {
    throw new Error(`not a valid JSON Schema (${error instanceof Error ? error.message.slice(0, 200) : 'error'})`)
  }
  return (value) => {
    if (validate(value)) return undefined
    const first = validate.errors?.[0]
    return first === undefined ? { path: 'arguments', what: 'invalid' } : describe(first)
  }
}
