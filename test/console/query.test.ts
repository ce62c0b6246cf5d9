import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { AuditRecord } from '../../src/audit/audit-log.js'
import type { TrailQuery } from '../../src/console/trail.js'
import { auditRow, signInBody } from '../../src/transport/http/console-pages.js'
import { parseTime, ShownError, trailQueryOf } from '../../src/transport/http/console-query.js'
import { auditBody } from '../../src/transport/http/console-views.js'
import { escapeHtml, html } from '../../src/transport/http/pages.js'

const NAMES = ['from', 'to', 'principal', 'tool', 'reason', 'requestId', 'event', 'text', 'decision', 'limit', 'before', 'after'] as const
const TEXT_FIELDS = ['principal', 'tool', 'reason', 'requestId', 'event', 'text'] as const

/** Strings a person or a hostile script might put in a query: markup, numbers, times, cursors, junk. */
const HOSTILE = fc.constantFrom(
  '<script>window.__xss=1</script>',
  '"><img src=x onerror=alert(1)>',
  "'><svg onload=alert(1)>",
  ['`$', '{alert(1)}`'].join(''),
  '&lt;b&gt;',
  '</pre><script>1</script>',
  '</textarea><script>1</script>',
  '-->',
  '<!--',
  ']]>',
  '\u0000',
  '\ud800',
  '\u2028',
)
const PIECES = fc.oneof(
  HOSTILE,
  fc.string({ unit: fc.constantFrom('<', '>', '"', "'", '`', '&', '=', '/', ' ', 'a', ';', '#', '\n') }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.integer({ min: -5, max: 2000 }).map(String),
  fc.constantFrom('1e2', '0x10', ' 7 ', '1.5', 'NaN', 'Infinity', '-0', '', '1000', '1001', '0'),
  fc.constantFrom('allow', 'deny', 'error', 'ALLOW', 'maybe'),
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('2026-12-01', '2026-12-01 10:00', '2026-02-30T00:00:00Z', '2026-12-01T10:00:00+25:00', 'yesterday', '2026-12-01T10:00:00'),
  fc.string({ unit: fc.constantFrom('A', 'z', '0', '_', '.', ':', '=', '-', '!'), maxLength: 600 }),
  fc.string({ minLength: 490, maxLength: 520 }),
)
const NAME = fc.oneof(fc.constantFrom(...NAMES), fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'hasOwnProperty'))
const PARAMS = fc.array(fc.tuple(NAME, PIECES), { maxLength: 14 }).map((pairs) => {
  const p = new URLSearchParams()
  for (const [k, v] of pairs) p.append(k, v)
  return p
})

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

/** The query's every field within its documented bounds. */
function expectInBounds(q: TrailQuery, params: URLSearchParams): void {
  expect(Number.isInteger(q.limit) && q.limit >= 1 && q.limit <= 1000).toBe(true)
  for (const f of TEXT_FIELDS) {
    const v = q[f]
    if (v === undefined) continue
    expect(typeof v).toBe('string')
    expect(v.length).toBeGreaterThan(0)
    expect(v.length).toBeLessThanOrEqual(500)
    // What was typed, unchanged: a filter never matches on something the operator did not ask for.
    expect(v).toBe(params.get(f))
  }
  if (q.decision !== undefined) expect(['allow', 'deny', 'error']).toContain(q.decision)
  for (const f of ['from', 'to'] as const) if (q[f] !== undefined) expect(q[f]).toMatch(ISO)
  for (const c of ['before', 'after'] as const) {
    const v = q[c]
    if (v !== undefined) expect(v.length <= 512 && /^[A-Za-z0-9_.:=-]+$/.test(v)).toBe(true)
  }
  // No field the query does not define, whatever names were sent (`__proto__` included).
  for (const k of Object.keys(q)) expect(['limit', ...NAMES]).toContain(k)
  expect(Object.getPrototypeOf(q)).toBe(Object.prototype)
}

