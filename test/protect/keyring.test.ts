import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { configuredKeyring, DecryptError, Keyring } from '../../src/protect/keyring.js'
import { BIN } from '../helpers/processes.js'
import { callModern, connect, startServer, type TestServer } from '../helpers/server.js'

const K1 = 'a'.repeat(64)
const K2 = 'b'.repeat(64)

describe('envelope encryption (AES-256-GCM)', () => {
  const ring = configuredKeyring([{ id: 'k1', value: K1 }], 'k1')

  it('round-trips, with a fresh data key and IV every time', () => {
    const a = ring.encrypt('s3cret', 'vault:db')
    const b = ring.encrypt('s3cret', 'vault:db')
    expect(a).not.toBe(b)
    expect(a.startsWith('bse1.k1.')).toBe(true)
    expect(a).not.toContain('s3cret')
    expect(ring.decrypt(a, 'vault:db')).toBe('s3cret')
  })

  it('refuses a ciphertext moved to another purpose, a tampered one, and one whose key is gone', () => {
    const envelope = ring.encrypt('s3cret', 'vault:db')
    expect(() => ring.decrypt(envelope, 'vault:other')).toThrow(DecryptError)
    const parts = envelope.split('.')
    const body = Buffer.from(parts[3] ?? '', 'base64url')
    body[14] = (body[14] ?? 0) ^ 1
    expect(() => ring.decrypt([...parts.slice(0, 3), body.toString('base64url')].join('.'), 'vault:db')).toThrow(/authentication tag mismatch/)
    expect(() => configuredKeyring([{ id: 'k2', value: K2 }], 'k2').decrypt(envelope, 'vault:db')).toThrow(/key k1 is not in the keyring/)
    // Same id, different key material: the wrapped data key does not authenticate.
    expect(() => configuredKeyring([{ id: 'k1', value: K2 }], 'k1').decrypt(envelope, 'vault:db')).toThrow(DecryptError)
  })

  it('a rotated keyring encrypts under the new key and still decrypts the old', () => {
    const old = ring.encrypt('s3cret', 'vault:db')
    const rotated = configuredKeyring(
      [
        { id: 'k1', value: K1 },
        { id: 'k2', value: K2 },
      ],
      'k2',
    )
    expect(rotated.decrypt(old, 'vault:db')).toBe('s3cret')
    expect(Keyring.keyIdOf(rotated.encrypt('x', 'vault:db'))).toBe('k2')
  })

  it('refuses short keys and unknown active ids at construction', () => {
    expect(() => configuredKeyring([{ id: 'k1', value: 'abcd' }], 'k1')).toThrow(/32 bytes/)
    expect(() => configuredKeyring([{ id: 'k1', value: K1 }], 'k9')).toThrow(/active key k9/)
  })
})

describe('vault tools and secrets rotate', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ auth: { tokenService: { enabled: true }, resource: 'https://mcp.test/mcp' } })
  })
  afterAll(async () => {
    await server.close()
  })

  it('store_secret and get_secret under RBAC; the file holds only ciphertext and the audit trail never the value', async () => {
    const client = await connect(server.url, 'modern', { authorization: `Bearer ${server.keys.admin}` })
    expect((await client.callTool({ name: 'store_secret', arguments: { name: 'db-password', secret: 'hunter2-CANARY' } })).isError ?? false).toBe(false)
    const got = await client.callTool({ name: 'get_secret', arguments: { name: 'db-password' } })
    expect((got.content as { text: string }[])[0]?.text).toBe('hunter2-CANARY')
    await client.close()
    const denied = await callModern(server.url, server.keys.reader, 'get_secret', { name: 'db-password' })
    expect(denied.res.status).toBe(403)
    expect(readFileSync(join(server.dir, '.bastion', 'vault.json'), 'utf8')).not.toContain('hunter2')
    expect(readFileSync(server.auditPath, 'utf8')).not.toContain('hunter2')
    // Signing keys are encrypted at rest too: no private "d" parameter in the file.
    expect(readFileSync(join(server.dir, '.bastion', 'signing-keys.json'), 'utf8')).not.toMatch(/"d":/)
  })

  it('secrets rotate re-encrypts everything under a new key, and the running server keeps reading it', async () => {
    // Its own entry, whatever ran before.
    const stored = await callModern(server.url, server.keys.admin, 'store_secret', { name: 'db-password', secret: 'hunter2-CANARY' })
    expect((stored.body.result as { isError?: boolean }).isError ?? false).toBe(false)
    const vaultFile = join(server.dir, '.bastion', 'vault.json')
    const before = Keyring.keyIdOf((JSON.parse(readFileSync(vaultFile, 'utf8')) as { entries: Record<string, { envelope: string }> }).entries['db-password']?.envelope ?? '')
    writeFileSync(join(server.dir, 'bastion.yaml'), 'auth:\n  resource: https://mcp.test/mcp\n  tokenService: { enabled: true }\n')
    const out = spawnSync(process.execPath, [BIN, 'secrets', 'rotate', '--config', 'bastion.yaml'], { cwd: server.dir, encoding: 'utf8' })
    expect(out.status).toBe(0)
    expect(out.stdout).toMatch(/re-encrypted 1 vault entry and 1 signing key\(s\)/)
    const after = Keyring.keyIdOf((JSON.parse(readFileSync(vaultFile, 'utf8')) as { entries: Record<string, { envelope: string }> }).entries['db-password']?.envelope ?? '')
    expect(after).not.toBe(before)
    const got = await callModern(server.url, server.keys.admin, 'get_secret', { name: 'db-password' })
    expect((got.body.result as { content: { text: string }[] }).content[0]?.text).toBe('hunter2-CANARY')
    // Tokens still sign with the re-encrypted key.
    const token = await fetch(`${new URL(server.url).origin}/oauth/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${server.keys.admin.slice(4, 20)}:${server.keys.admin}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials',
    })
    expect(token.status).toBe(200)
    const lines = readFileSync(server.auditPath, 'utf8')
    expect(lines).toContain('"event":"secrets.rotated"')
  })
})
