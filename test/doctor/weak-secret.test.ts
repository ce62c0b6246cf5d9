import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { MIN_SECRET_BITS, secretStrength, weakSecretReason } from '../../src/doctor/weak-secret.js'

describe('weak HS256 secrets', () => {
  it.each([
    ['a published example', 'a-string-secret-at-least-256-bits-long', /published example/],
    ['an example repeated to length', 'your-256-bit-secret'.repeat(2), /published example/],
    ['one character', 'a'.repeat(48), /1-character unit repeated/],
    ['a short unit repeated', 'Tr0ub4dor&3'.repeat(3), /11-character unit repeated/],
    ['camelCase words', 'ThisIsMySuperSecretKeyForJWTSigning123456', /9 word\(s\) and 6 digit\(s\)/],
    ['common words with separators', 'my-super-secret-jwt-signing-key-for-the-api-server', /10 word\(s\)/],
    ['a run of neighbours', 'abcdefghijklmnopqrstuvwxyzabcdefgh', /neighbouring characters/],
    ['few characters, skewed', `${'a'.repeat(30)}bcbcbcd`, /bits/],
  ])('%s is refused, saying why', (_name, secret, why) => {
    const reason = weakSecretReason(secret)
    expect(reason).toMatch(why)
    expect(reason).not.toContain(secret)
  })

  it('what the refusal tells the operator to run (openssl rand -base64 32: 32 uniform random bytes) is accepted, 20,000 draws', () => {
    // Uniform bytes, as openssl draws them (fast-check's arrays lean to zeros and edges: a secret of
    // zeros is weak, and refused, rightly).
    let refused = 0
    for (let i = 0; i < 20_000; i++) if (weakSecretReason(randomBytes(32).toString('base64')) !== undefined) refused++
    expect(refused).toBe(0)
  })

  it('random hex and base64url secrets of 32 bytes and more carry their bits', () => {
    for (let i = 0; i < 500; i++) {
      expect(secretStrength(randomBytes(32).toString('hex')).bits).toBeGreaterThanOrEqual(MIN_SECRET_BITS)
      expect(weakSecretReason(randomBytes(32).toString('base64url'))).toBeUndefined()
    }
  })
})