describe('trailQueryOf', () => {
  it('any parameters: a query within bounds, or a ShownError; never another throw', () => {
    let accepted = 0
    let refused = 0
    fc.assert(
      fc.property(PARAMS, (params) => {
        let q: TrailQuery
        try {
          q = trailQueryOf(params)
        } catch (error) {
          expect(error).toBeInstanceOf(ShownError)
          const e = error as ShownError
          expect(e.code).toBe('ERR_INVALID_REQUEST')
          // Our words, naming the field (a parameter's own name when it is repeated): never a library's message.
          const field = [...params.keys()].find((k) => e.message.startsWith(`${k}: `))
          expect(field, e.message).toBeDefined()
          expect(e.message.length - (field ?? '').length).toBeLessThan(80)
          refused += 1
          return
        }
        expectInBounds(q, params)
        accepted += 1
      }),
      { numRuns: 3000 },
    )
    // The generator reaches both outcomes (a property that only ever throws proves nothing).
    expect(accepted).toBeGreaterThan(100)
    expect(refused).toBeGreaterThan(100)
  })

  it.each([
    { name: 'limit 0', params: 'limit=0', message: /^limit: / },
    { name: 'limit 1001', params: 'limit=1001', message: /^limit: / },
    { name: 'limit fraction', params: 'limit=1.5', message: /^limit: / },
    { name: 'limit not a number', params: 'limit=ten', message: /^limit: / },
    { name: 'repeated field', params: 'tool=a&tool=b', message: /^tool: given more than once/ },
    { name: 'text of 501', params: `text=${'a'.repeat(501)}`, message: /^text: / },
    { name: 'decision unknown', params: 'decision=maybe', message: /^decision: / },
    { name: 'cursor with !', params: 'before=!!!', message: /^before: / },
    { name: 'cursor of 513', params: `after=${'A'.repeat(513)}`, message: /^after: / },
    { name: 'time without zone or date', params: 'from=10:00', message: /^from: / },
  ])('refuses $name with a ShownError naming the field', ({ params, message }) => {
    expect(() => trailQueryOf(new URLSearchParams(params))).toThrow(ShownError)
    expect(() => trailQueryOf(new URLSearchParams(params))).toThrow(message)
  })

  it('keeps the edges: limit 1 and 1000, text of 500, a cursor of 512', () => {
    expect(trailQueryOf(new URLSearchParams('limit=1')).limit).toBe(1)
    expect(trailQueryOf(new URLSearchParams('limit=1000')).limit).toBe(1000)
    expect(trailQueryOf(new URLSearchParams(`text=${'a'.repeat(500)}`)).text).toHaveLength(500)
    expect(trailQueryOf(new URLSearchParams(`before=${'A'.repeat(512)}`)).before).toHaveLength(512)
    expect(trailQueryOf(new URLSearchParams('')).limit).toBe(100)
  })
})

