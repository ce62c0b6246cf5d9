import fc from 'fast-check'
import type { RawHeader, RawRequest } from './raw-http.js'

/** Characters that break parsers: controls, separators, non-ASCII, lone surrogates, and any code unit. */
export const hostileChar = fc.oneof(
  fc.constantFrom('\u0000', '\u0001', '\t', '\r', '\n', '\u007f', ' ', ',', ';', ':', '"', '\\', 'é', 'ā', '😀', '\ud800', '\u202e'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
)
export const hostileString = fc.string({ unit: hostileChar, maxLength: 40 })

// Headers the harness owns: framing must stay true, or the server would rightly wait for bytes that never come.
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'expect', 'upgrade'])
const HEADER_NAMES = ['authorization', 'x-api-key', 'host', 'mcp-session-id', 'mcp-protocol-version', 'mcp-method', 'mcp-name', 'content-type', 'accept', 'x-request-id', 'origin']

export type HeaderMutation =
  | { kind: 'drop'; at: number }
  | { kind: 'duplicate'; at: number }
  | { kind: 'replace'; at: number; value: string }
  | { kind: 'add'; name: string; value: string }

export type JsonMutation =
  | { kind: 'swap'; path: number[]; value: unknown }
  | { kind: 'delete'; path: number[] }
  | { kind: 'nest'; path: number[]; depth: number; array: boolean }
  | { kind: 'huge'; path: number[]; size: number }

export type ByteMutation = { kind: 'truncate'; at: number } | { kind: 'replace'; at: number; byte: number } | { kind: 'insert'; at: number; bytes: Uint8Array }

const path = fc.array(fc.nat(), { maxLength: 4 })
const otherValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  hostileString,
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
)

export const headerMutation: fc.Arbitrary<HeaderMutation> = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), value: hostileString }),
  fc.record({
    kind: fc.constant('add' as const),
    name: fc.oneof(fc.constantFrom(...HEADER_NAMES), fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/)).filter((n) => !FRAMING.has(n)),
    value: hostileString,
  }),
)

export const jsonMutation: fc.Arbitrary<JsonMutation> = fc.oneof(
  fc.record({ kind: fc.constant('swap' as const), path, value: otherValue }),
  fc.record({ kind: fc.constant('delete' as const), path }),
  fc.record({ kind: fc.constant('nest' as const), path, depth: fc.integer({ min: 1, max: 100 }), array: fc.boolean() }),
  fc.record({ kind: fc.constant('huge' as const), path, size: fc.integer({ min: 1000, max: 300_000 }) }),
)

export const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
)

export const mutations = fc.record({
  headers: fc.array(headerMutation, { maxLength: 3 }),
  json: fc.array(jsonMutation, { maxLength: 2 }),
  bytes: fc.array(byteMutation, { maxLength: 2 }),
})
export type Mutations = typeof mutations extends fc.Arbitrary<infer T> ? T : never

type Container = Record<string, unknown> | unknown[]
const isContainer = (v: unknown): v is Container => v !== null && typeof v === 'object'

const get = (parent: Container, key: string | number): unknown => (Array.isArray(parent) ? parent[key as number] : parent[key as string])

/** The slot a path of indexes leads to: each index taken modulo the keys at its level, stopping at a leaf. */
function slot(root: Container, indexes: readonly number[]): { parent: Container; key: string | number } | undefined {
  const steps = indexes.length === 0 ? [0] : indexes
  let parent = root
  for (let n = 0; n < steps.length; n++) {
    const keys: (string | number)[] = Array.isArray(parent) ? parent.map((_, i) => i) : Object.keys(parent)
    const key = keys[(steps[n] ?? 0) % Math.max(1, keys.length)]
    if (key === undefined) return undefined
    const child = get(parent, key)
    if (n === steps.length - 1 || !isContainer(child)) return { parent, key }
    parent = child
  }
  return undefined
}

function set(s: { parent: Container; key: string | number }, value: unknown): void {
  if (Array.isArray(s.parent)) s.parent[s.key as number] = value
  else Object.defineProperty(s.parent, s.key, { value, enumerable: true, writable: true, configurable: true })
}

export function mutateJson(value: unknown, ms: readonly JsonMutation[]): unknown {
  const root = structuredClone(value)
  if (!isContainer(root)) return root
  for (const m of ms) {
    const s = slot(root, m.path)
    if (s === undefined) continue
    const current = get(s.parent, s.key)
    if (m.kind === 'swap') set(s, m.value)
    else if (m.kind === 'delete') {
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1)
      else delete s.parent[s.key as string]
    } else if (m.kind === 'nest') {
      let wrapped = current
      for (let d = 0; d < m.depth; d++) wrapped = m.array ? [wrapped] : { v: wrapped }
      set(s, wrapped)
    } else set(s, 'x'.repeat(m.size))
  }
  return root
}

export function mutateBytes(body: Buffer, ms: readonly ByteMutation[]): Buffer {
  let out = body
  for (const m of ms) {
    if (m.kind === 'truncate') out = out.subarray(0, m.at % (out.length + 1))
    else if (m.kind === 'replace' && out.length > 0) {
      out = Buffer.from(out)
      out[m.at % out.length] = m.byte
    } else if (m.kind === 'insert') {
      const at = m.at % (out.length + 1)
      out = Buffer.concat([out.subarray(0, at), Buffer.from(m.bytes), out.subarray(at)])
    }
  }
  return out
}

export function mutateHeaders(headers: readonly RawHeader[], ms: readonly HeaderMutation[]): RawHeader[] {
  const out = [...headers]
  for (const m of ms) {
    if (m.kind === 'add') {
      out.push([m.name, m.value])
      continue
    }
    if (out.length === 0) continue
    const at = m.at % out.length
    const h = out[at]
    if (h === undefined) continue
    if (m.kind === 'drop') out.splice(at, 1)
    else if (m.kind === 'duplicate') out.splice(at, 0, h)
    else out[at] = [h[0], m.value]
  }
  return out
}

/** A valid request with every mutation applied: JSON first, then its bytes, then the headers. */
export function mutate(headers: readonly RawHeader[], message: unknown, m: Mutations): RawRequest {
  const body = mutateBytes(Buffer.from(JSON.stringify(mutateJson(message, m.json)) ?? '', 'utf8'), m.bytes)
  return { headers: mutateHeaders(headers, m.headers), body }
}

/** A short description of a mutated request for a counterexample (huge values elided). */
export function describeMutations(m: Mutations): string {
  return JSON.stringify(m, (_k, v: unknown) => (typeof v === 'string' && v.length > 80 ? `${v.slice(0, 20)}…(${v.length})` : v instanceof Uint8Array ? [...v] : v))
}
