import { appendFileSync, mkdtempSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { trailFiles } from '../../src/audit/audit-key.js'
import { AuditLog, FileAuditSink } from '../../src/audit/audit-log.js'
import { FileTrailReader } from '../../src/console/file-trail.js'
import type { TrailEntry } from '../../src/console/trail.js'
import { SecurityError } from '../../src/errors.js'
import { countsOf, FILTER_CASES, type FilterCase, KEY, NOW, pageAll, quantile, type Rec, START, steppingClock, topOf, writeMix } from './trail-fixture.js'

const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'bastion-ftrail-')))

/** A closed trail of `n` scripted lines (plus opened/closed) in a fresh folder; small `maxBytes` rotates it. */
function trail(n: number, maxBytes?: number): { file: string; clock: () => Date } {
  const file = join(tmp(), 'audit.jsonl')
  const clock = steppingClock()
  const log = new AuditLog(new FileAuditSink(file, maxBytes === undefined ? {} : { maxBytes }), clock, KEY)
  writeMix(log, n)
  log.close()
  return { file, clock }
}

/** Every stored line of the trail, oldest first, as text and parsed, with where it is. */
function stored(file: string): { raw: string; rec: Rec; where: string }[] {
  return trailFiles(file)
    .reverse()
    .flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .slice(0, -1)
        .map((raw, i) => ({ raw, where: `${basename(f)}:${i + 1}`, rec: JSON.parse(raw) as Rec })),
    )
}

const reader = (file: string, extra: Partial<ConstructorParameters<typeof FileTrailReader>[0]> = {}): FileTrailReader =>
  new FileTrailReader({ file, keys: [KEY], chunkBytes: 4096, markEvery: 16, ...extra })

const seqs = (entries: readonly TrailEntry[]): unknown[] => entries.map((e) => `${String(e.record.wid)}:${String(e.record.seq)}`)
const seqsOf = (lines: readonly { rec: Rec }[]): unknown[] => lines.map((l) => `${String(l.rec.wid)}:${String(l.rec.seq)}`)

