import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { generateApiKey, hashApiKey, keyMatchesHash, parseApiKey } from '../../src/auth/api-key.js'

const ID = '0123456789abcdef'
const SECRET = `${'A'.repeat(21)}_-${'z9'.repeat(10)}` // 43 base64url chars, with the `_` that base64url allows
const GOOD = `bst_${ID}_${SECRET}`

describe('parseApiKey', () => {
  it('parses a well-formed key to its id, even when the secret contains `_`', () => {
    expect(SECRET).toHaveLength(43)
    expect(parseApiKey(GOOD)).toStrictEqual({ id: ID })
    expect(parseApiKey(`bst_${ID}_${'_'.repeat(43)}`)).toStrictEqual({ id: ID })
  })

  const MALFORMED = [
    { name: 'empty', key: '' },
    { name: 'prefix only', key: 'bst_' },
    { name: 'no secret', key: `bst_${ID}` },
    { name: 'no secret after separator', key: `bst_${ID}_` },
    { name: 'upper-case prefix', key: `BST_${ID}_${SECRET}` },
    { name: 'other prefix', key: `sk_${ID}_${SECRET}` },
    { name: 'dash separators', key: `bst-${ID}-${SECRET}` },
    { name: 'id too short', key: `bst_${ID.slice(1)}_${SECRET}` },
    { name: 'id too long', key: `bst_${ID}0_${SECRET}` },
    { name: 'upper-case hex id', key: `bst_${ID.toUpperCase()}_${SECRET}` },
    { name: 'non-hex id', key: `bst_0123456789abcdeg_${SECRET}` },
    { name: 'secret one char short', key: `bst_${ID}_${SECRET.slice(1)}` },
    { name: 'secret one char long', key: `${GOOD}A` },
    { name: 'base64 (not url) alphabet', key: `bst_${ID}_${'+'.repeat(42)}/` },
    { name: 'padding', key: `bst_${ID}_${SECRET.slice(1)}=` },
    { name: 'leading space', key: ` ${GOOD}` },
    { name: 'trailing space', key: `${GOOD} ` },
    { name: 'trailing newline', key: `${GOOD}\n` },
    { name: 'NUL inside', key: `${GOOD.slice(0, 30)}\u0000${GOOD.slice(31)}` },
    { name: 'two keys concatenated', key: `${GOOD}${GOOD}` },
    { name: 'Bearer prefix left on', key: `Bearer ${GOOD}` },
    { name: 'full-width digit in id', key: `bst_０123456789abcdef_${SECRET}` },
    { name: 'Cyrillic a in secret', key: `bst_${ID}_${SECRET.slice(0, 42)}а` },
  ] as const

  it.each(MALFORMED)('$name → undefined', ({ key }) => {
    expect(parseApiKey(key)).toBeUndefined()
  })

  it('property: every generated key parses back to its id, and the secret is 256 bits', () => {
    fc.assert(
      fc.property(fc.constant(null), () => {
        const { id, key } = generateApiKey()
        expect(parseApiKey(key)).toStrictEqual({ id })
        expect(Buffer.from(key.slice(`bst_${id}_`.length), 'base64url')).toHaveLength(32)
      }),
      { numRuns: 500 },
    )
  })

  it('generates distinct keys and ids', () => {
    const keys = Array.from({ length: 200 }, () => generateApiKey())
    expect(new Set(keys.map((k) => k.key)).size).toBe(200)
    expect(new Set(keys.map((k) => k.id)).size).toBe(200)
  })
})

describe('hashApiKey / keyMatchesHash', () => {
  it('is SHA-256 hex (FIPS 180-2 vector "abc")', () => {
    expect(hashApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  it('matches the key it was computed from and no other', () => {
    const hash = hashApiKey(GOOD)
    expect(keyMatchesHash(GOOD, hash)).toBe(true)
    expect(keyMatchesHash(`${GOOD.slice(0, -1)}B`, hash)).toBe(false)
    expect(keyMatchesHash(GOOD.toUpperCase(), hash)).toBe(false)
  })

  const BAD_STORED = [
    { name: 'empty', stored: '' },
    { name: 'truncated', stored: hashApiKey(GOOD).slice(0, 62) },
    { name: 'too long', stored: `${hashApiKey(GOOD)}00` },
    { name: 'not hex', stored: 'z'.repeat(64) },
    { name: 'the key itself instead of its hash', stored: GOOD },
  ] as const

  it.each(BAD_STORED)('a malformed stored hash ($name) never matches and never throws', ({ stored }) => {
    expect(keyMatchesHash(GOOD, stored)).toBe(false)
  })

  it('property: matches iff the presented key is the hashed key', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(keyMatchesHash(a, hashApiKey(b))).toBe(a === b)
      }),
    )
  })
})
