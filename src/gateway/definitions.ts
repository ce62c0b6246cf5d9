import { createHash } from 'node:crypto'

/** A JSON value as an upstream sends it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/**
 * What is pinned of an upstream tool: everything a model or bastion reads to decide how to use it.
 * A change to any of these is drift (the "rug pull": a tool changed after it was approved).
 */
export interface ToolDefinitionPin {
  readonly name: string
  readonly title?: string
  readonly description?: string
  readonly inputSchema: { readonly [key: string]: Json }
  readonly outputSchema?: { readonly [key: string]: Json }
  readonly annotations?: { readonly [key: string]: Json }
}

/** Canonical JSON: object keys sorted, no whitespace. The same definition always hashes the same. */
export function canonicalJson(value: unknown): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical)
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>
      return Object.fromEntries(
        Object.keys(o)
          .filter((k) => o[k] !== undefined)
          .sort()
          .map((k) => [k, canonical(o[k])]),
      )
    }
    return v
  }
  return JSON.stringify(canonical(value))
}

/** `sha256:<hex>` of the canonical JSON of the pinned fields. */
export function digestOf(def: ToolDefinitionPin): string {
  return `sha256:${createHash('sha256')
    .update(canonicalJson(pinnedFields(def)))
    .digest('hex')}`
}

const isObject = (v: unknown): v is Record<string, Json> => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * The pinned fields of a tool as an upstream listed it, or why it cannot be served: a name that
 * is not a string, an input schema that is not a JSON Schema object.
 * Does not check: the schemas' own validity (compiling them does, when the tool is built).
 */
export function pinnedFields(raw: unknown): ToolDefinitionPin {
  if (!isObject(raw)) throw new TypeError('a tool definition is not an object')
  const { name, title, description, inputSchema, outputSchema, annotations } = raw
  // MCP tool names: 1–128 of A-Z a-z 0-9 _ - . (a name bastion could not register is not served).
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(name)) throw new TypeError(`a tool without a valid name (${JSON.stringify(String(name).slice(0, 64))})`)
  if (!isObject(inputSchema) || inputSchema.type !== 'object') throw new TypeError(`tool ${name}: inputSchema is not an object schema`)
  if (outputSchema !== undefined && (!isObject(outputSchema) || outputSchema.type !== 'object')) throw new TypeError(`tool ${name}: outputSchema is not an object schema`)
  if (title !== undefined && typeof title !== 'string') throw new TypeError(`tool ${name}: title is not a string`)
  if (description !== undefined && typeof description !== 'string') throw new TypeError(`tool ${name}: description is not a string`)
  if (annotations !== undefined && !isObject(annotations)) throw new TypeError(`tool ${name}: annotations is not an object`)
  return {
    name,
    ...(title === undefined ? {} : { title }),
    ...(description === undefined ? {} : { description }),
    inputSchema,
    ...(outputSchema === undefined ? {} : { outputSchema }),
    ...(annotations === undefined ? {} : { annotations }),
  }
}

/** One difference between a pinned and a current definition. */
export interface FieldChange {
  /** `description`, `inputSchema.properties.path.type`, … */
  readonly path: string
  readonly pinned: Json | undefined
  readonly current: Json | undefined
}

/** Field-by-field differences (leaves of objects; arrays compared whole). Empty: the same definition. */
export function diffDefinitions(pinned: ToolDefinitionPin | undefined, current: ToolDefinitionPin | undefined): FieldChange[] {
  const changes: FieldChange[] = []
  const walk = (path: string, a: Json | undefined, b: Json | undefined): void => {
    if (isObject(a) && isObject(b)) {
      for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) walk(path === '' ? key : `${path}.${key}`, a[key], b[key])
      return
    }
    if (canonicalJson(a) !== canonicalJson(b)) changes.push({ path: path === '' ? '(tool)' : path, pinned: a, current: b })
  }
  walk('', pinned as unknown as Json | undefined, current as unknown as Json | undefined)
  return changes
}

/**
 * Invisible characters a description may hide instructions in: Unicode tag characters
 * (U+E0000–U+E007F), zero-width and bidirectional controls, the byte-order mark.
 */
const INVISIBLE = /[\u{E0000}-\u{E007F}\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]/gu