describe('parseTime', () => {
  const DATE = fc.date({ min: new Date('0001-01-01T00:00:00.000Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true })

  it('round-trips every ISO time it emits', () => {
    fc.assert(
      fc.property(DATE, (d) => {
        expect(parseTime('from', d.toISOString())).toBe(d.toISOString())
      }),
      { numRuns: 2000 },
    )
  })

  it('reads an offset time as the same instant', () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date('1971-01-01T00:00:00Z'), max: new Date('9998-12-31T00:00:00Z'), noInvalidDate: true }),
        fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }),
        (d, offset) => {
          const at = new Date(Math.floor(d.getTime() / 1000) * 1000)
          const local = new Date(at.getTime() + offset * 60_000).toISOString().slice(0, 19)
          const sign = offset < 0 ? '-' : '+'
          const abs = Math.abs(offset)
          const zone = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`
          expect(parseTime('to', `${local}${zone}`)).toBe(at.toISOString())
        },
      ),
      { numRuns: 1000 },
    )
  })

  it('reads a date or a zone-less time as UTC', () => {
    fc.assert(
      fc.property(DATE, (d) => {
        const iso = d.toISOString()
        expect(parseTime('from', iso.slice(0, 10))).toBe(`${iso.slice(0, 10)}T00:00:00.000Z`)
        expect(parseTime('from', `${iso.slice(0, 10)} ${iso.slice(11, 16)}`)).toBe(`${iso.slice(0, 16)}:00.000Z`)
        expect(parseTime('from', iso.slice(0, 19))).toBe(`${iso.slice(0, 19)}.000Z`)
      }),
      { numRuns: 1000 },
    )
  })

  // V8's Date.parse takes any day 1–31 in any month and rolls it over: "2026-02-30" would filter from 2 March.
  it.each(['2026-02-30T00:00:00Z', '2026-02-29', '2026-04-31 10:00', '2025-02-29T12:00:00+01:00'])('an impossible calendar date is refused, not rolled over: %s', (v) => {
    expect(() => parseTime('to', v)).toThrow(ShownError)
  })

  it('empty is no bound; anything else it does not read is a ShownError', () => {
    expect(parseTime('from', null)).toBeUndefined()
    expect(parseTime('from', '  ')).toBeUndefined()
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        try {
          const out = parseTime('from', s)
          if (out !== undefined) expect(out).toMatch(ISO)
        } catch (error) {
          expect(error).toBeInstanceOf(ShownError)
        }
      }),
      { numRuns: 2000 },
    )
  })
})

/** The tags (and their attributes) the templates themselves write; anything else came from data. */
const ROW_TAGS = new Map<string, readonly string[]>([
  ['tr', ['class', 'data-request-id']],
  ['td', ['class', 'colspan']],
  ['time', []],
  ['code', ['class']],
  ['a', ['href', 'id']],
  ['details', []],
  ['summary', []],
  ['pre', []],
])
const BODY_TAGS = new Map<string, readonly string[]>([
  ...ROW_TAGS,
  ['h1', []],
  ['p', ['class', 'id', 'data-status']],
  ['form', ['id', 'method', 'action']],
  ['div', ['class']],
  ['label', ['for']],
  ['input', ['type', 'id', 'name', 'value', 'placeholder', 'maxlength']],
  ['select', ['id', 'name']],
  ['option', ['value', 'selected']],
  ['button', ['class', 'id', 'type', 'aria-pressed', 'data-query', 'data-newest', 'data-api']],
  ['span', ['id', 'class', 'aria-live']],
  ['table', ['id']],
  ['thead', []],
  ['tbody', []],
  ['th', ['class']],
])

const TAG = /<(\/?)([a-z][a-z0-9]*)((?:\s+[a-z-]+(?:="[^"<>]*")?)*)\s*>/y
const ATTR = /\s+([a-z-]+)(?:="([^"<>]*)")?/g

/** Every `<` in the output opens a known tag with known attributes; text holds no `<`, `>` or quote. */
function expectOnlyKnownMarkup(out: string, allowed: ReadonlyMap<string, readonly string[]>): void {
  let i = 0
  while (i < out.length) {
    const lt = out.indexOf('<', i)
    const text = out.slice(i, lt === -1 ? out.length : lt)
    expect(text).not.toMatch(/[<>"'`]/)
    if (lt === -1) break
    TAG.lastIndex = lt
    const m = TAG.exec(out)
    expect(m, `markup at ${lt}: ${out.slice(lt, lt + 60)}`).not.toBeNull()
    if (m === null) return
    const name = m[2] ?? ''
    expect([...allowed.keys()], `tag <${name}>`).toContain(name)
    for (const a of (m[3] ?? '').matchAll(ATTR)) {
      expect(allowed.get(name), `attribute ${a[1]} on <${name}>`).toContain(a[1])
      // No value smuggles a javascript: URL or an entity-encoded one.
      expect(decode(a[2] ?? '')).not.toMatch(/^\s*(javascript|data|vbscript):/i)
    }
    i = lt + m[0].length
  }
}

/** The text a browser reads from escaped markup (escapeHtml writes numeric references only). */
function decode(s: string): string {
  return s.replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)))
}

