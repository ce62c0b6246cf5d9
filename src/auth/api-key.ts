import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * API key format: `bst_<id>_<secret>`.
 * - `id`: 16 lowercase hex chars (64 bits), public, used to look the key up and in audit lines.
 * - `secret`: 43 base64url chars (256 bits from the CSPRNG).
 * Fixed lengths let a strict regex split the key even though base64url may contain `_`.
 */
const KEY = /^bst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

export interface ParsedKey {
  readonly id: string
}

export function parseApiKey(presented: string): ParsedKey | undefined {
  const m = KEY.exec(presented)
  const id = m?.[1]
  return id === undefined ? undefined : { id }
}

export function generateApiKey(): { id: string; key: string } {
  const id = randomBytes(8).toString('hex')
  const secret = randomBytes(32).toString('base64url')
  return { id, key: `bst_${id}_${secret}` }
}

/**
 * SHA-256 of the whole key, hex. A fast hash is right here: the key carries 256 bits of entropy,
 * so there is nothing for a slow KDF to protect against (unlike human passwords).
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/** Constant-time comparison of a presented key against a stored hash (equal-length digests). */
export function keyMatchesHash(presented: string, storedHashHex: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest()
  const b = Buffer.from(storedHashHex, 'hex')
  if (b.length !== a.length) return false
  return timingSafeEqual(a, b)
}
