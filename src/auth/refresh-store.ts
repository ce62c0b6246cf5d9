import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { JsonFileView } from '../config/json-file.js'
import { connectRedis, redisReady, storeCall } from '../config/redis.js'

/** What a refresh token stands for. Stored under the token's hash, never the token. */
export interface RefreshGrant {
  readonly family: string
  readonly keyId: string
  readonly scopes: readonly string[]
  readonly expiresAt: number
  /** Issued at the authorization endpoint: the OAuth client, and the user's grant it stands under. */
  readonly client?: string
  readonly grant?: string
}

/**
 * `ok`: the grant and its successor `next` (same grant, RFC 6749 §6); `retried` when the token had
 * already been rotated within the retry window and `next` is the successor that rotation made.
 */
export type UseResult =
  | { readonly status: 'ok'; readonly grant: RefreshGrant; readonly next: string; readonly retried: boolean }
  | { readonly status: 'reused'; readonly family: string }
  | { readonly status: 'invalid' }

/**
 * Refresh tokens with rotation (OAuth 2.1 §4.3.1): each use marks the token used and, in the same
 * atomic step, issues its successor. A used token presented again within `retryMs` of its rotation,
 * while that successor is still unused, returns the same successor: the answer to the first
 * attempt may never have arrived (the FAPI 2.0 Security Profile requires that a retry with the
 * previous refresh token succeed). Any other second use reports the family, which the caller
 * revokes whole. The successor is kept for the window only, sealed under a key derived from the old
 * token, which the store never holds. Access-token ids can be revoked until their expiry (RFC 7009).
 * Does not check: who presents a token (the caller compares `grant.keyId`, on retries too).
 */
export interface RefreshStore {
  issue(grant: RefreshGrant): Promise<string>
  use(token: string, retryMs: number): Promise<UseResult>
  revokeFamily(family: string, until: number): Promise<void>
  /** The family of a refresh token and the API key it was issued to. */
  familyOf(token: string): Promise<{ family: string; keyId: string; client?: string } | undefined>
  revokeJti(jti: string, until: number): Promise<void>
  isRevoked(jti: string): Promise<boolean>
  /** Was this refresh family revoked (reuse, a revoked grant)? Its access tokens are refused too. */
  isFamilyRevoked(family: string): Promise<boolean>
  close(): Promise<void>
}

export const newFamily = (): string => randomUUID()
const newToken = (): string => `bstr_${randomBytes(32).toString('base64url')}`
const hashOf = (token: string): string => createHash('sha256').update(token).digest('hex')

// The successor, kept for the retry window, is sealed (AES-256-GCM) under HMAC(old token, label):
// only whoever presents the old token can open it. The store holds SHA-256(old token), from which
// that key cannot be derived, so neither the store nor the keyring yields a usable refresh token.
const SEAL_LABEL = 'mcp-bastion refresh successor v1'
const sealKey = (old: string): Buffer => createHmac('sha256', old).update(SEAL_LABEL).digest()

function seal(next: string, old: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', sealKey(old), iv)
  cipher.setAAD(Buffer.from(hashOf(old)))
  const body = Buffer.concat([cipher.update(next, 'utf8'), cipher.final()])
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')
}

/** The sealed successor, or undefined if it does not open with this token. */
function unseal(sealed: string, old: string): string | undefined {
  try {
    const raw = Buffer.from(sealed, 'base64url')
    const decipher = createDecipheriv('aes-256-gcm', sealKey(old), raw.subarray(0, 12))
    decipher.setAAD(Buffer.from(hashOf(old)))
    decipher.setAuthTag(raw.subarray(12, 28))
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
  } catch {
    return undefined
  }
}

interface StoredToken extends RefreshGrant {
  usedAt: number | null
  /** Until `retryUntil`: the successor's hash and the successor sealed under this token. */
  next?: { hash: string; sealed: string; retryUntil: number }
}

interface StoredFile {
  version: 1
  tokens: Record<string, StoredToken>
  families: Record<string, number>
  jtis: Record<string, number>
}

function parseFile(value: unknown): StoredFile {
  if (value === undefined) return { version: 1, tokens: {}, families: {}, jtis: {} }
  const v = value as StoredFile
  if (v === null || typeof v !== 'object' || typeof v.tokens !== 'object' || typeof v.families !== 'object' || typeof v.jtis !== 'object')
    throw new Error('refresh token store is corrupt')
  // Null-prototype copies: the keys are hashes and ids, but never let one become a prototype.
  return {
    version: 1,
    tokens: Object.assign(Object.create(null), v.tokens),
    families: Object.assign(Object.create(null), v.families),
    jtis: Object.assign(Object.create(null), v.jtis),
  }
}

