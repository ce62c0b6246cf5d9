import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { publicText, SecurityError } from '../../src/errors.js'
import { assertJsonDepth, parseJsonBody } from '../../src/limits/json-body.js'

/** Reference depth on the parsed value: a scalar is 0, each array or object adds one. */
function referenceDepth(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(referenceDepth))
  if (value !== null && typeof value === 'object') return 1 + Math.max(0, ...Object.values(value).map(referenceDepth))
  return 0
}

function codeOf(run: () => unknown): string | undefined {
  try {
    run()
    return undefined
  } catch (error) {
    if (error instanceof SecurityError) return error.code
    throw error
  }
}

const nested = (n: number, open = '[', close = ']') => `${open.repeat(n)}${close.repeat(n)}`

describe('assertJsonDepth', () => {
  it.each([0, 1, 2, 5, 64])('accepts depth exactly %i at max %i', (max) => {
    expect(() => assertJsonDepth(nested(max), max)).not.toThrow()
  })

  it.each([0, 1, 2, 5, 64])('refuses depth max + 1 at max %i', (max) => {
    expect(codeOf(() => assertJsonDepth(nested(max + 1), max))).toBe('ERR_JSON_TOO_DEEP')
  })

  it('counts objects and arrays alike', () => {
    const mixed = '{"a":[{"b":[1]}]}' // depth 4
    expect(() => assertJsonDepth(mixed, 4)).not.toThrow()
    expect(codeOf(() => assertJsonDepth(mixed, 3))).toBe('ERR_JSON_TOO_DEEP')
  })

  it('measures the maximum, not the total: siblings do not add up', () => {
    const siblings = `[${Array.from({ length: 100 }, () => '[[1]]').join(',')}]` // depth 3
    expect(() => assertJsonDepth(siblings, 3)).not.toThrow()
    expect(codeOf(() => assertJsonDepth(siblings, 2))).toBe('ERR_JSON_TOO_DEEP')
  })

  const STRING_CASES = [
    { name: 'brackets inside a string', text: '["[[[[{{{{"]', depth: 1 },
    { name: 'closing brackets inside a string do not lower the count', text: '[["]]]]"],[["x"]]]', depth: 3 },
    { name: 'escaped quote does not end the string', text: '["\\"[[[[[["]', depth: 1 },
    { name: 'escaped backslash before the closing quote', text: '["\\\\",[[1]]]', depth: 3 },
    { name: 'escaped backslash then quote then brackets outside', text: '{"k\\\\":[[["v"]]]}', depth: 4 },
    { name: 'unicode escape of a quote', text: '["\\u0022[[[["]', depth: 1 },
    { name: 'bracket-looking key', text: '{"[[[[":{"}}}}":1}}', depth: 2 },
  ] as const

  it.each(STRING_CASES)('$name has depth $depth', ({ text, depth }) => {
    expect(referenceDepth(JSON.parse(text))).toBe(depth) // the table itself is right
    expect(() => assertJsonDepth(text, depth)).not.toThrow()
    if (depth > 0) expect(codeOf(() => assertJsonDepth(text, depth - 1))).toBe('ERR_JSON_TOO_DEEP')
  })

  it('exposes only the limit, never the input', () => {
    try {
      assertJsonDepth(`[[["secret-token-abc"]]]`, 2)
      expect.unreachable('should have thrown')
    } catch (error) {
      expect(error).toBeInstanceOf(SecurityError)
      if (!(error instanceof SecurityError)) return
      expect(publicText(error)).toBe('request nested too deeply: nesting deeper than 2')
      expect(error.message).not.toContain('secret-token')
    }
  })

  it('stops at the first level past the limit on a huge hostile input', () => {
    expect(codeOf(() => assertJsonDepth('['.repeat(5_000_000), 64))).toBe('ERR_JSON_TOO_DEEP')
  })

  it('property: agrees with the reference depth of the parsed value, compact and pretty-printed', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 10 }), fc.boolean(), (value, max, pretty) => {
        const text = pretty ? JSON.stringify(value, null, 2) : JSON.stringify(value)
        const depth = referenceDepth(value)
        const code = codeOf(() => assertJsonDepth(text, max))
        expect(code).toBe(depth > max ? 'ERR_JSON_TOO_DEEP' : undefined)
      }),
      { numRuns: 500 },
    )
  })

  it('property: strings full of brackets, quotes and backslashes never change the count', () => {
    const hostile = fc.string({ unit: fc.constantFrom('[', ']', '{', '}', '"', '\\', 'a', 'u', '0', '\n', '\u2028') })
    fc.assert(
      fc.property(fc.array(hostile, { maxLength: 5 }), fc.integer({ min: 0, max: 4 }), (strings, wrap) => {
        const value = strings.reduce<unknown>((inner, s) => ({ [s]: [s, inner] }), 'leaf')
        const wrapped = Array.from({ length: wrap }).reduce<unknown>((inner) => [inner], value)
        const text = JSON.stringify(wrapped)
        const depth = referenceDepth(wrapped)
        expect(() => assertJsonDepth(text, depth)).not.toThrow()
        if (depth > 0) expect(codeOf(() => assertJsonDepth(text, depth - 1))).toBe('ERR_JSON_TOO_DEEP')
      }),
      { numRuns: 300 },
    )
  })
})

