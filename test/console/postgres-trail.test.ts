import { randomBytes } from 'node:crypto'
import { appendFileSync, mkdtempSync, readFileSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuditLog, FileAuditSink } from '../../src/audit/audit-log.js'
import { PostgresAuditSink } from '../../src/audit/sinks.js'
import { PostgresTrailReader } from '../../src/console/postgres-trail.js'
import type { TrailEntry, TrailReader } from '../../src/console/trail.js'
import { SecurityError } from '../../src/errors.js'
import { countsOf, FILTER_CASES, type FilterCase, KEY, NOW, pageAll, quantile, type Rec, START, steppingClock, topOf, writeMix } from './trail-fixture.js'

// The machine's PostgreSQL (trust auth, database test). Missing, this suite fails in beforeAll.
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test'
let admin: pg.Client
const tables: string[] = []
const readers: TrailReader[] = []
const newTable = (): string => {
  const t = `console_t_${randomBytes(5).toString('hex')}`
  tables.push(t)
  return t
}
beforeAll(async () => {
  admin = new pg.Client({ connectionString: PG_URL })
  await admin.connect()
})
afterAll(async () => {
  for (const r of readers) await r.close()
  for (const t of tables) await admin.query(`DROP TABLE IF EXISTS ${t}`)
  await admin.end()
})

/** A table written by the real sink: `n` scripted lines from one writer. */
async function sinkTrail(n: number, table = newTable(), clock = steppingClock()): Promise<{ table: string; clock: () => Date }> {
  const sink = await PostgresAuditSink.open(PG_URL, table)
  const log = new AuditLog(sink, clock, KEY)
  writeMix(log, n)
  await log.flush()
  log.close()
  await log.closed()
  return { table, clock }
}

async function rows(table: string): Promise<{ id: number; raw: string; rec: Rec }[]> {
  const r = await admin.query<{ id: string; line: string }>(`SELECT id, line FROM ${table} ORDER BY id`)
  return r.rows.map((x) => ({ id: Number(x.id), raw: x.line, rec: JSON.parse(x.line) as Rec }))
}

async function open(table: string, extra: Partial<Parameters<typeof PostgresTrailReader.open>[0]> = {}): Promise<PostgresTrailReader> {
  const r = await PostgresTrailReader.open({ url: PG_URL, table, keys: [KEY], ...extra })
  readers.push(r)
  return r
}

const ids = (entries: readonly TrailEntry[]): string[] => entries.map((e) => e.where)