function prune(file: StoredFile, now: number): StoredFile {
  for (const [h, t] of Object.entries(file.tokens)) {
    if (t.expiresAt <= now || file.families[t.family] !== undefined) delete file.tokens[h]
    else if (t.next !== undefined && t.next.retryUntil <= now) delete t.next
  }
  for (const [f, until] of Object.entries(file.families)) if (until <= now) delete file.families[f]
  for (const [j, until] of Object.entries(file.jtis)) if (until <= now) delete file.jtis[j]
  return file
}

/**
 * The embedded store: a 0600 JSON file in the state directory, changed atomically under a lock,
 * so it survives restarts and the CLI can share it. Does not check: other replicas (use Redis).
 */
export class FileRefreshStore implements RefreshStore {
  // The revocation check runs on every token request: the file is looked at no more than every
  // 250 ms (this process's own changes are seen at once, another process's within that time).
  readonly #file: JsonFileView<StoredFile>

  constructor(readonly path: string) {
    this.#file = new JsonFileView(path, parseFile, 250)
  }

  #read(): StoredFile {
    return this.#file.read()
  }

  #update<T>(change: (file: StoredFile) => T): T {
    let out: T | undefined
    this.#file.update((file) => {
      const pruned = prune(file, Date.now())
      out = change(pruned)
      return pruned
    })
    return out as T
  }

  async issue(grant: RefreshGrant): Promise<string> {
    const token = newToken()
    this.#update((file) => {
      file.tokens[hashOf(token)] = { ...grant, usedAt: null }
    })
    return token
  }

  async use(token: string, retryMs: number): Promise<UseResult> {
    return this.#update((file): UseResult => {
      const now = Date.now()
      const entry = file.tokens[hashOf(token)]
      if (entry === undefined || entry.expiresAt <= now) return { status: 'invalid' }
      const grant: RefreshGrant = {
        family: entry.family,
        keyId: entry.keyId,
        scopes: entry.scopes,
        expiresAt: entry.expiresAt,
        ...(entry.client === undefined ? {} : { client: entry.client }),
        ...(entry.grant === undefined ? {} : { grant: entry.grant }),
      }
      if (entry.usedAt !== null) {
        const kept = entry.next
        const open = kept !== undefined && kept.retryUntil > now && file.tokens[kept.hash]?.usedAt === null ? unseal(kept.sealed, token) : undefined
        return open === undefined ? { status: 'reused', family: entry.family } : { status: 'ok', grant, next: open, retried: true }
      }
      const next = newToken()
      entry.usedAt = now
      file.tokens[hashOf(next)] = { ...grant, usedAt: null }
      if (retryMs > 0) entry.next = { hash: hashOf(next), sealed: seal(next, token), retryUntil: now + retryMs }
      return { status: 'ok', grant, next, retried: false }
    })
  }

  async familyOf(token: string): Promise<{ family: string; keyId: string; client?: string } | undefined> {
    const grant = this.#read().tokens[hashOf(token)]
    return grant === undefined ? undefined : { family: grant.family, keyId: grant.keyId, ...(grant.client === undefined ? {} : { client: grant.client }) }
  }

  async revokeFamily(family: string, until: number): Promise<void> {
    this.#update((file) => {
      file.families[family] = until
      for (const [h, t] of Object.entries(file.tokens)) if (t.family === family) delete file.tokens[h]
    })
  }

  async revokeJti(jti: string, until: number): Promise<void> {
    this.#update((file) => {
      file.jtis[jti] = until
    })
  }

  async isRevoked(jti: string): Promise<boolean> {
    const until = this.#read().jtis[jti]
    return until !== undefined && until > Date.now()
  }

  async isFamilyRevoked(family: string): Promise<boolean> {
    const until = this.#read().families[family]
    return until !== undefined && until > Date.now()
  }

  async close(): Promise<void> {}
}

// Atomically. KEYS: the token, its retry record, the successor; ARGV: the successor sealed under the
// token, the retry window in ms. Unknown → 0. Used → 3 with the grant and the sealed successor while
// the retry record lives (Redis expires it with the window), else 2 with the family. Unused → mark
// it used, write the successor (the same grant) and the retry record → 1 with the grant.
const USE_SCRIPT = `
local v = redis.call('HMGET', KEYS[1], 'family', 'keyId', 'scopes', 'exp', 'used', 'client', 'grant')
if v[1] == false then return {0} end
local client = v[6] or ''
local grant = v[7] or ''
if v[5] == '1' then
  local sealed = redis.call('GET', KEYS[2])
  if sealed then return {3, v[1], v[2], v[3], v[4], client, grant, sealed} end
  return {2, v[1]}
end
redis.call('HSET', KEYS[1], 'used', '1')
redis.call('HSET', KEYS[3], 'family', v[1], 'keyId', v[2], 'scopes', v[3], 'exp', v[4], 'used', '0', 'client', client, 'grant', grant)
redis.call('PEXPIREAT', KEYS[3], v[4])
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end
return {1, v[1], v[2], v[3], v[4], client, grant}
`

