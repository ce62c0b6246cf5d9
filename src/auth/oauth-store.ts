import type { Redis } from 'ioredis'
import { JsonFileView } from '../config/json-file.js'
import { connectRedis, redisReady, storeCall } from '../config/redis.js'
import { SecurityError } from '../errors.js'

/** What the authorization server keeps: registered clients, users' grants, redeemed codes. */
export type OAuthRecordKind = 'client' | 'grant' | 'code' | 'assertion' | 'flow'

/**
 * Small JSON records with an expiry, shared by every replica when the token store is Redis.
 * `once` is the single-use primitive: it stores `value` only if nothing is stored under the id
 * and returns what was there (undefined: this call was the first).
 * Does not check: the records' contents (their owners validate what they read back).
 */
export interface OAuthStore {
  get(kind: OAuthRecordKind, id: string): Promise<unknown>
  put(kind: OAuthRecordKind, id: string, value: unknown, expiresAt: number): Promise<void>
  once(kind: OAuthRecordKind, id: string, value: unknown, expiresAt: number): Promise<unknown>
  delete(kind: OAuthRecordKind, id: string): Promise<void>
  /** Every live record of a kind (operators' listings; bounded by the kind's own caps). */
  list(kind: OAuthRecordKind): Promise<{ id: string; value: unknown }[]>
  close(): Promise<void>
}

interface Entry {
  v: unknown
  exp: number
}

interface StoreFile {
  version: 1
  records: Record<string, Entry>
}

const ID = /^[\x21-\x7E]{1,512}$/

function keyOf(kind: OAuthRecordKind, id: string): string {
  if (!ID.test(id)) throw new SecurityError('ERR_INVALID_REQUEST', `${kind} id is not printable ASCII of 1 to 512 characters`)
  return `${kind}:${id}`
}

function parseFile(value: unknown): StoreFile {
  if (value === undefined) return { version: 1, records: Object.create(null) }
  const v = value as StoreFile
  if (v === null || typeof v !== 'object' || typeof v.records !== 'object' || v.records === null) throw new Error('authorization server store is corrupt')
  const records: Record<string, Entry> = Object.create(null)
  for (const [k, e] of Object.entries(v.records)) if (e !== null && typeof e === 'object' && typeof e.exp === 'number') records[k] = { v: e.v, exp: e.exp }
  return { version: 1, records }
}

/** The embedded store: a 0600 JSON file in the state directory, changed atomically under a lock. */
export class FileOAuthStore implements OAuthStore {
  readonly #file: JsonFileView<StoreFile>

  constructor(path: string) {
    this.#file = new JsonFileView(path, parseFile, 250)
  }

  #update<T>(change: (records: Record<string, Entry>, now: number) => T): T {
    let out: T | undefined
    this.#file.update((file) => {
      const now = Date.now()
      for (const [k, e] of Object.entries(file.records)) if (e.exp <= now) delete file.records[k]
      out = change(file.records, now)
      return file
    })
    return out as T
  }

  async get(kind: OAuthRecordKind, id: string): Promise<unknown> {
    const entry = this.#file.read().records[keyOf(kind, id)]
    return entry === undefined || entry.exp <= Date.now() ? undefined : entry.v
  }

  async put(kind: OAuthRecordKind, id: string, value: unknown, expiresAt: number): Promise<void> {
    const key = keyOf(kind, id)
    this.#update((records) => {
      records[key] = { v: value, exp: expiresAt }
    })
  }

  async once(kind: OAuthRecordKind, id: string, value: unknown, expiresAt: number): Promise<unknown> {
    const key = keyOf(kind, id)
    return this.#update((records) => {
      const before = records[key]
      if (before !== undefined) return before.v
      records[key] = { v: value, exp: expiresAt }
      return undefined
    })
  }

  async delete(kind: OAuthRecordKind, id: string): Promise<void> {
    const key = keyOf(kind, id)
    this.#update((records) => {
      delete records[key]
    })
  }

  async list(kind: OAuthRecordKind): Promise<{ id: string; value: unknown }[]> {
    const now = Date.now()
    const prefix = `${kind}:`
    return Object.entries(this.#file.read().records)
      .filter(([k, e]) => k.startsWith(prefix) && e.exp > now)
      .map(([k, e]) => ({ id: k.slice(prefix.length), value: e.v }))
  }

  async close(): Promise<void> {}
}

/** The same records in Redis (one key each, expiring with the record), for replicas. */
export class RedisOAuthStore implements OAuthStore {
  readonly #redis: Redis
  readonly #prefix: string

  constructor(url: string, prefix: string, onError?: (e: Error) => void) {
    this.#redis = connectRedis(url, { timeoutMs: 1000, label: 'oauth', onError })
    this.#prefix = `${prefix}as:`
  }

  ready(timeoutMs: number): Promise<boolean> {
    return redisReady(this.#redis, timeoutMs)
  }

  #call<T>(run: () => Promise<T>): Promise<T> {
    return storeCall('authorization server store', run)
  }

  #parse(text: string | null): unknown {
    if (text === null) return undefined
    try {
      return JSON.parse(text)
    } catch {
      return undefined
    }
  }

  async get(kind: OAuthRecordKind, id: string): Promise<unknown> {
    const key = this.#prefix + keyOf(kind, id)
    return this.#parse(await this.#call(() => this.#redis.get(key)))
  }

  async put(kind: OAuthRecordKind, id: string, value: unknown, expiresAt: number): Promise<void> {
    const key = this.#prefix + keyOf(kind, id)
    await this.#call(() => this.#redis.set(key, JSON.stringify(value), 'PXAT', Math.max(expiresAt, Date.now() + 1)))
  }

  async once(kind: OAuthRecordKind, id: string, value: unknown, expiresAt: number): Promise<unknown> {
    const key = this.#prefix + keyOf(kind, id)
    const set = await this.#call(() => this.#redis.set(key, JSON.stringify(value), 'PXAT', Math.max(expiresAt, Date.now() + 1), 'NX'))
    if (set === 'OK') return undefined
    // Taken: what was stored (or, had it expired in between, the fact that it was taken).
    return this.#parse(await this.#call(() => this.#redis.get(key))) ?? null
  }

  async delete(kind: OAuthRecordKind, id: string): Promise<void> {
    const key = this.#prefix + keyOf(kind, id)
    await this.#call(() => this.#redis.del(key))
  }

  async list(kind: OAuthRecordKind): Promise<{ id: string; value: unknown }[]> {
    const prefix = `${this.#prefix}${kind}:`
    const out: { id: string; value: unknown }[] = []
    let cursor = '0'
    do {
      const [next, keys] = await this.#call(() => this.#redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500))
      cursor = next
      if (keys.length > 0) {
        const values = await this.#call(() => this.#redis.mget(...keys))
        keys.forEach((k, i) => {
          const value = this.#parse(values[i] ?? null)
          if (value !== undefined) out.push({ id: k.slice(prefix.length), value })
        })
      }
    } while (cursor !== '0')
    return out
  }

  async close(): Promise<void> {
    this.#redis.disconnect()
  }
}
