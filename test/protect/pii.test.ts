import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { findPii, maskPii, maskValue, PII_DETECTORS, PII_KINDS, type PiiKind, shapeOf } from '../../src/protect/pii.js'

interface Vector {
  readonly text: string
  readonly pii: readonly (readonly [PiiKind, string])[]
}
const CORPUS: Vector[] = readFileSync(new URL('../vectors/pii.jsonl', import.meta.url), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as Vector)

describe('PII detection against the labelled corpus (test/vectors/pii.jsonl)', () => {
  const score = new Map<PiiKind, { tp: number; fp: number; fn: number }>(PII_KINDS.map((k) => [k, { tp: 0, fp: 0, fn: 0 }]))
  const misses: string[] = []
  for (const v of CORPUS) {
    const found = findPii(v.text).map((m) => `${m.kind}\u0000${m.value}`)
    const expected = v.pii.map(([k, value]) => `${k}\u0000${value}`)
    for (const f of found) {
      const s = score.get(f.split('\u0000')[0] as PiiKind)
      if (s === undefined) continue
      if (expected.includes(f)) s.tp += 1
      else {
        s.fp += 1
        misses.push(`false positive ${f.replace('\u0000', ' ')} in ${JSON.stringify(v.text)}`)
      }
    }
    for (const e of expected) {
      if (found.includes(e)) continue
      const s = score.get(e.split('\u0000')[0] as PiiKind)
      if (s !== undefined) s.fn += 1
      misses.push(`missed ${e.replace('\u0000', ' ')} in ${JSON.stringify(v.text)}`)
    }
  }
  const rows = PII_KINDS.map((k) => {
    const s = score.get(k) ?? { tp: 0, fp: 0, fn: 0 }
    return { kind: k, ...s, precision: s.tp + s.fp === 0 ? 1 : s.tp / (s.tp + s.fp), recall: s.tp + s.fn === 0 ? 1 : s.tp / (s.tp + s.fn) }
  })
  // Reported in the test output: false positives count as much as misses.
  console.log(
    `PII corpus: ${CORPUS.length} texts\n${rows.map((r) => `  ${r.kind.padEnd(6)} precision ${r.precision.toFixed(3)}  recall ${r.recall.toFixed(3)}  (tp ${r.tp}, fp ${r.fp}, fn ${r.fn})`).join('\n')}${misses.length > 0 ? `\n${misses.join('\n')}` : ''}`,
  )

  it.each(rows)('$kind: precision and recall at least 0.95 on the corpus', ({ precision, recall, tp }) => {
    expect(tp).toBeGreaterThan(0)
    expect(precision).toBeGreaterThanOrEqual(0.95)
    expect(recall).toBeGreaterThanOrEqual(0.95)
  })
})

describe('masking', () => {
  it('replaces each match with its label and counts by kind', () => {
    expect(maskPii('mail alice@example.com or call 415-555-0132').text).toBe('mail [EMAIL] or call [PHONE]')
    const { value, counts } = maskValue({ content: [{ type: 'text', text: 'SSN 123-45-6789, card 4111 1111 1111 1111' }], structuredContent: { rows: [{ ip: '203.0.113.7' }] } })
    expect(value).toStrictEqual({ content: [{ type: 'text', text: 'SSN [SSN], card [CARD]' }], structuredContent: { rows: [{ ip: '[IP]' }] } })
    expect(Object.fromEntries(counts)).toStrictEqual({ ssn: 1, card: 1, ip: 1 })
  })

  it('masks beyond any depth: a deeply nested value is masked, not passed through', () => {
    let deep: unknown = { email: 'deep@example.com' }
    for (let i = 0; i < 100; i++) deep = { next: deep }
    const { value, counts } = maskValue(deep)
    expect(JSON.stringify(value)).not.toContain('deep@example.com')
    expect(counts.get('email')).toBe(1)
  })
})

describe('shape pre-checks', () => {
  // Every accepted match of a detector lies in a text whose shape the detector's pre-check admits:
  // skipping a detector by shape never loses a match.
  const admitsEveryMatch = (text: string): void => {
    const shape = shapeOf(text)
    for (const d of PII_DETECTORS) {
      const accepted = [...text.matchAll(d.pattern)].filter((m) => d.accept(m[0]))
      if (accepted.length > 0) expect(d.maybe(shape), `${d.kind} in ${JSON.stringify(text)}`).toBe(true)
    }
  }
  it('admit every match in the labelled corpus', () => {
    for (const v of CORPUS) admitsEveryMatch(v.text)
  })
  // The shortest text of each kind, so that a pre-check one count too strict fails here.
  const digits = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: n, maxLength: n })
  const luhnCard = (body: string): string => {
    for (let d = 0; d <= 9; d++) if (findPii(`${body}${d}`, ['card']).length > 0) return `${body}${d}`
    return body
  }
  const minimal = fc.oneof(
    digits(11).map((d) => luhnCard(`4${d}`)),
    fc.constant('4111 1111 1111 1111'),
    fc.constant('123-45-6789'),
    fc.constant('a@b.cd'),
    fc.constant('1.2.3.4'),
    fc.constant('::1'),
    fc.constant('555-123-4567'),
    fc.constant('+14155552671'),
    fc.constant('GB82 WEST 1234 5698 7654 32'),
    fc.constant('NO9386011117947'),
  )
  it('property: admit every match in the shortest text of each kind, with filler around it', () => {
    const filler = fc.string({ unit: fc.constantFrom('a', ' ', 'x', ','), maxLength: 4 })
    fc.assert(
      fc.property(filler, minimal, filler, (before, pii, after) => {
        const text = `${before} ${pii} ${after}`
        expect(findPii(text).length, JSON.stringify(text)).toBeGreaterThan(0)
        admitsEveryMatch(text)
      }),
      { numRuns: 1000 },
    )
  })
  it('property: admit every match in generated text dense in digits and separators', () => {
    const unit = fc.constantFrom(...'0123456789', ...'0123456789', 'a', 'Z', 'G', 'B', 'D', 'E', '@', '.', ':', '-', ' ', '+', '(', ')', '/', 'x')
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 60 }), (text) => admitsEveryMatch(text)),
      { numRuns: 3000 },
    )
  })
})