describe('PostgresTrailReader', () => {
  it('a table that does not exist yet reads as empty; once the sink creates it, lines are found', async () => {
    const table = newTable()
    const r = await open(table)
    expect(await r.query({ limit: 10 })).toStrictEqual({ entries: [] })
    expect((await r.stats(NOW)).lastDay).toStrictEqual({ allow: 0, deny: 0, error: 0 })
    expect((await r.lastSeen(['p0'])).size).toBe(0)
    await sinkTrail(20, table)
    expect((await r.query({ limit: 100 })).entries).toHaveLength(22)
    const indexes = await admin.query<{ indexdef: string }>('SELECT indexdef FROM pg_indexes WHERE tablename = $1', [table])
    expect(indexes.rows.map((x) => x.indexdef).join('\n')).toMatch(/mcp_bastion_audit_json\(line\) ->> 'principal'/)
  })

  it('filters on each field, text and time; paging with before reaches every line once; after tails new rows', async () => {
    const { table, clock } = await sinkTrail(250)
    const lines = await rows(table)
    const r = await open(table, { scanRows: 40 })
    const from = new Date(START + 50_000).toISOString()
    const to = new Date(START + 120_000).toISOString()
    const cases: FilterCase[] = [...FILTER_CASES, [{ from, to }, (x) => String(x.ts) >= from && String(x.ts) < to]]
    for (const [q, want] of cases) {
      const expected = lines.filter((l) => want(l.rec, l.raw)).reverse()
      expect(expected.length, JSON.stringify(q)).toBeGreaterThan(0)
      expect(ids(await pageAll(r, q, 7)), JSON.stringify(q)).toStrictEqual(expected.map((l) => `${table}#${l.id}`))
    }
    // An unindexed filter over more rows than one query may scan: it says how far it searched.
    const page = await r.query({ limit: 5, event: 'audit.opened' })
    expect(page.entries).toStrictEqual([])
    expect(page.searchedBackTo).toMatch(/^2026-03-01T/)
    const newest = (await r.query({ limit: 1 })).newest ?? ''
    const sink = await PostgresAuditSink.open(PG_URL, table)
    const log = new AuditLog(sink, clock, KEY)
    writeMix(log, 30, 'b')
    await log.flush()
    log.close()
    await log.closed()
    const added = (await rows(table)).slice(lines.length)
    const tail: TrailEntry[] = []
    let after = newest
    for (let i = 0; i < 50; i++) {
      const p = await r.query({ limit: 8, after })
      tail.push(...p.entries)
      if (p.next === undefined) break
      after = p.next
    }
    expect(ids(tail)).toStrictEqual(added.map((l) => `${table}#${l.id}`))
  })

  it('stats and lastSeen equal what the rows say; export streams the matching lines as stored', async () => {
    const { table } = await sinkTrail(400)
    const lines = await rows(table)
    const recs = lines.map((l) => l.rec)
    const r = await open(table)
    const s = await r.stats(NOW)
    expect(s.lastHour).toStrictEqual(countsOf(recs))
    expect(s.lastDay).toStrictEqual(countsOf(recs))
    for (const b of s.perMinute) expect(b, b.t).toMatchObject(countsOf(recs.filter((x) => String(x.ts).slice(0, 16) === b.t.slice(0, 16))))
    const req = recs.filter((x) => typeof x.requestId === 'string')
    expect(s.topPrincipals).toStrictEqual(topOf(req.map((x) => x.principal)))
    expect(s.topTools).toStrictEqual(topOf(req.map((x) => x.tool)))
    expect(s.topDenials).toStrictEqual(topOf(req.filter((x) => x.decision !== 'allow').map((x) => x.reason)))
    const ms = req.map((x) => Number(x.durationMs))
    expect(Math.abs((s.p50Ms ?? 0) - quantile(ms, 0.5))).toBeLessThanOrEqual(1)
    expect(Math.abs((s.p99Ms ?? 0) - quantile(ms, 0.99))).toBeLessThanOrEqual(1)
    const seen = await r.lastSeen(['p1', 'p4', 'nobody'])
    expect([...seen.entries()].sort()).toStrictEqual(['p1', 'p4'].map((p) => [p, String(req.findLast((x) => x.principal === p)?.ts)]))
    const out: string[] = []
    for await (const line of r.export({ principal: 'p4' })) out.push(line)
    expect(out).toStrictEqual(lines.filter((l) => l.rec.principal === 'p4').map((l) => l.raw))
  })

  it('verify: intact → verified (pending until read); a forged row → forged at its row; audit.repaired → gap', async () => {
    const { table } = await sinkTrail(120)
    const r = await open(table, { verifyRows: 50 })
    const page = await r.query({ limit: 1000 })
    const oldest = page.entries.at(-1)?.cursor ?? ''
    const newest = page.newest ?? ''
    expect((await r.verify(oldest, newest)).status).toBe('pending') // 50 rows read so far
    expect((await r.verify(oldest, newest)).status).toBe('pending')
    expect(await r.verify(oldest, newest)).toStrictEqual({ status: 'verified', lines: 122, problems: [], gaps: [] })
    // A copy without the guard trigger, with one row's field changed.
    const forged = newTable()
    await admin.query(`CREATE TABLE ${forged} AS SELECT * FROM ${table}`)
    const victim = (await rows(forged)).find((l) => l.rec.requestId === 'a-req-40')
    await admin.query(`UPDATE ${forged} SET line = replace(line, '"principal":"p0"', '"principal":"p3"') WHERE id = $1`, [victim?.id])
    const f = await open(forged)
    const fp = await f.query({ limit: 1000 })
    const v = await f.verify(fp.entries.at(-1)?.cursor ?? '', fp.newest ?? '')
    expect(v.status).toBe('forged')
    expect(v.problems).toStrictEqual([{ where: `${forged}#${victim?.id}`, kind: 'forged', reason: expect.stringMatching(/MAC does not match/) }])
    expect(v.lines).toBe(121)
    // Rows of a trail with a recorded gap (a torn tail cut by the next writer).
    const file = join(realpathSync(mkdtempSync(join(tmpdir(), 'bastion-pgt-'))), 'audit.jsonl')
    const clock = steppingClock()
    let log = new AuditLog(new FileAuditSink(file), clock, KEY)
    writeMix(log, 10)
    log.close()
    appendFileSync(file, '{"ts":"2026')
    log = new AuditLog(new FileAuditSink(file), clock, KEY)
    writeMix(log, 10, 'b')
    log.close()
    const gapped = newTable()
    await admin.query(`CREATE TABLE ${gapped} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), line text NOT NULL, writer text, n bigint)`)
    for (const line of readFileSync(file, 'utf8').split('\n').slice(0, -1)) await admin.query(`INSERT INTO ${gapped} (line) VALUES ($1)`, [`${line}\n`])
    const g = await open(gapped)
    const gp = await g.query({ limit: 1000 })
    const gv = await g.verify(gp.entries.at(-1)?.cursor ?? '', gp.newest ?? '')
    expect(gv.status).toBe('gap')
    expect(gv.gaps).toStrictEqual([{ where: gp.entries.find((e) => e.record.event === 'audit.repaired')?.where, detail: expect.stringMatching(/torn tail of 11 bytes/) }])
  })

  it('a row that is not JSON is skipped by queries and forged by the verifier; bad cursors are ERR_INVALID_REQUEST', async () => {
    const { table } = await sinkTrail(10)
    await admin.query(`INSERT INTO ${table} (line) VALUES ($1)`, ['{"ts":"2026-03-01T12:00:00.000Z","principal":"p1","torn\n'])
    const r = await open(table)
    const page = await r.query({ limit: 100 })
    expect(page.entries).toHaveLength(12)
    expect((await r.query({ limit: 100, principal: 'p1' })).entries).toHaveLength(2)
    const v = await r.verify(page.entries.at(-1)?.cursor ?? '', page.newest ?? '')
    expect(v).toMatchObject({ status: 'forged', problems: [{ kind: 'torn' }] })
    const good = page.entries[0]?.cursor ?? ''
    const [, mac = ''] = good.split('.')
    const forgedBody = Buffer.from(JSON.stringify({ id: 1 })).toString('base64url')
    for (const cursor of ['', 'x', `${forgedBody}.${mac}`, 'a'.repeat(2000)]) {
      for (const call of [() => r.query({ limit: 5, before: cursor }), () => r.query({ limit: 5, after: cursor }), () => r.verify(good, cursor)]) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(error).toBeInstanceOf(SecurityError)
        expect((error as SecurityError).code).toBe('ERR_INVALID_REQUEST')
      }
    }
  })
})
