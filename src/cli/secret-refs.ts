import type { SecretRef } from '../config/schema.js'

/** A secret reference found in a parsed config, with its key path (`auth.keys.0.key`). */
export interface SecretRefAt {
  readonly path: string
  readonly ref: SecretRef
}

/**
 * A secret reference is exactly `{ env: NAME }` or `{ file: PATH }`: the schema's `secretRef` is
 * a strict object. `policy` always holds its defaulted keys beside its `file`; `vault` may hold
 * nothing but its state `file` (with `enabled` unset), so it is not walked, nor are the records
 * whose string values are free text (see {@link FREE_FORM}).
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

/**
 * Records whose keys are chosen by the operator and whose values are strings, so that a single
 * entry named `env` or `file` would look like a reference: `pii.tools` (tool → mode), a policy
 * rule's `output` settings, and an issuer's inline `jwk`.
 */
const FREE_FORM: readonly RegExp[] = [/^vault$/, /^pii\.tools$/, /^policy\.rules\.\d+\.output$/, /^auth\.issuers\.\d+\.keys\.\d+\.jwk$/]

/** Every secret reference in a parsed config, in document order. Pure: reads no secret. */
export function secretRefs(config: unknown): SecretRefAt[] {
  const found: SecretRefAt[] = []
  const walk = (value: unknown, path: readonly string[]): void => {
    const at = path.join('.')
    if (FREE_FORM.some((re) => re.test(at))) return
    const ref = asSecretRef(value)
    if (ref !== undefined) {
      found.push({ path: at, ref })
      return
    }
    if (value === null || typeof value !== 'object') return
    for (const [k, v] of Object.entries(value)) walk(v, [...path, k])
  }
  walk(config, [])
  return found
}
