import type { z } from 'zod'
import { configSchema, type SecretRef, secretRef } from '../config/schema.js'

/** A secret reference found in a parsed config, with its key path (`auth.keys.0.key`). */
export interface SecretRefAt {
  readonly path: string
  readonly ref: SecretRef
}

type Def = { type: string; [k: string]: unknown }
const defOf = (schema: unknown): Def => (schema as { _zod: { def: Def } })._zod.def
/** Schema types that wrap one inner schema and keep the value's shape. */
const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch'])
const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/**
 * Every secret reference in a parsed config, in document order, found where the config schema
 * places `secretRef` (so a free-form record entry named `env` or `file`, or a state file's
 * `file` setting, is never taken for one). Pure: reads no secret.
 */
export function secretRefs(config: unknown): SecretRefAt[] {
  const found: SecretRefAt[] = []
  const walk = (schema: unknown, value: unknown, path: readonly string[]): void => {
    if (value === undefined || value === null) return
    if (schema === secretRef) {
      found.push({ path: path.join('.'), ref: value as SecretRef })
      return
    }
    const def = defOf(schema)
    const t = def.type
    if (WRAPPERS.has(t)) walk(def.innerType, value, path)
    else if (t === 'pipe') walk(def.in, value, path)
    else if (t === 'lazy') walk((def.getter as () => unknown)(), value, path)
    else if (t === 'object' && isRecord(value)) {
      for (const [k, s] of Object.entries(def.shape as Record<string, z.ZodType>)) walk(s, value[k], [...path, k])
    } else if (t === 'record' && isRecord(value)) {
      for (const [k, v] of Object.entries(value)) walk(def.valueType, v, [...path, k])
    } else if (t === 'array' && Array.isArray(value)) {
      for (const [i, v] of value.entries()) walk(def.element, v, [...path, String(i)])
    } else if (t === 'union') {
      // Options are objects with distinct keys: an option whose keys the value lacks finds nothing.
      for (const option of def.options as unknown[]) walk(option, value, path)
    } else if (t === 'intersection') {
      walk(def.left, value, path)
      walk(def.right, value, path)
    }
  }
  walk(configSchema, config, [])
  return found
}
