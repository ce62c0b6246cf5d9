import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { findPii, maskPii, maskValue, PII_KINDS, type PiiKind } from '../../src/protect/pii.js'

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