type WithUse = Redis & { bastionUseRefresh(token: string, retry: string, next: string, sealed: string, retryMs: string): Promise<[number, ...string[]]> }

/** Refresh tokens in Redis, shared by every replica; the same rotation rule in one atomic script. */
export class RedisRefreshStore implements RefreshStore {
  readonly #redis: WithUse
  readonly #prefix: string

  constructor(url: string, prefix: string, onError?: (e: Error) => void) {
    const redis = connectRedis(url, { timeoutMs: 1000, label: 'tokens', onError })
    redis.defineCommand('bastionUseRefresh', { numberOfKeys: 3, lua: USE_SCRIPT })
    this.#redis = redis as WithUse
    this.#prefix = prefix
  }

  /** Wait for the first connection (start-up); resolves false if it does not come in time. */
  ready(timeoutMs: number): Promise<boolean> {
    return redisReady(this.#redis, timeoutMs)
  }

  #call<T>(run: () => Promise<T>): Promise<T> {
    return storeCall('token store', run)
  }

  async issue(grant: RefreshGrant): Promise<string> {
    const token = newToken()
    const key = `${this.#prefix}rt:${hashOf(token)}`
    await this.#call(() =>
      this.#redis
        .multi()
        .hset(key, {
          family: grant.family,
          keyId: grant.keyId,
          scopes: grant.scopes.join(' '),
          exp: String(grant.expiresAt),
          used: '0',
          client: grant.client ?? '',
          grant: grant.grant ?? '',
        })
        .pexpireat(key, grant.expiresAt)
        .exec(),
    )
    return token
  }

  async use(token: string, retryMs: number): Promise<UseResult> {
    const key = `${this.#prefix}rt:${hashOf(token)}`
    const fresh = newToken()
    const reply = await this.#call(() => this.#redis.bastionUseRefresh(key, `${key}:retry`, `${this.#prefix}rt:${hashOf(fresh)}`, seal(fresh, token), String(retryMs)))
    const [status, family = '', keyId = '', scopes = '', exp = '0', client = '', grantId = '', sealed = ''] = reply
    if (status === 2) return { status: 'reused', family }
    if (status !== 1 && status !== 3) return { status: 'invalid' }
    const grant: RefreshGrant = {
      family,
      keyId,
      scopes: scopes.split(' ').filter((s) => s.length > 0),
      expiresAt: Number(exp),
      ...(client === '' ? {} : { client }),
      ...(grantId === '' ? {} : { grant: grantId }),
    }
    if (status === 1) {
      if (grant.expiresAt <= Date.now() || (await this.#call(() => this.#redis.exists(`${this.#prefix}fam:${family}`))) === 1) return { status: 'invalid' }
      return { status: 'ok', grant, next: fresh, retried: false }
    }
    // A retry: the successor that rotation wrote, if it opens with this token and is still unused.
    const next = unseal(sealed, token)
    if (next === undefined) return { status: 'reused', family }
    // Each call throws ERR_AUTH_UNAVAILABLE on failure: a store error is a 503 to retry, never a reuse.
    const [used, revoked] = await Promise.all([
      this.#call(() => this.#redis.hget(`${this.#prefix}rt:${hashOf(next)}`, 'used')),
      this.#call(() => this.#redis.exists(`${this.#prefix}fam:${family}`)),
    ])
    if (grant.expiresAt <= Date.now() || revoked === 1) return { status: 'invalid' }
    if (used !== '0') return { status: 'reused', family }
    return { status: 'ok', grant, next, retried: true }
  }

  async familyOf(token: string): Promise<{ family: string; keyId: string; client?: string } | undefined> {
    const [family, keyId, client] = await this.#call(() => this.#redis.hmget(`${this.#prefix}rt:${hashOf(token)}`, 'family', 'keyId', 'client'))
    return family == null || keyId == null ? undefined : { family, keyId, ...(client == null || client === '' ? {} : { client }) }
  }

  async revokeFamily(family: string, until: number): Promise<void> {
    await this.#call(() => this.#redis.set(`${this.#prefix}fam:${family}`, '1', 'PXAT', until))
  }

  async revokeJti(jti: string, until: number): Promise<void> {
    await this.#call(() => this.#redis.set(`${this.#prefix}jti:${jti}`, '1', 'PXAT', until))
  }

  async isRevoked(jti: string): Promise<boolean> {
    return (await this.#call(() => this.#redis.exists(`${this.#prefix}jti:${jti}`))) === 1
  }

  async isFamilyRevoked(family: string): Promise<boolean> {
    return (await this.#call(() => this.#redis.exists(`${this.#prefix}fam:${family}`))) === 1
  }

  async close(): Promise<void> {
    this.#redis.disconnect()
  }
}