/** Phrases aimed at the model rather than at describing the tool. A screen, not a guarantee. */
const INSTRUCTION_LIKE: readonly RegExp[] = [
  /\bignore (?:all |any )?(?:previous|prior|above|earlier) (?:instructions|prompts|messages)\b/i,
  /\bdisregard (?:all |any )?(?:previous|prior|above|earlier)\b/i,
  /\byou (?:must|should) (?:now |always )?(?:call|use|run|invoke|send|read)\b/i,
  /\bdo not (?:tell|inform|show|mention)[^.]{0,40}\b(?:user|human)\b/i,
  /<\s*\/?\s*(?:system|important|instructions?)\s*>/i,
  /\bsystem prompt\b/i,
]

/** What screening found in a text: invisible characters (stripped) and instruction-like phrases (flagged). */
export interface Screened {
  readonly text: string
  readonly invisible: number
  readonly flagged: readonly string[]
}

/** Strip invisible characters and flag instruction-like phrases. Does not check: meaning (paraphrase, other languages, encodings). */
export function screenText(text: string): Screened {
  let invisible = 0
  const stripped = text.replace(INVISIBLE, () => {
    invisible++
    return ''
  })
  const flagged = INSTRUCTION_LIKE.filter((r) => r.test(stripped)).map((r) => r.source.slice(0, 40))
  return { text: stripped, invisible, flagged }
}

/** What is pinned of an upstream resource (a fixed URI) or prompt: what a client reads to decide to use it. */
export interface ResourcePin {
  readonly name: string
  readonly uri: string
  readonly title?: string
  readonly description?: string
  readonly mimeType?: string
}

export interface PromptPin {
  readonly name: string
  readonly title?: string
  readonly description?: string
  readonly arguments?: readonly { readonly name: string; readonly description?: string; readonly required?: boolean }[]
}

const optionalString = (o: Record<string, unknown>, key: string, what: string): Record<string, string> => {
  const v = o[key]
  if (v === undefined) return {}
  if (typeof v !== 'string') throw new TypeError(`${what}: ${key} is not a string`)
  return { [key]: v }
}

/** The pinned fields of a resource as an upstream listed it. @throws TypeError saying why it cannot be served */
export function resourceFields(raw: unknown): ResourcePin {
  if (!isObject(raw)) throw new TypeError('a resource is not an object')
  const { name, uri } = raw
  if (typeof name !== 'string' || name.length === 0 || name.length > 128) throw new TypeError('a resource without a valid name')
  if (typeof uri !== 'string' || uri.length === 0 || uri.length > 2048) throw new TypeError(`resource ${name}: no valid uri`)
  const what = `resource ${name}`
  return { name, uri, ...optionalString(raw, 'title', what), ...optionalString(raw, 'description', what), ...optionalString(raw, 'mimeType', what) }
}

/** The pinned fields of a prompt as an upstream listed it. @throws TypeError saying why it cannot be served */
export function promptFields(raw: unknown): PromptPin {
  if (!isObject(raw)) throw new TypeError('a prompt is not an object')
  const { name, arguments: args } = raw
  if (typeof name !== 'string' || name.length === 0 || name.length > 128) throw new TypeError('a prompt without a valid name')
  const what = `prompt ${name}`
  let list: PromptPin['arguments']
  if (args !== undefined) {
    if (!Array.isArray(args)) throw new TypeError(`${what}: arguments is not a list`)
    list = args.map((a) => {
      if (!isObject(a) || typeof a.name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(a.name)) throw new TypeError(`${what}: an argument without a valid name`)
      if (a.required !== undefined && typeof a.required !== 'boolean') throw new TypeError(`${what}: argument ${a.name}: required is not a boolean`)
      return { name: a.name, ...optionalString(a, 'description', what), ...(a.required === undefined ? {} : { required: a.required }) }
    })
  }
  return { name, ...optionalString(raw, 'title', what), ...optionalString(raw, 'description', what), ...(list === undefined ? {} : { arguments: list }) }
}

/** `sha256:<hex>` of any pinned definition's canonical JSON. */
export function digestOfValue(def: object): string {
  return `sha256:${createHash('sha256').update(canonicalJson(def)).digest('hex')}`
}
