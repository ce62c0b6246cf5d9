import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { JsonFileView } from '../config/json-file.js'
import { connectRedis, redisReady } from '../config/redis.js'
import { SecurityError } from '../errors.js'

/** What a refresh token stands for. Stored under the token's hash, never the token. */
export interface RefreshGrant {
  readonly family: string
  readonly keyId: string
  readonly scopes: readonly string[]
  readonly expiresAt: number
}

export type UseResult = { readonly status: 'ok'; readonly grant: RefreshGrant } | { readonly status: 'reused'; readonly family: string } | { readonly status: 'invalid' }

/**
 * Refresh tokens with rotation (OAuth 2.1 §4.3.1): each use returns the grant and marks the token
 * used; a second use of the same token reports the family, which the caller revokes whole.
 * Access-token ids can be revoked until their expiry (RFC 7009).
 */
export interface RefreshStore {
  issue(grant: RefreshGrant): Promise<string>
  use(token: string): Promise<UseResult>
  revokeFamily(family: string, until: number): Promise<void>
  /** The family of a refresh token and the API key it was issued to. */
  familyOf(token: string): Promise<{ family: string; keyId: string } | undefined>
  revokeJti(jti: string, until: number): Promise<void>
  isRevoked(jti: string): Promise<boolean>
  close(): Promise<void>
}

export const newFamily = (): string => randomUUID()
const newToken = (): string => `bstr_${randomBytes(32).toString('base64url')}`
const hashOf = (token: string): string => createHash('sha256').update(token).digest('hex')

interface StoredFile {
  version: 1
  tokens: Record<string, RefreshGrant & { usedAt: number | null }>
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
  for (const [h, t] of Object.entries(file.tokens)) if (t.expiresAt <= now || file.families[t.family] !== undefined) delete file.tokens[h]
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

  async use(token: string): Promise<UseResult> {
    return this.#update((file): UseResult => {
      const entry = file.tokens[hashOf(token)]
      if (entry === undefined || entry.expiresAt <= Date.now()) return { status: 'invalid' }
      if (entry.usedAt !== null) return { status: 'reused', family: entry.family }
      entry.usedAt = Date.now()
      return { status: 'ok', grant: { family: entry.family, keyId: entry.keyId, scopes: entry.scopes, expiresAt: entry.expiresAt } }
    })
  }

  async familyOf(token: string): Promise<{ family: string; keyId: string } | undefined> {
    const grant = this.#read().tokens[hashOf(token)]
    return grant === undefined ? undefined : { family: grant.family, keyId: grant.keyId }
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

  async close(): Promise<void> {}
}

// Atomically: unknown → 0; used → 2 (and the family); else mark used → 1 with the grant.
const USE_SCRIPT = `
local v = redis.call('HMGET', KEYS[1], 'family', 'keyId', 'scopes', 'exp', 'used')
if v[1] == false then return {0} end
if v[5] == '1' then return {2, v[1]} end
redis.call('HSET', KEYS[1], 'used', '1')
return {1, v[1], v[2], v[3], v[4]}
`

type WithUse = Redis & { bastionUseRefresh(key: string): Promise<[number, ...string[]]> }

/** Refresh tokens in Redis, shared by every replica; the same rotation rule in one atomic script. */
export class RedisRefreshStore implements RefreshStore {
  readonly #redis: WithUse
  readonly #prefix: string

  constructor(url: string, prefix: string, onError?: (e: Error) => void) {
    const redis = connectRedis(url, { timeoutMs: 1000, label: 'tokens', onError })
    redis.defineCommand('bastionUseRefresh', { numberOfKeys: 1, lua: USE_SCRIPT })
    this.#redis = redis as WithUse
    this.#prefix = prefix
  }

  /** Wait for the first connection (start-up); resolves false if it does not come in time. */
  ready(timeoutMs: number): Promise<boolean> {
    return redisReady(this.#redis, timeoutMs)
  }

  async #call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw new SecurityError('ERR_AUTH_UNAVAILABLE', `token store unavailable: ${error instanceof Error ? error.message : 'error'}`, { cause: error })
    }
  }

  async issue(grant: RefreshGrant): Promise<string> {
    const token = newToken()
    const key = `${this.#prefix}rt:${hashOf(token)}`
    await this.#call(() =>
      this.#redis
        .multi()
        .hset(key, { family: grant.family, keyId: grant.keyId, scopes: grant.scopes.join(' '), exp: String(grant.expiresAt), used: '0' })
        .pexpireat(key, grant.expiresAt)
        .exec(),
    )
    return token
  }

  async use(token: string): Promise<UseResult> {
    const reply = await this.#call(() => this.#redis.bastionUseRefresh(`${this.#prefix}rt:${hashOf(token)}`))
    const [status, family = '', keyId = '', scopes = '', exp = '0'] = reply
    if (status === 2) return { status: 'reused', family }
    if (status !== 1) return { status: 'invalid' }
    if (Number(exp) <= Date.now() || (await this.#call(() => this.#redis.exists(`${this.#prefix}fam:${family}`))) === 1) return { status: 'invalid' }
    return { status: 'ok', grant: { family, keyId, scopes: scopes.split(' ').filter((s) => s.length > 0), expiresAt: Number(exp) } }
  }

  async familyOf(token: string): Promise<{ family: string; keyId: string } | undefined> {
    const [family, keyId] = await this.#call(() => this.#redis.hmget(`${this.#prefix}rt:${hashOf(token)}`, 'family', 'keyId'))
    return family == null || keyId == null ? undefined : { family, keyId }
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

  async close(): Promise<void> {
    this.#redis.disconnect()
  }
}