const VALUE = fc.oneof(
  { weight: 4, arbitrary: PIECES },
  { weight: 1, arbitrary: PIECES.map((s) => ({ nested: s, [s]: s })) },
  { weight: 1, arbitrary: PIECES.map((s) => [s, { s }]) },
)
const FIELDS = ['ts', 'event', 'requestId', 'principal', 'roles', 'method', 'tool', 'decision', 'reason', 'authz', 'rule', 'policy', 'userAgent', 'arguments', 'remote'] as const

const recordOf = (v: unknown, s: string): AuditRecord => {
  const r: Record<string, unknown> = {}
  for (const f of FIELDS) r[f] = v
  r[s] = v
  return r as unknown as AuditRecord
}

describe('escaping on the audit pages', () => {
  it('html`` escapes every interpolated string: decoding gives the string back', () => {
    fc.assert(
      fc.property(PIECES, (s) => {
        const out = html`<code>${s}</code>`.value
        expect(out.slice(6, -7)).not.toMatch(/[<>"'`]/)
        expect(decode(out.slice(6, -7))).toBe(s)
        expect(escapeHtml(s)).toBe(out.slice(6, -7))
      }),
      { numRuns: 2000 },
    )
  })

  it('auditRow: a record whose every field is hostile renders only the template tags, the value as text', () => {
    fc.assert(
      fc.property(PIECES, VALUE, fc.constantFrom('allow', 'deny', 'x'), (s, v, authz) => {
        const record = { ...recordOf(v, s), authz }
        const out = auditRow('/console', 'audit.jsonl:1', record).value
        expectOnlyKnownMarkup(out, ROW_TAGS)
        // The whole record is shown, as text, inside the <pre>.
        const pre = /<pre>([^<]*)<\/pre>/.exec(out)?.[1]
        expect(pre).toBeDefined()
        expect(JSON.parse(decode(pre ?? ''))).toEqual(JSON.parse(JSON.stringify(record)))
        if (typeof v === 'string' && v !== '') expect(decode(out)).toContain(v)
      }),
      { numRuns: 1500 },
    )
  })

  it('auditBody: hostile filter values (reflected from the query) and lines render only the template tags', () => {
    fc.assert(
      fc.property(PIECES, VALUE, (s, v) => {
        const q = { from: s, to: s, principal: s, tool: s, reason: s, requestId: s, event: s, text: s }
        const entries = [{ cursor: s, where: s, record: recordOf(v, s) }]
        const out = auditBody('/console', q, { entries, next: s, newest: s, searchedBackTo: s }, undefined, s).value
        expectOnlyKnownMarkup(out.replace(/\n/g, ''), BODY_TAGS)
        if (s !== '') expect(decode(out)).toContain(s)
      }),
      { numRuns: 500 },
    )
  })

  it('the sign-in page: a hostile notice or token stays text', () => {
    fc.assert(
      fc.property(PIECES, (s) => {
        const out = signInBody('/console', s, s).value
        expectOnlyKnownMarkup(
          out,
          new Map([...BODY_TAGS, ['main', []], ['code', []], ['input', ['type', 'id', 'name', 'value', 'autocomplete', 'spellcheck', 'placeholder', 'required', 'maxlength']]]),
        )
      }),
      { numRuns: 500 },
    )
  })

  it('the checker itself catches markup that is not escaped (it can fail)', () => {
    const raw = (s: string): string => `<tr><td><code>${s}</code></td></tr>`
    expect(() => expectOnlyKnownMarkup(raw('<img src=x onerror=alert(1)>'), ROW_TAGS)).toThrow()
    expect(() => expectOnlyKnownMarkup('<tr data-request-id="" onmouseover="alert(1)"></tr>', ROW_TAGS)).toThrow()
    expect(() => expectOnlyKnownMarkup('<a href="javascript:alert(1)">x</a>', ROW_TAGS)).toThrow()
    expect(() => expectOnlyKnownMarkup(raw('a"b'), ROW_TAGS)).toThrow()
    expect(() => expectOnlyKnownMarkup(raw('&lt;b&gt;'), ROW_TAGS)).not.toThrow()
  })
})
