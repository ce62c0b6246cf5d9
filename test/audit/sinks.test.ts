import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyAudit } from '../../src/audit/chain.js'
import { PostgresAuditSink, StdoutAuditSink } from '../../src/audit/sinks.js'
import { type Bastion, type BastionConfigInput, createBastion } from '../../src/index.js'
import { BIN } from '../helpers/processes.js'
import { callModern } from '../helpers/server.js'

// The machine's PostgreSQL (trust auth, database test). Missing, this suite fails in beforeAll.
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test'
const AUDIT_KEY = 'audit-key-for-tests-0123456789abcdef0123'
let admin: pg.Client
beforeAll(async () => {
  admin = new pg.Client({ connectionString: PG_URL })
  await admin.connect()
})
afterAll(async () => {
  await admin.end()
})

describe('PostgreSQL audit sink', () => {
  const table = `bastion_audit_test_${randomBytes(4).toString('hex')}`
  const bastions: Bastion[] = []
  const tables = [table]
  afterAll(async () => {
    for (const b of bastions) await b.close()
    for (const t of tables) await admin.query(`DROP TABLE IF EXISTS ${t}`)
  })

  async function replica(into = table): Promise<{ bastion: Bastion; url: string; key: string }> {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-pg-')))
    const config: BastionConfigInput = {
      audit: { sink: 'postgres', postgres: { url: { env: 'AUDIT_PG' }, table: into }, key: { env: 'AUDIT_KEY' } },
      limits: { principal: { rate: '100000/min' } },
      alerts: { rules: [] },
    }
    const bastion = await createBastion({ baseDir: dir, logger: pino({ level: 'silent' }), announce: false, config, env: { AUDIT_PG: PG_URL, AUDIT_KEY } })
    bastions.push(bastion)
    const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
    return { bastion, url: running.url, key: bastion.keys.create({ name: 'a', roles: ['admin'], expiresAt: null }).key }
  }

  it('two replicas write one append-only table; every line is stored before the answer; the chains verify', async () => {
    const [a, b] = [await replica(), await replica()]
    const calls = []
    for (let i = 0; i < 40; i++) {
      const r = i % 2 === 0 ? a : b
      calls.push(callModern(r.url, r.key, 'read_file', { path: 'README.md' }, { id: i + 1 }))
    }
    const results = await Promise.all(calls)
    expect(results.every((r) => r.res.status === 200)).toBe(true)
    // Stored before the answer: every request id is already in the table.
    const rows = await admin.query<{ line: string }>(`SELECT line FROM ${table} ORDER BY id`)
    for (const r of results) expect(rows.rows.some((row) => row.line.includes(r.res.headers.get('x-request-id') ?? 'none'))).toBe(true)
    const report = verifyAudit([{ name: table, text: rows.rows.map((row) => row.line).join('') }], Buffer.from(AUDIT_KEY))
    expect(report).toMatchObject({ ok: true, writers: 2 })
    expect(report.lines).toBeGreaterThanOrEqual(42)
    await expect(admin.query(`UPDATE ${table} SET line = 'x' WHERE id = 1`)).rejects.toThrow(/append-only/)
    await expect(admin.query(`DELETE FROM ${table}`)).rejects.toThrow(/append-only/)
    await expect(admin.query(`TRUNCATE ${table}`)).rejects.toThrow(/append-only/)
  })

  it('replicas that start at once on a new table all open it: its setup is serialised, not raced', async () => {
    const fresh = `bastion_audit_race_${randomBytes(4).toString('hex')}`
    tables.push(fresh)
    const sinks = await Promise.all(Array.from({ length: 6 }, () => PostgresAuditSink.open(PG_URL, fresh)))
    try {
      const triggers = await admin.query(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = '${fresh}'::regclass AND NOT tgisinternal`)
      expect(triggers.rows[0]?.n).toBe(2)
    } finally {
      for (const sink of sinks) sink.close()
      await Promise.all(sinks.map((sink) => sink.whenClosed()))
    }
  })

  it('audit verify --postgres names the edited row even when someone bypassed the guard', async () => {
    // Its own table, written here by two replicas: this test does not lean on the one above.
    const own = `${table}_cli`
    tables.push(own)
    const writers = [await replica(own), await replica(own)]
    for (const [i, r] of writers.entries()) expect((await callModern(r.url, r.key, 'read_file', { path: 'README.md' }, { id: i + 1 })).res.status).toBe(200)
    for (const r of writers) {
      bastions.splice(bastions.indexOf(r.bastion), 1)
      await r.bastion.close()
    }
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-pg-cli-')))
    writeFileSync(join(dir, 'bastion.yaml'), `audit:\n  sink: postgres\n  postgres: { url: { env: AUDIT_PG }, table: ${own} }\n  key: { env: AUDIT_KEY }\n`)
    const env = { ...process.env, AUDIT_PG: PG_URL, AUDIT_KEY }
    const verify = () => spawnSync(process.execPath, [BIN, 'audit', 'verify', '--postgres', '--config', 'bastion.yaml'], { cwd: dir, encoding: 'utf8', env })
    const ok = verify()
    expect(ok.stdout).toMatch(/^OK: \d+ lines from 2 writer\(s\) verify\n$/)
    await admin.query(`ALTER TABLE ${own} DISABLE TRIGGER ALL`)
    await admin.query(`UPDATE ${own} SET line = replace(line, '"decision":"allow"', '"decision":"deny"') WHERE id = (SELECT min(id) + 4 FROM ${own})`)
    await admin.query(`ALTER TABLE ${own} ENABLE TRIGGER ALL`)
    const bad = verify()
    expect(bad.status).toBe(1)
    expect(bad.stdout).toMatch(new RegExp(`^FAIL ${own}:5: MAC does not match`))
  })

  it('an unreachable database fails the start closed, naming the setting and never the URL', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-pg-down-')))
    const secretUrl = 'postgres://auditor:pa55w0rd@127.0.0.1:9/test'
    await expect(
      createBastion({
        baseDir: dir,
        logger: pino({ level: 'silent' }),
        announce: false,
        config: { audit: { sink: 'postgres', postgres: { url: { env: 'AUDIT_PG' } } } },
        env: { AUDIT_PG: secretUrl },
      }),
    ).rejects.toThrow(/audit\.postgres: cannot open the audit table/)
    await createBastion({
      baseDir: dir,
      logger: pino({ level: 'silent' }),
      announce: false,
      config: { audit: { sink: 'postgres', postgres: { url: { env: 'AUDIT_PG' } } } },
      env: { AUDIT_PG: secretUrl },
    }).catch((error: Error) => {
      expect(error.message).not.toContain('pa55w0rd')
    })
  })

  it('a database that goes away after start fails requests closed (503), and the lines are kept for later', async () => {
    // A table of its own: its unsealed lines must not reach the replicas' table, whatever the order.
    const own = `${table}_outage`
    tables.push(own)
    const sink = await PostgresAuditSink.open(PG_URL, own)
    sink.write('{"a":1}\n')
    await sink.flush()
    // Kill this sink's own connection from the server side.
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%${own}%' AND datname = 'test'`)
    sink.write('{"a":2}\n')
    await expect(sink.flush()).rejects.toThrow()
    sink.close()
    await sink.whenClosed()
  })
})

describe('stdout audit sink', () => {
  it('a stalled reader: writes throw before the waiting bytes would pass the buffer, and succeed again once it catches up', async () => {
    const pending: (() => void)[] = []
    // A pipe whose reader takes nothing until told: every write waits in the stream's buffer.
    const out = new Writable({
      highWaterMark: 1 << 30,
      write(_chunk, _encoding, done) {
        pending.push(() => done())
      },
    })
    const sink = new StdoutAuditSink(1000, out)
    const line = `${'x'.repeat(99)}\n`
    let accepted = 0
    for (let i = 0; i < 100; i++) {
      try {
        sink.write(line)
      } catch {
        break
      }
      accepted += 1
      expect(out.writableLength).toBeLessThanOrEqual(1000)
    }
    expect(accepted).toBe(10)
    expect(() => sink.write(line)).toThrow(/not draining/)
    expect(sink.available()).toBe(false)
    // The reader catches up: accepted again.
    while (pending.length > 0 || out.writableLength > 0) {
      pending.shift()?.()
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(sink.available()).toBe(true)
    expect(() => sink.write(line)).not.toThrow()
    // A single line longer than the whole buffer still goes when nothing waits.
    const lone = new StdoutAuditSink(10, new Writable({ write: (_c, _e, done) => done() }))
    expect(() => lone.write(line)).not.toThrow()
  })

  it('serve --config with sink: stdout writes sealed lines to stdout (people-facing text goes to stderr), and they verify', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-stdout-')))
    writeFileSync(join(dir, 'bastion.yaml'), 'audit:\n  sink: stdout\n  key: { env: AUDIT_KEY }\n')
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--config', 'bastion.yaml'], {
      cwd: dir,
      env: { ...process.env, AUDIT_KEY },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
    })
    const url = await new Promise<string>((resolve) => {
      child.stderr.on('data', (c: Buffer) => {
        err += c.toString()
        const m = /listening on (\S+)/.exec(err)
        if (m?.[1] !== undefined) resolve(m[1])
      })
    })
    const key = /(bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43})/.exec(err)?.[1] ?? ''
    expect(key).not.toBe('')
    expect((await callModern(url, key, 'read_file', { path: 'README.md' })).res.status).toBe(200)
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
    })
    expect(out).not.toContain(key)
    const report = verifyAudit([{ name: 'stdout', text: out }], Buffer.from(AUDIT_KEY))
    expect(report).toMatchObject({ ok: true, open: [] })
    expect(out).toContain('"method":"tools/call"')
  })
})
