import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { verifyAudit } from '../../src/audit/chain.js'
import { auditKeyId } from '../../src/audit/key-id.js'
import { rotateAuditKey } from '../../src/audit/key-rotation.js'
import { embeddedConfig } from '../../src/config/load.js'
import { type BastionConfigInput, createBastion } from '../../src/index.js'

const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'bastion-akl-')))
const quiet = { logger: pino({ level: 'silent' }), announce: false as const }
const hexKey = (): string => randomBytes(32).toString('hex')

/** A bastion opened in `dir` that records one line and closes: its trail and its key exist. */
async function trailIn(dir: string, config: BastionConfigInput = {}, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const b = await createBastion({ ...quiet, baseDir: dir, config, env })
  b.audit.record({ event: 'test.line', decision: 'allow', reason: 'OK' })
  await b.audit.flush()
  await b.close()
}

const start = (dir: string, config: BastionConfigInput = {}, env: NodeJS.ProcessEnv = {}) => createBastion({ ...quiet, baseDir: dir, config, env })

const files = (dir: string): { name: string; text: string }[] => [{ name: 'audit.jsonl', text: readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8') }]
const keyOf = (path: string): Buffer => Buffer.from(readFileSync(path, 'utf8').trim(), 'utf8')

describe('a missing or replaced audit key with an existing trail refuses to start', () => {
  it('deleted: ConfigError naming the key file, the trail, the key id it is sealed under and both fixes; no key is made', async () => {
    const dir = tmp()
    await trailIn(dir)
    const keyFile = join(dir, '.bastion', 'audit.key')
    const kid = auditKeyId(keyOf(keyFile))
    rmSync(keyFile)
    const refused = start(dir)
    await expect(refused).rejects.toMatchObject({ name: 'ConfigError' })
    await expect(refused).rejects.toThrow(
      `audit key ${keyFile} is missing, but the audit trail ${join(dir, '.bastion', 'audit.jsonl')} holds lines sealed under audit key ${kid}; a new key would make every earlier line fail audit verify. Restore ${keyFile} from a backup, or start a new key deliberately with mcp-bastion audit rotate-key`,
    )
    expect(existsSync(keyFile)).toBe(false)
  })

  it('replaced by another key: refused, naming both key ids; the trail is untouched', async () => {
    const dir = tmp()
    await trailIn(dir)
    const keyFile = join(dir, '.bastion', 'audit.key')
    const kid = auditKeyId(keyOf(keyFile))
    const other = hexKey()
    writeFileSync(keyFile, `${other}\n`)
    const before = readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
    await expect(start(dir)).rejects.toThrow(
      `audit key ${keyFile} (${auditKeyId(Buffer.from(other))}) is not the key the audit trail ${join(dir, '.bastion', 'audit.jsonl')} is sealed under (audit key ${kid}, or its last line was edited: run mcp-bastion audit verify)`,
    )
    expect(readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')).toBe(before)
  })

  it('only a rotated file holds the trail (audit.jsonl.<time>.<n>): still refused', async () => {
    const dir = tmp()
    await trailIn(dir)
    renameSync(join(dir, '.bastion', 'audit.jsonl'), join(dir, '.bastion', 'audit.jsonl.2026-01-01T00-00-00-000Z.000001'))
    rmSync(join(dir, '.bastion', 'audit.key'))
    await expect(start(dir)).rejects.toThrow(`the audit trail ${join(dir, '.bastion', 'audit.jsonl.2026-01-01T00-00-00-000Z.000001')} holds lines sealed under`)
  })

  it('a configured key (audit.key from the environment) that changed: refused, saying to restore its value', async () => {
    const dir = tmp()
    const config: BastionConfigInput = { audit: { key: { env: 'AUDIT_KEY' } } }
    await trailIn(dir, config, { AUDIT_KEY: hexKey() })
    await expect(start(dir, config, { AUDIT_KEY: hexKey() })).rejects.toThrow(
      /^config object: audit\.key \(ak_[0-9a-f]{16}\) is not the key the audit trail .* restore the earlier value of audit\.key/,
    )
  })

  it('the same key, or no trail yet: starts (a first start makes the key); each writer names its key by id in audit.opened', async () => {
    const dir = tmp()
    await trailIn(dir)
    await trailIn(dir)
    const key = keyOf(join(dir, '.bastion', 'audit.key'))
    expect(verifyAudit(files(dir), key)).toMatchObject({ ok: true, writers: 2 })
    const opened = (files(dir)[0]?.text ?? '').split('\n').filter((l) => l.includes('"event":"audit.opened"'))
    expect(opened.map((l) => (JSON.parse(l) as { kid?: unknown }).kid)).toStrictEqual([auditKeyId(key), auditKeyId(key)])
    expect(auditKeyId(key)).toMatch(/^ak_[0-9a-f]{16}$/)
    expect(files(dir)[0]?.text).not.toContain(key.toString('utf8'))
  })

  it('postgres: a table holding lines sealed under another key refuses the start', async () => {
    const url = 'postgres://postgres@127.0.0.1:5432/test'
    const table = `bastion_akl_${randomBytes(4).toString('hex')}`
    const config: BastionConfigInput = { audit: { sink: 'postgres', postgres: { url: { env: 'AUDIT_PG' }, table }, key: { env: 'AUDIT_KEY' } } }
    const dir = tmp()
    try {
      await trailIn(dir, config, { AUDIT_PG: url, AUDIT_KEY: hexKey() })
      await expect(start(dir, config, { AUDIT_PG: url, AUDIT_KEY: hexKey() })).rejects.toThrow(
        new RegExp(
          `^config object: audit\\.key \\(ak_[0-9a-f]{16}\\) is not the key the audit trail postgres table ${table} is sealed under \\(another key, or its last line was edited`,
        ),
      )
    } finally {
      const admin = new pg.Client({ connectionString: url })
      await admin.connect()
      await admin.query(`DROP TABLE IF EXISTS ${table}`)
      await admin.end()
    }
  })
})

describe('rotation: a hand-over line MACed by both keys', () => {
  it('after rotateAuditKey the bastion starts; the whole trail verifies with both keys; the old key is kept 0600', async () => {
    const dir = tmp()
    await trailIn(dir)
    const keyFile = join(dir, '.bastion', 'audit.key')
    const old = keyOf(keyFile)
    const r = rotateAuditKey(embeddedConfig({}, dir))
    expect(r).toMatchObject({ oldKid: auditKeyId(old), oldKey: 'held', kept: join(dir, '.bastion', `audit.key.${auditKeyId(old)}.old`) })
    const next = keyOf(keyFile)
    expect(r.newKid).toBe(auditKeyId(next))
    expect(statSync(keyFile).mode & 0o777).toBe(0o600)
    expect(statSync(r.kept ?? '').mode & 0o777).toBe(0o600)
    expect(keyOf(r.kept ?? '')).toStrictEqual(old)
    await trailIn(dir)
    expect(verifyAudit(files(dir), [next, old])).toMatchObject({ ok: true, writers: 3, open: [] })
    const handOver =
      files(dir)[0]
        ?.text.split('\n')
        .find((l) => l.includes('"event":"audit.key-rotated"')) ?? ''
    expect(JSON.parse(handOver)).toMatchObject({ oldKid: auditKeyId(old), newKid: auditKeyId(next), oldKey: 'held' })
    expect(handOver).toMatch(/,"macNext":"[0-9a-f]{64}","mac":"[0-9a-f]{64}"\}$/)
  })

  it('only the new key: the old lines are "wrong key", not forged; a forged line is still forged; an edited hand-over is forged', async () => {
    const dir = tmp()
    await trailIn(dir)
    const old = keyOf(join(dir, '.bastion', 'audit.key'))
    rotateAuditKey(embeddedConfig({}, dir))
    const next = keyOf(join(dir, '.bastion', 'audit.key'))
    await trailIn(dir)
    const [trail] = files(dir)
    const text = trail?.text ?? ''
    const onlyNew = verifyAudit(files(dir), next)
    expect(onlyNew).toMatchObject({
      ok: false,
      problem: { line: 1, reason: expect.stringMatching(`^wrong key: the line is sealed under audit key ${auditKeyId(old)}, which is not among the keys given`) },
    })
    const lines = text.split('\n')
    const last = lines.length - 2
    const forged = lines.map((l, i) => (i === last ? l.replace('"reason":"OK"', '"reason":"ERR"') : l)).join('\n')
    expect(verifyAudit([{ name: 'audit.jsonl', text: forged }], [next, old])).toMatchObject({
      ok: false,
      problem: { line: last + 1, reason: `MAC does not match under audit key ${auditKeyId(next)}: the line was edited or forged` },
    })
    const at = lines.findIndex((l) => l.includes('"event":"audit.key-rotated"'))
    // A field of the hand-over edited: the old key's MAC catches it.
    const edited = lines.map((l, i) => (i === at ? l.replace('"oldKey":"held"', '"oldKey":"lost"') : l)).join('\n')
    expect(verifyAudit([{ name: 'audit.jsonl', text: edited }], [next, old])).toMatchObject({
      ok: false,
      problem: { line: at + 1, reason: expect.stringMatching(/^MAC does not match under audit key/) },
    })
  })

  it('the key lost: rotate-key starts a new key deliberately (hand-over under the new key only, oldKey lost); the bastion starts', async () => {
    const dir = tmp()
    await trailIn(dir)
    const keyFile = join(dir, '.bastion', 'audit.key')
    const old = keyOf(keyFile)
    rmSync(keyFile)
    const r = rotateAuditKey(embeddedConfig({}, dir))
    expect(r).toMatchObject({ oldKid: auditKeyId(old), oldKey: 'lost', kept: undefined })
    await trailIn(dir)
    const next = keyOf(keyFile)
    expect(verifyAudit(files(dir), next)).toMatchObject({ ok: false, problem: { line: 1, reason: expect.stringMatching(/^wrong key/) } })
    // With the old key found again, the whole trail verifies.
    expect(verifyAudit(files(dir), [next, old])).toMatchObject({ ok: true, writers: 3 })
  })

  it('refused where the hand-over cannot go: a configured audit.key, or the postgres sink', () => {
    const dir = tmp()
    expect(() => rotateAuditKey(embeddedConfig({ audit: { key: { env: 'AUDIT_KEY' } } }, dir))).toThrow(/audit\.key is set in the config/)
    expect(() => rotateAuditKey(embeddedConfig({ audit: { sink: 'postgres', postgres: { url: { env: 'AUDIT_PG' }, table: 't' } } }, dir))).toThrow(/audit\.sink is postgres/)
    expect(existsSync(join(dir, '.bastion'))).toBe(false)
  })
})

describe('a damaged audit key file', () => {
  it('is refused at start with a config error naming the file, not as a short key later', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-shortkey-')))
    mkdirSync(join(dir, '.bastion'), { recursive: true })
    writeFileSync(join(dir, '.bastion', 'audit.key'), 'abc123\n', { mode: 0o600 })
    await expect(createBastion({ baseDir: dir, logger: pino({ level: 'silent' }), announce: false, env: {} })).rejects.toThrow(
      new RegExp(`audit key ${join(dir, '.bastion', 'audit.key')}: 6 bytes, fewer than 32: the file is damaged`),
    )
  })
})