describe('parseJsonBody', () => {
  const limits = { maxBytes: 64, maxDepth: 3 }

  it('returns the parsed value', () => {
    expect(parseJsonBody('{"jsonrpc":"2.0","id":1,"method":"ping"}', limits)).toStrictEqual({ jsonrpc: '2.0', id: 1, method: 'ping' })
  })

  it('accepts a body of exactly maxBytes', () => {
    const text = `"${'a'.repeat(62)}"`
    expect(Buffer.byteLength(text)).toBe(64)
    expect(parseJsonBody(text, limits)).toBe('a'.repeat(62))
  })

  it('refuses a body of maxBytes + 1 before parsing', () => {
    const text = `"${'a'.repeat(63)}"`
    expect(codeOf(() => parseJsonBody(text, limits))).toBe('ERR_BODY_TOO_LARGE')
  })

  it('counts UTF-8 bytes, not UTF-16 code units', () => {
    const text = `"${'é'.repeat(32)}"` // 34 code units, 66 bytes
    expect(text.length).toBeLessThanOrEqual(64)
    expect(codeOf(() => parseJsonBody(text, limits))).toBe('ERR_BODY_TOO_LARGE')
  })

  it('checks the size before the depth (cheap check first)', () => {
    expect(codeOf(() => parseJsonBody('['.repeat(100), limits))).toBe('ERR_BODY_TOO_LARGE')
  })

  it('refuses too-deep JSON with ERR_JSON_TOO_DEEP', () => {
    expect(codeOf(() => parseJsonBody('[[[[1]]]]', limits))).toBe('ERR_JSON_TOO_DEEP')
    expect(parseJsonBody('[[[1]]]', limits)).toStrictEqual([[[1]]])
  })

  const INVALID = [
    { name: 'empty body', text: '' },
    { name: 'truncated object', text: '{"a":' },
    { name: 'trailing comma', text: '[1,]' },
    { name: 'single quotes', text: "{'a':1}" },
    { name: 'unbalanced closers', text: ']]]]' },
    { name: 'two documents', text: '{}{}' },
    { name: 'NaN', text: 'NaN' },
    { name: 'comment', text: '{} // x' },
  ] as const

  it.each(INVALID)('$name → ERR_PARSE without the parser message', ({ text }) => {
    try {
      parseJsonBody(text, limits)
      expect.unreachable('should have thrown')
    } catch (error) {
      expect(error).toBeInstanceOf(SecurityError)
      if (!(error instanceof SecurityError)) return
      expect(error.code).toBe('ERR_PARSE')
      expect(error.message).toBe('body is not valid JSON')
      expect(publicText(error)).toBe('parse error')
    }
  })
})
