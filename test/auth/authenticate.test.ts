import { timingSafeEqual } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiKeyAuthenticator, credentialFromHeaders } from '../../src/auth/authenticate.js'
import { KeyStore } from '../../src/auth/key-store.js'
import { SecurityError } from '../../src/errors.js'

// Spy on the real comparison to prove which path runs; behaviour is unchanged.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>()
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) }
})

const T0 = Date.parse('2026-03-01T00:00:00.000Z')
const EXPIRY = new Date('2026-06-01T00:00:00.000Z')

let dir: string
let store: KeyStore
let good: string
let goodId: string
let revoked: string
let expiring: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bastion-authn-'))
  store = new KeyStore(join(dir, 'keys.json'), [], 0)
  ;({ key: good } = store.create({ name: 'ci', roles: ['reader', 'ops'], expiresAt: null }))
  goodId = good.slice(4, 20)
  ;({ key: revoked } = store.create({ name: 'old', roles: ['admin'], expiresAt: null }))
  store.revoke(revoked.slice(4, 20))
  ;({ key: expiring } = store.create({ name: 'temp', roles: ['reader'], expiresAt: EXPIRY }))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

beforeEach(() => {
  vi.mocked(timingSafeEqual).mockClear()
})

function codeOf(run: () => unknown): string | undefined {
  try {
    run()
    return undefined
  } catch (error) {
    if (error instanceof SecurityError) return error.code
    throw error
  }
}

/** Same id, different secret of the same shape. */
function wrongSecret(key: string): string {
  const last = key.at(-1) === 'A' ? 'B' : 'A'
  return `${key.slice(0, -1)}${last}`
}

describe('ApiKeyAuthenticator', () => {
  it('returns the principal for a valid key, never the secret', () => {
    const principal = new ApiKeyAuthenticator(store, () => T0).verify(good)
    expect(principal).toStrictEqual({ id: `key:${goodId}`, kind: 'api-key', name: 'ci', roles: ['reader', 'ops'] })
    expect(JSON.stringify(principal)).not.toContain(good.slice(21))
  })

  const REFUSED = [
    { name: 'not a bastion key', token: () => 'hunter2', code: 'ERR_AUTH_INVALID', compared: 0 },
    { name: 'unknown id', token: () => `bst_ffffffffffffffff_${good.slice(21)}`, code: 'ERR_AUTH_INVALID', compared: 1 },
    { name: 'wrong secret', token: () => wrongSecret(good), code: 'ERR_AUTH_INVALID', compared: 1 },
    { name: 'secret of another key under this id', token: () => `bst_${goodId}_${revoked.slice(21)}`, code: 'ERR_AUTH_INVALID', compared: 1 },
    { name: 'revoked key', token: () => revoked, code: 'ERR_AUTH_REVOKED', compared: 1 },
    { name: 'revoked id, wrong secret: status not revealed', token: () => wrongSecret(revoked), code: 'ERR_AUTH_INVALID', compared: 1 },
    { name: 'expired id, wrong secret: status not revealed', token: () => wrongSecret(expiring), code: 'ERR_AUTH_INVALID', compared: 1 },
  ] as const

  it.each(REFUSED)('$name → $code', ({ token, code, compared }) => {
    const authn = new ApiKeyAuthenticator(store, () => EXPIRY.getTime() + 1)
    expect(codeOf(() => authn.verify(token()))).toBe(code)
    // Unknown ids are compared against a dummy hash: same constant-time work as a wrong secret.
    expect(vi.mocked(timingSafeEqual)).toHaveBeenCalledTimes(compared)
    for (const [a, b] of vi.mocked(timingSafeEqual).mock.calls) {
      expect(a.byteLength).toBe(32)
      expect(b.byteLength).toBe(32)
    }
  })

  it('the refusal message names the key id, never the secret', () => {
    try {
      new ApiKeyAuthenticator(store).verify(wrongSecret(good))
      expect.unreachable('should have thrown')
    } catch (error) {
      expect(error).toBeInstanceOf(SecurityError)
      if (!(error instanceof SecurityError)) return
      expect(error.message).toContain(goodId)
      expect(error.message).not.toContain(good.slice(21, 40))
      expect(error.expose).toBeUndefined()
    }
  })

  const EXPIRY_CASES = [
    { name: 'long before expiry', now: T0, code: undefined },
    { name: 'one millisecond before expiry', now: EXPIRY.getTime() - 1, code: undefined },
    { name: 'exactly at expiry', now: EXPIRY.getTime(), code: 'ERR_AUTH_EXPIRED' },
    { name: 'after expiry', now: EXPIRY.getTime() + 86_400_000, code: 'ERR_AUTH_EXPIRED' },
  ] as const

  it.each(EXPIRY_CASES)('expiring key $name → $code', ({ now, code }) => {
    expect(codeOf(() => new ApiKeyAuthenticator(store, () => now).verify(expiring))).toBe(code)
  })

  it('a key without expiry never expires', () => {
    expect(codeOf(() => new ApiKeyAuthenticator(store, () => Number.MAX_SAFE_INTEGER).verify(good))).toBeUndefined()
  })
})

