import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AuditLog, MemoryAuditSink } from '../../src/audit/audit-log.js'
import { generateApiKey } from '../../src/auth/api-key.js'
import { REDACTED, redact, redactor, redactText } from '../../src/protect/redact.js'

const b64url = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'), minLength: 10, maxLength: 60 })
const upperDigits = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'), minLength: 16, maxLength: 16 })

/** A number of the given length that passes the Luhn check. */
function luhnNumber(body: string): string {
  let sum = 0
  for (let i = 0; i < body.length; i++) {
    let d = Number(body[body.length - 1 - i])
    if (i % 2 === 0) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return `${body}${(10 - (sum % 10)) % 10}`
}

// Every credential shape the redactor knows, generated.
const secret = fc.oneof(
  fc.constant(null).map(() => generateApiKey().key),
  b64url.map((s) => `bstr_${s.padEnd(43, 'A').slice(0, 43)}`),
  fc.tuple(b64url, b64url, b64url).map(([a, b, c]) => `eyJ${a}.eyJ${b}.${c}`),
  b64url.map((s) => `Bearer ${s}`),
  upperDigits.map((s) => `AKIA${s}`),
  fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 15, maxLength: 15 }).map((s) => luhnNumber(`4${s}`)),
  b64url.map((s) => `-----BEGIN PRIVATE KEY-----\n${s}\n-----END PRIVATE KEY-----`),
)
const filler = fc.string({ unit: fc.constantFrom(...'abc XYZ:,.-/'), maxLength: 12 })
const plainKey = fc.constantFrom('note', 'path', 'query', 'args', 'x', 'detail', 'items')

/** Put a value somewhere: at depth, in arrays and objects, inside a longer string. */
const nest = (inner: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> =>
  fc.letrec<{ node: unknown }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      inner,
      fc.tuple(plainKey, tie('node')).map(([k, v]) => ({ [k]: v })),
      fc.array(tie('node'), { minLength: 1, maxLength: 3 }),
    ),
  })).node

describe('redaction', () => {
  it('property: no generated secret of any supported shape survives into an audit line, at any depth, in any key', () => {
    fc.assert(
      fc.property(secret, filler, filler, (s, before, after) => {
        const sink = new MemoryAuditSink()
        const log = new AuditLog(sink, () => new Date(0))
        const embedded = `${before} ${s} ${after}`
        fc.assert(
          fc.property(nest(fc.constant(embedded)), (value) => {
            sink.lines.length = 0
            log.record({ event: 'tool.call', decision: 'allow', reason: 'OK', args: value, detail: embedded })
            const line = sink.lines.join('')
            expect(line).not.toContain(s)
            // The line is still one valid JSON line.
            expect(() => JSON.parse(line)).not.toThrow()
          }),
          { numRuns: 5 },
        )
      }),
      { numRuns: 200 },
    )
  })

  it('property: any value under a secret-named key is replaced, at any depth', () => {
    const keyName = fc.constantFrom('password', 'Client_Secret', 'x-api-key', 'Authorization', 'session_id', 'refreshToken', 'db_credentials', 'SSN')
    fc.assert(
      fc.property(keyName, fc.string({ minLength: 1, maxLength: 30 }), (key, value) => {
        fc.assert(
          fc.property(nest(fc.constant({ [key]: value })), (tree) => {
            const out = JSON.stringify(redact(tree))
            expect(out).toContain(`"${key}":"${REDACTED}"`)
            if (value.length > 3 && !REDACTED.includes(value)) expect(out.includes(JSON.stringify(value).slice(1, -1))).toBe(false)
          }),
          { numRuns: 3 },
        )
      }),
      { numRuns: 200 },
    )
  })

  it.each([
    ['order number 2026-11-24-000123', 'order number 2026-11-24-000123'],
    ['version 1.2.3 at 2026-11-24T10:00:00Z', 'version 1.2.3 at 2026-11-24T10:00:00Z'],
    ['a 16-digit id that fails Luhn 4111111111111112', 'a 16-digit id that fails Luhn 4111111111111112'],
    ['card 4111 1111 1111 1111 on file', 'card [REDACTED:card] on file'],
    ['Authorization: Bearer abcdefghijklmnop', 'Authorization: [REDACTED:bearer]'],
    ['aws AKIAIOSFODNN7EXAMPLE key', 'aws [REDACTED:aws-key] key'],
    ['connect postgres://app:s3cret@db:5432/x failed', 'connect postgres://[REDACTED:url-credentials]@db:5432/x failed'],
    ['redis REDIS://:pw@10.0.0.1:6379', 'redis REDIS://[REDACTED:url-credentials]@10.0.0.1:6379'],
    ['no credentials https://example.com/a@b stays', 'no credentials https://example.com/a@b stays'],
    ['header AUTHORIZATION: BEARER abcdefghijklmnop', 'header AUTHORIZATION: [REDACTED:bearer]'],
  ])('%j → %j', (input, output) => {
    expect(redactText(input)).toBe(output)
  })

  it('a redactor for other key names; __proto__ keys stay data', () => {
    const custom = redactor(['pin'])
    expect(custom({ user: { PIN: '1234', name: 'a' } })).toStrictEqual({ user: { PIN: REDACTED, name: 'a' } })
    const tricky = JSON.parse('{"__proto__":{"password":"x"}}') as unknown
    const out = redact(tricky) as Record<string, unknown>
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype)
    expect(JSON.stringify(out)).toBe(`{"__proto__":{"password":"${REDACTED}"}}`)
  })
})

describe('copy on write', () => {
  const json = fc.jsonValue({ maxDepth: 4 })
  it('property: redaction never changes its input, and a value with nothing to redact is returned as it is', () => {
    fc.assert(
      fc.property(json, (value) => {
        const before = JSON.stringify(value)
        const out = redact(value)
        expect(JSON.stringify(value)).toBe(before)
        if (JSON.stringify(out) === before) expect(out).toBe(value)
        // Idempotent: what was redacted has nothing left to redact.
        expect(redact(out)).toBe(out)
      }),
      { numRuns: 500 },
    )
  })
  it('a secret deep inside is redacted in a copy; its siblings are shared, the input untouched', () => {
    const sibling = { note: 'plain' }
    const input = { a: sibling, b: [{ password: 'hunter2' }], c: 'text' }
    const out = redact(input) as typeof input
    expect(out).not.toBe(input)
    expect(out.a).toBe(sibling)
    expect(out.b[0]).toEqual({ password: '[REDACTED]' })
    expect(input.b[0]).toEqual({ password: 'hunter2' })
  })
  it('a key shaped like a credential is redacted like a value, in a copy', () => {
    const key = `note eyJabcdefgh.eyJabcdefgh.sig`
    const out = redact({ keep: 1, [key]: 2 }) as Record<string, unknown>
    expect(Object.keys(out)).toEqual(['keep', 'note [REDACTED:jwt]'])
  })
  it('an object that is not plain data is copied as its own fields: its toJSON and getters do not run at write', () => {
    class Leaky {
      readonly id = 'x'
      toJSON(): string {
        return 'Bearer abcdefghijklmnopqrstuvwxyz'
      }
    }
    const out = redact({ value: new Leaky() })
    expect(JSON.stringify(out)).toBe('{"value":{"id":"x"}}')
  })
})
