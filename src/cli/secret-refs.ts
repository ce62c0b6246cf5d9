import type { SecretRef } from '../config/schema.js'

/** A secret reference found in a parsed config, with its key path (`auth.keys.0.key`). */
export interface SecretRefAt {
  readonly path: string
  readonly ref: SecretRef
}

/**
 * A secret reference is exactly `{ env: NAME }` or `{ file: PATH }`: the schema's `secretRef` is
 * a strict object, and no other section of the parsed config is an object with that one key (the
 * `policy` and `vault` sections, which have a `file`, always hold their defaulted keys too).
 */
function asSecretRef(value: unknown): SecretRef | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  const keys = Object.keys(value)
  if (keys.length !== 1) return undefined
  const v = value as Record<string, unknown>
  if (keys[0] === 'env' && typeof v.env === 'string') return { env: v.env }
  if (keys[0] === 'file' && typeof v.file === 'string') return { file: v.file }
  return undefined
}

/** Every secret reference in a parsed config, in document order. Pure: reads no secret. */
export function secretRefs(config: unknown): SecretRefAt[] {
  const found: SecretRefAt[] = []
  const walk = (value: unknown, path: readonly string[]): void => {
    const ref = asSecretRef(value)
    if (ref !== undefined) {
      found.push({ path: path.join('.'), ref })
      return
    }
    if (value === null || typeof value !== 'object') return
    for (const [k, v] of Object.entries(value)) walk(v, [...path, k])
  }
  walk(config, [])
  return found
}