describe('credentialFromHeaders', () => {
  const KEY = 'bst_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
  const CASES: ReadonlyArray<{ name: string; headers: Record<string, string>; code?: string; token?: string; source?: string }> = [
    { name: 'no credential', headers: {}, code: 'ERR_AUTH_MISSING' },
    { name: 'unrelated headers only', headers: { cookie: `k=${KEY}` }, code: 'ERR_AUTH_MISSING' },
    { name: 'Bearer', headers: { authorization: `Bearer ${KEY}` }, token: KEY, source: 'authorization' },
    { name: 'lower-case scheme', headers: { authorization: `bearer ${KEY}` }, token: KEY, source: 'authorization' },
    { name: 'upper-case scheme', headers: { authorization: `BEARER ${KEY}` }, token: KEY, source: 'authorization' },
    { name: 'several spaces after the scheme (1*SP)', headers: { authorization: `Bearer   ${KEY}` }, token: KEY, source: 'authorization' },
    { name: 'surrounding whitespace (stripped by Headers)', headers: { authorization: `  Bearer ${KEY}  ` }, token: KEY, source: 'authorization' },
    { name: 'b64token with padding', headers: { authorization: 'Bearer abc+/-._~==' }, token: 'abc+/-._~==', source: 'authorization' },
    { name: 'X-API-Key', headers: { 'x-api-key': KEY }, token: KEY, source: 'x-api-key' },
    { name: 'both headers, same key', headers: { authorization: `Bearer ${KEY}`, 'x-api-key': KEY }, code: 'ERR_AUTH_INVALID' },
    { name: 'both headers, one malformed', headers: { authorization: 'Basic x', 'x-api-key': KEY }, code: 'ERR_AUTH_INVALID' },
    { name: 'empty Authorization', headers: { authorization: '' }, code: 'ERR_AUTH_INVALID' },
    { name: 'scheme only', headers: { authorization: 'Bearer' }, code: 'ERR_AUTH_INVALID' },
    { name: 'scheme and space only', headers: { authorization: 'Bearer ' }, code: 'ERR_AUTH_INVALID' },
    { name: 'Basic scheme', headers: { authorization: 'Basic dXNlcjpwYXNz' }, code: 'ERR_AUTH_INVALID' },
    { name: 'scheme without a space', headers: { authorization: `Bearer${KEY}` }, code: 'ERR_AUTH_INVALID' },
    { name: 'tab instead of space', headers: { authorization: `Bearer\t${KEY}` }, code: 'ERR_AUTH_INVALID' },
    { name: 'trailing junk after the token', headers: { authorization: `Bearer ${KEY} x` }, code: 'ERR_AUTH_INVALID' },
    { name: 'two tokens, comma-joined', headers: { authorization: `Bearer ${KEY}, Bearer ${KEY}` }, code: 'ERR_AUTH_INVALID' },
    { name: 'padding in the middle', headers: { authorization: 'Bearer ab=cd' }, code: 'ERR_AUTH_INVALID' },
    { name: 'quoted token', headers: { authorization: `Bearer "${KEY}"` }, code: 'ERR_AUTH_INVALID' },
    { name: 'scheme prefix lookalike', headers: { authorization: `Bearerx ${KEY}` }, code: 'ERR_AUTH_INVALID' },
    { name: 'empty X-API-Key', headers: { 'x-api-key': '' }, code: 'ERR_AUTH_INVALID' },
    { name: 'oversized X-API-Key', headers: { 'x-api-key': 'a'.repeat(513) }, code: 'ERR_AUTH_INVALID' },
  ]

  it.each(CASES)('$name', ({ headers, code, token, source }) => {
    let got: { token: string; source: string } | undefined
    const actual = codeOf(() => {
      got = credentialFromHeaders(new Headers(headers))
    })
    expect(actual).toBe(code)
    if (code === undefined) expect(got).toStrictEqual({ token, source })
  })

  it('two Authorization headers on the wire are refused, not first-wins', () => {
    const headers = new Headers()
    headers.append('authorization', `Bearer ${KEY}`)
    headers.append('authorization', `Bearer ${KEY}`)
    expect(codeOf(() => credentialFromHeaders(headers))).toBe('ERR_AUTH_INVALID')
  })

  it('an X-API-Key of exactly 512 characters is passed on for verification', () => {
    expect(credentialFromHeaders(new Headers({ 'x-api-key': 'a'.repeat(512) }))).toStrictEqual({ token: 'a'.repeat(512), source: 'x-api-key' })
  })
})