describe('FileTrailReader', () => {
  it('filters on each field, text and time, newest first; paging with before reaches every line once', async () => {
    const { file } = trail(300)
    const lines = stored(file)
    const r = reader(file)
    const cases: FilterCase[] = [
      ...FILTER_CASES,
      [{ principal: 'p2', decision: 'allow' }, (x) => x.principal === 'p2' && x.decision === 'allow'],
      [
        { from: new Date(START + 50_000).toISOString(), to: new Date(START + 120_000).toISOString() },
        (x) => String(x.ts) >= new Date(START + 50_000).toISOString() && String(x.ts) < new Date(START + 120_000).toISOString(),
      ],
    ]
    for (const [q, want] of cases) {
      const expected = lines.filter((l) => want(l.rec, l.raw)).reverse()
      expect(expected.length, JSON.stringify(q)).toBeGreaterThan(0)
      const page = await r.query({ ...q, limit: 1000 })
      expect(seqs(page.entries), JSON.stringify(q)).toStrictEqual(seqsOf(expected))
      expect(page.entries.map((e) => e.where)).toStrictEqual(expected.map((l) => l.where))
      expect(page.next).toBeUndefined()
      // Small pages: every line exactly once, in order.
      expect(seqs(await pageAll(r, q, 7))).toStrictEqual(seqsOf(expected))
    }
    await r.close()
  })

  it('finds lines in rotated files, also with a scan budget smaller than the trail (searchedBackTo, next continues)', async () => {
    const { file } = trail(400, 16 * 1024)
    const files = readdirSync(join(file, '..')).filter((n) => n.startsWith('audit.jsonl.'))
    expect(files.length).toBeGreaterThan(3)
    const lines = stored(file)
    const r = reader(file, { scanBytes: 8192 })
    const page = await r.query({ requestId: 'a-req-2', limit: 10 })
    // Near the start: the budget ends the first call before it is reached.
    expect(page.entries).toStrictEqual([])
    expect(page.searchedBackTo).toMatch(/^2026-03-01T/)
    expect(page.next).toBeDefined()
    const found = await pageAll(r, { requestId: 'a-req-2' }, 10)
    expect(found.map((e) => e.where)).toStrictEqual(lines.filter((l) => l.rec.requestId === 'a-req-2').map((l) => l.where))
    expect(found[0]?.where).toMatch(/^audit\.jsonl\.\d{4}-/)
    expect(seqs(await pageAll(r, {}, 50))).toStrictEqual(seqsOf([...lines].reverse()))
    await r.close()
  })

  it('after: tails lines appended (also across a rotation) after the first call, oldest first', async () => {
    const { file, clock } = trail(50, 16 * 1024)
    const r = reader(file)
    const first = await r.query({ limit: 5 })
    expect(first.newest).toBe(first.entries[0]?.cursor)
    const empty = await r.query({ limit: 10, after: first.newest ?? '' })
    expect(empty.entries).toStrictEqual([])
    const log = new AuditLog(new FileAuditSink(file, { maxBytes: 16 * 1024 }), clock, KEY)
    writeMix(log, 120, 'b')
    log.close()
    const lines = stored(file)
    const added = lines.slice(lines.findIndex((l) => l.rec.event === 'audit.closed') + 1) // after a's closing line
    const tail: TrailEntry[] = []
    let after = first.newest ?? ''
    for (let i = 0; i < 100; i++) {
      const page = await r.query({ limit: 25, after })
      tail.push(...page.entries)
      if (page.next === undefined) break
      after = page.next
    }
    expect(seqs(tail)).toStrictEqual(seqsOf(added))
    const denials = await r.query({ limit: 1000, after: first.newest ?? '', decision: 'deny' })
    expect(seqs(denials.entries)).toStrictEqual(seqsOf(added.filter((l) => l.rec.decision === 'deny')))
    await r.close()
  })

  it('stats and lastSeen equal what the lines say; export streams the matching lines as stored', async () => {
    const { file } = trail(600, 64 * 1024)
    const lines = stored(file)
    const recs = lines.map((l) => l.rec)
    const r = reader(file)
    const s = await r.stats(NOW)
    expect(s.lastHour).toStrictEqual(countsOf(recs))
    expect(s.lastDay).toStrictEqual(countsOf(recs))
    const minute = (x: Rec) => String(x.ts).slice(0, 16)
    for (const b of s.perMinute) expect(b, b.t).toMatchObject(countsOf(recs.filter((x) => minute(x) === b.t.slice(0, 16))))
    expect(s.perMinute).toHaveLength(61)
    expect(s.perHour).toHaveLength(25)
    const req = recs.filter((x) => typeof x.requestId === 'string')
    expect(s.topPrincipals).toStrictEqual(topOf(req.map((x) => x.principal)))
    expect(s.topTools).toStrictEqual(topOf(req.map((x) => x.tool)))
    expect(s.topDenials).toStrictEqual(topOf(req.filter((x) => x.decision !== 'allow').map((x) => x.reason)))
    const ms = req.map((x) => Number(x.durationMs))
    expect(Math.abs((s.p50Ms ?? 0) - quantile(ms, 0.5)) / quantile(ms, 0.5)).toBeLessThan(0.05)
    expect(Math.abs((s.p99Ms ?? 0) - quantile(ms, 0.99)) / quantile(ms, 0.99)).toBeLessThan(0.05)
    // A day later, nothing is in the window.
    expect((await r.stats(new Date(NOW.getTime() + 26 * 3600_000))).lastDay).toStrictEqual({ allow: 0, deny: 0, error: 0 })
    const seen = await r.lastSeen(['p0', 'p4', 'nobody'])
    expect([...seen.entries()]).toStrictEqual(['p0', 'p4'].map((p) => [p, String(req.findLast((x) => x.principal === p)?.ts)]))
    const out: string[] = []
    for await (const line of r.export({ tool: 't2', decision: 'error' })) out.push(line)
    expect(out).toStrictEqual(lines.filter((l) => l.rec.tool === 't2' && l.rec.decision === 'error').map((l) => `${l.raw}\n`))
    const all: string[] = []
    for await (const line of r.export({})) all.push(line)
    expect(all.join('')).toBe(lines.map((l) => `${l.raw}\n`).join(''))
    await r.close()
  })

  it('verify: an intact range verifies; an edited line is forged at its place; an audit.repaired gap is a gap', async () => {
    const { file, clock } = trail(200, 16 * 1024)
    const r = reader(file)
    const all = await r.query({ limit: 1000 })
    const newest = all.entries[0]?.cursor ?? ''
    const oldest = all.entries.at(-1)?.cursor ?? ''
    expect(await r.verify(oldest, newest)).toStrictEqual({ status: 'verified', lines: all.entries.length, problems: [], gaps: [] })
    const mid = all.entries[50]
    expect((await r.verify(mid?.cursor ?? '', newest)).lines).toBe(51)
    // A torn tail, cut by the next writer and recorded: a gap, not a problem.
    appendFileSync(file, '{"ts":"2026-03-01T12:00:00.000Z","event":"tool.c')
    expect((await r.query({ limit: 1000 })).entries).toHaveLength(all.entries.length) // the torn tail is no line
    const log = new AuditLog(new FileAuditSink(file, { maxBytes: 16 * 1024 }), clock, KEY)
    writeMix(log, 5, 'c')
    log.close()
    const after = await r.query({ limit: 1000 })
    const gap = await r.verify(oldest, after.newest ?? '')
    expect(gap.status).toBe('gap')
    expect(gap.gaps).toHaveLength(1)
    expect(gap.gaps[0]?.detail).toMatch(/torn tail of \d+ bytes/)
    expect(gap.gaps[0]?.where).toBe(after.entries.find((e) => e.record.event === 'audit.repaired')?.where)
    expect(await r.verify(oldest, newest)).toMatchObject({ status: 'verified' }) // before the gap
    // An edited field, read by a fresh reader.
    const victim = trailFiles(file).find((f) => readFileSync(f, 'utf8').includes('"requestId":"c-req-2"')) ?? ''
    const text = readFileSync(victim, 'utf8').split('\n')
    const at = text.findIndex((l) => l.includes('"requestId":"c-req-2"'))
    expect(at).toBeGreaterThanOrEqual(0)
    text[at] = (text[at] ?? '').replace('"principal":"p2"', '"principal":"p0"')
    writeFileSync(victim, text.join('\n'))
    const fresh = reader(file)
    const now = await fresh.query({ limit: 1000 })
    const forged = await fresh.verify(now.entries.at(-1)?.cursor ?? '', now.newest ?? '')
    expect(forged.status).toBe('forged')
    expect(forged.problems).toStrictEqual([{ where: `${basename(victim)}:${at + 1}`, kind: 'forged', reason: expect.stringMatching(/MAC does not match/) }])
    // A range that ends before the edit still verifies.
    const before = now.entries.find((e) => e.where === `${basename(victim)}:${at}`)
    expect((await fresh.verify(now.entries.at(-1)?.cursor ?? '', before?.cursor ?? '')).status).toBe('gap')
    await r.close()
    await fresh.close()
  })

  it('a torn tail line is skipped by queries; malformed, altered or stale cursors are ERR_INVALID_REQUEST', async () => {
    const { file } = trail(30)
    appendFileSync(file, '{"ts":"2026-03-01T12:29:59.000Z","event":"tool.call","principal":"p1","requ')
    const r = reader(file)
    const page = await r.query({ limit: 1000, principal: 'p1' })
    expect(page.entries.length).toBe(stored(file).filter((l) => l.rec.principal === 'p1').length)
    expect((await r.query({ limit: 1000, text: 'requ' })).entries.every((e) => e.record.event !== undefined)).toBe(true)
    const good = page.entries[0]?.cursor ?? ''
    const [body = '', mac = ''] = good.split('.')
    const forgedBody = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), o: 0 })).toString('base64url')
    const BAD = ['', 'nonsense', `${body}.`, `${forgedBody}.${mac}`, `${body}.${'A'.repeat(43)}`, 'x'.repeat(10_000), reader(file).constructor.name]
    for (const cursor of BAD) {
      for (const call of [() => r.query({ limit: 5, before: cursor }), () => r.query({ limit: 5, after: cursor }), () => r.verify(cursor, good)]) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(error, cursor).toBeInstanceOf(SecurityError)
        expect((error as SecurityError).code).toBe('ERR_INVALID_REQUEST')
      }
    }
    // A cursor of another reader (or from before a restart) is stale.
    const other = reader(file)
    const theirs = (await other.query({ limit: 1 })).newest ?? ''
    await expect(r.query({ limit: 1, before: theirs })).rejects.toMatchObject({ code: 'ERR_INVALID_REQUEST' })
    await expect(r.query({ limit: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_REQUEST' })
    await expect(r.query({ limit: 5, from: 'yesterday' })).rejects.toMatchObject({ code: 'ERR_INVALID_REQUEST' })
    await r.close()
  })

  it('a bounded verifier keeps its first problems and says a range past them cannot be verified here', async () => {
    const { file } = trail(60)
    const text = readFileSync(file, 'utf8').split('\n')
    for (const at of [5, 20, 40]) text[at] = (text[at] ?? '').replace('"reason":"', '"reason":"X')
    writeFileSync(file, text.join('\n'))
    const r = reader(file, { maxProblems: 1, maxSeen: 2 })
    const all = await r.query({ limit: 1000 })
    const oldest = all.entries.at(-1)?.cursor ?? ''
    const at = (line: number) => all.entries.find((e) => e.where === `audit.jsonl:${line}`)?.cursor ?? ''
    expect(await r.verify(oldest, at(5))).toStrictEqual({ status: 'verified', lines: 5, problems: [], gaps: [] })
    expect((await r.verify(oldest, at(10))).problems).toStrictEqual([{ where: 'audit.jsonl:6', kind: 'forged', reason: expect.stringMatching(/MAC does not match/) }])
    const past = await r.verify(at(30), all.newest ?? '')
    expect(past.status).toBe('forged')
    expect(past.problems).toStrictEqual([{ where: 'audit.jsonl:21', kind: 'unverifiable', reason: expect.stringMatching(/2 more counted/) }])
    await r.close()
  })
})
