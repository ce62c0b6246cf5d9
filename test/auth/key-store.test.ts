import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashApiKey } from '../../src/auth/api-key.js'
import { KeyStore, type StoredKey } from '../../src/auth/key-store.js'

let dir: string
let n = 0
const freshPath = () => join(dir, `store-${++n}`, 'keys.json')

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bastion-keystore-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const NOW = new Date('2026-02-03T04:05:06.000Z')

describe('KeyStore', () => {
  it('an absent file is an empty store', () => {
    const store = new KeyStore(freshPath())
    expect(store.list()).toStrictEqual([])
    expect(store.get('0123456789abcdef')).toBeUndefined()
  })

  it('stores the hash only: the file never contains the key or its secret', async () => {
    const path = freshPath()
    const store = new KeyStore(path, [], 0)
    const { key, stored } = store.create({ name: 'ci', roles: ['reader'], expiresAt: null, now: NOW })
    const text = await readFile(path, 'utf8')
    const secret = key.slice(21)
    expect(secret).toHaveLength(43)
    expect(text).not.toContain(key)
    expect(text).not.toContain(secret)
    expect(text).not.toContain(secret.slice(0, 16))
    expect(text).toContain(hashApiKey(key))
    expect(JSON.parse(text)).toStrictEqual({
      version: 1,
      keys: [{ id: stored.id, name: 'ci', roles: ['reader'], hash: hashApiKey(key), createdAt: NOW.toISOString(), expiresAt: null, revokedAt: null }],
    })
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect(existsSync(`${path}.lock`)).toBe(false)
    expect(store.get(stored.id)).toStrictEqual(stored)
  })

  it('revocation is visible to a second instance on the same file (reloadIntervalMs 0)', () => {
    const path = freshPath()
    const cli = new KeyStore(path, [], 0)
    const { stored } = cli.create({ name: 'ci', roles: ['reader'], expiresAt: null })
    const server = new KeyStore(path, [], 0)
    expect(server.get(stored.id)?.revokedAt).toBeNull()
    expect(cli.revoke(stored.id, NOW)).toBe(true)
    expect(server.get(stored.id)?.revokedAt).toBe(NOW.toISOString())
  })

  it('a key created by another instance is visible without a restart', () => {
    const path = freshPath()
    const server = new KeyStore(path, [], 0)
    const { stored } = new KeyStore(path, [], 0).create({ name: 'late', roles: ['reader'], expiresAt: null })
    expect(server.get(stored.id)?.name).toBe('late')
  })

  it('within reloadIntervalMs the last loaded store is used (documented cache)', () => {
    const path = freshPath()
    const cli = new KeyStore(path, [], 0)
    const { stored } = cli.create({ name: 'ci', roles: ['reader'], expiresAt: null })
    const server = new KeyStore(path, [], 60_000)
    expect(server.get(stored.id)?.revokedAt).toBeNull()
    cli.revoke(stored.id)
    expect(server.get(stored.id)?.revokedAt).toBeNull()
    expect(server.list().find((k) => k.id === stored.id)?.revokedAt).not.toBeNull() // list() always re-reads
  })

  it('revoking an unknown id returns false and revoking twice keeps the first time', () => {
    const store = new KeyStore(freshPath(), [], 0)
    const { stored } = store.create({ name: 'ci', roles: [], expiresAt: null })
    expect(store.revoke('ffffffffffffffff')).toBe(false)
    expect(store.revoke(stored.id, NOW)).toBe(true)
    expect(store.revoke(stored.id, new Date('2030-01-01T00:00:00.000Z'))).toBe(true)
    expect(store.get(stored.id)?.revokedAt).toBe(NOW.toISOString())
  })

  it('config keys win over a stored key with the same id and cannot be revoked through the store', () => {
    const path = freshPath()
    const store = new KeyStore(path, [], 0)
    const { stored } = store.create({ name: 'from-file', roles: ['admin'], expiresAt: null })
    const configKey: StoredKey = { ...stored, name: 'from-config', roles: ['reader'], source: 'config' }
    const withConfig = new KeyStore(path, [configKey], 0)
    expect(withConfig.get(stored.id)).toStrictEqual(configKey)
    const other: StoredKey = { ...configKey, id: 'aaaaaaaaaaaaaaaa' }
    expect(new KeyStore(path, [other], 0).revoke(other.id)).toBe(false)
  })

  it('refuses to write while another process holds the lock, and leaves the store untouched', async () => {
    const path = freshPath()
    const store = new KeyStore(path, [], 0)
    store.create({ name: 'ci', roles: [], expiresAt: null })
    const before = await readFile(path, 'utf8')
    await writeFile(`${path}.lock`, '')
    expect(() => store.create({ name: 'x', roles: [], expiresAt: null })).toThrow(/key store is locked by another process/)
    expect(await readFile(path, 'utf8')).toBe(before)
    await rm(`${path}.lock`)
  })

  const validKey = { id: '0123456789abcdef', name: 'k', roles: ['r'], hash: 'a'.repeat(64), createdAt: NOW.toISOString(), expiresAt: null, revokedAt: null }
  const CORRUPT = [
    { name: 'not JSON', text: '{"version":1,"keys":[', error: /: not valid JSON$/ },
    { name: 'empty file', text: '', error: /: not valid JSON$/ },
    { name: 'wrong version', text: JSON.stringify({ version: 2, keys: [] }), error: /: version: / },
    { name: 'keys not an array', text: JSON.stringify({ version: 1, keys: {} }), error: /: keys: / },
    { name: 'a plaintext secret field', text: JSON.stringify({ version: 1, keys: [{ ...validKey, secret: 'x' }] }), error: /: keys\.0: / },
    { name: 'hash not hex', text: JSON.stringify({ version: 1, keys: [{ ...validKey, hash: 'z'.repeat(64) }] }), error: /: keys\.0\.hash: / },
    { name: 'id wrong length', text: JSON.stringify({ version: 1, keys: [validKey, { ...validKey, id: 'abc' }] }), error: /: keys\.1\.id: / },
    { name: 'bad date', text: JSON.stringify({ version: 1, keys: [{ ...validKey, revokedAt: 'yesterday' }] }), error: /: keys\.0\.revokedAt: / },
    { name: 'unknown top-level key', text: JSON.stringify({ version: 1, keys: [], extra: true }), error: /: Unrecognized key: "extra"/ },
  ] as const

  it.each(CORRUPT)('a corrupted store file ($name) fails at construction with a clear error', async ({ text, error }) => {
    const path = freshPath()
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, text)
    expect(() => new KeyStore(path)).toThrow(error)
    expect(() => new KeyStore(path)).toThrow(`key store ${path}`)
  })

  it('a store corrupted after start keeps the last good keys (no mass lock-out, no corrupt accept)', async () => {
    const path = freshPath()
    const store = new KeyStore(path, [], 0)
    const { stored } = store.create({ name: 'ci', roles: ['reader'], expiresAt: null })
    await writeFile(path, '{ garbage, longer than the original so its size changes '.padEnd(4096, '.'))
    expect(store.get(stored.id)).toStrictEqual(stored)
  })

  it('a corrupted store is reported once it stood still for reloadIntervalMs (log error, keys.rejected), never while a writer may be mid-write', async () => {
    const path = freshPath()
    const logged: { level: number; msg: string }[] = []
    const records: Record<string, unknown>[] = []
    const log = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as { level: number; msg: string }) })
    const store = new KeyStore(path, [], 200, { log, audit: { record: (f) => void records.push(f) } })
    const { stored } = store.create({ name: 'ci', roles: ['reader'], expiresAt: null })
    const good = await readFile(path, 'utf8')
    await writeFile(path, good.slice(0, 40))
    // Modified just now: it may still be being written.
    expect(store.get(stored.id)).toStrictEqual(stored)
    expect(records).toStrictEqual([])
    await new Promise((r) => setTimeout(r, 210))
    expect(store.get(stored.id)).toStrictEqual(stored)
    expect(records).toMatchObject([{ event: 'keys.rejected', decision: 'error', reason: 'KEYS_INVALID', source: path, keys: 1, detail: `key store ${path}: not valid JSON` }])
    expect(logged.filter((l) => l.level === 50)).toMatchObject([{ msg: `key store change refused, the last good store stays in force: key store ${path}: not valid JSON` }])
    // Whole again: taken at the next check, nothing more reported.
    await writeFile(path, good)
    await new Promise((r) => setTimeout(r, 210))
    expect(store.list()).toStrictEqual([stored])
    expect(records).toHaveLength(1)
  })
})
