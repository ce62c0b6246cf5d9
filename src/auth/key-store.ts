import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { z } from 'zod'
import type { AuditFields } from '../audit/audit-log.js'
import { fileStamp, SettledFile, StateFileError } from '../config/json-file.js'
import { generateApiKey, hashApiKey } from './api-key.js'

/** One stored key: metadata and the hash, never the secret. */
export interface StoredKey {
  readonly id: string
  readonly name: string
  readonly roles: readonly string[]
  /** Tenant the key acts for, if the deployment has tenants (rate limits per tenant). */
  readonly tenant?: string
  /** SHA-256 hex of the whole key. */
  readonly hash: string
  readonly createdAt: string
  readonly expiresAt: string | null
  readonly revokedAt: string | null
  /** `config` keys come from bastion.yaml and cannot be revoked by the CLI. */
  readonly source: 'store' | 'config'
}

const storedKeySchema = z
  .object({
    id: z.string().regex(/^[0-9a-f]{16}$/),
    name: z.string().min(1).max(200),
    roles: z.array(z.string().min(1)).max(64),
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    createdAt: z.iso.datetime(),
    expiresAt: z.iso.datetime().nullable(),
    revokedAt: z.iso.datetime().nullable(),
  })
  .strict()

const storeFileSchema = z.object({ version: z.literal(1), keys: z.array(storedKeySchema) }).strict()

/** Where a running server says that it refused a changed store: the operator log and the audit trail. */
export interface StoreSignals {
  readonly log: Logger
  readonly audit: { record(fields: AuditFields): void }
}

/**
 * API key store: a JSON file of hashed keys (mode 0600), written atomically (temp file + rename)
 * under an exclusive lock file, so the CLI and a running server never see a half-written store.
 * A running server re-reads the file when its mtime, size or inode changes, checked at most once per
 * `reloadIntervalMs`, so `keys revoke` takes effect without a restart. A JSON object's prefix never
 * parses, so a store that parses is whole and is taken at once; one that does not (edited by hand,
 * corrupted) is refused once it stood still for `reloadIntervalMs` (so a writer in mid-write is not
 * reported): the operator log gets an error, the audit trail a `keys.rejected` line, and the last
 * good store stays in force.
 *
 * Does not check: that roles named by a key exist in the config (the CLI does when given one).
 */
export class KeyStore {
  #byId = new Map<string, StoredKey>()
  #stamp = ''
  /** The stamp of a file refused (and reported) already. */
  #refused = ''
  #lastCheck = Number.NEGATIVE_INFINITY
  readonly #watch: SettledFile

  constructor(
    readonly path: string,
    private readonly configKeys: readonly StoredKey[] = [],
    private readonly reloadIntervalMs = 1000,
    private readonly signals?: StoreSignals,
  ) {
    this.#watch = new SettledFile(path, reloadIntervalMs)
    this.#load(true)
  }

  /** Look a key up by its public id, refreshing from disk if the file changed. */
  get(id: string): StoredKey | undefined {
    const now = performance.now()
    if (now - this.#lastCheck >= this.reloadIntervalMs) {
      this.#lastCheck = now
      this.#load(false)
    }
    return this.#byId.get(id)
  }

  list(): StoredKey[] {
    this.#load(false)
    return [...this.#byId.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
  }

  /** Create a key; returns the full key exactly once. */
  create(options: { name: string; roles: readonly string[]; expiresAt: Date | null; now?: Date }): { key: string; stored: StoredKey } {
    const { id, key } = generateApiKey()
    const now = options.now ?? new Date()
    const stored: StoredKey = {
      id,
      name: options.name,
      roles: [...options.roles],
      hash: hashApiKey(key),
      createdAt: now.toISOString(),
      expiresAt: options.expiresAt?.toISOString() ?? null,
      revokedAt: null,
      source: 'store',
    }
    this.#mutate((keys) => [...keys, stored])
    return { key, stored }
  }

  /** Revoke a stored key. Returns false if no such key. */
  revoke(id: string, now = new Date()): boolean {
    let found = false
    this.#mutate((keys) =>
      keys.map((k) => {
        if (k.id !== id) return k
        found = true
        return k.revokedAt === null ? { ...k, revokedAt: now.toISOString() } : k
      }),
    )
    return found
  }

  #readFile(): StoredKey[] {
    if (!existsSync(this.path)) return []
    let text: string
    try {
      text = readFileSync(this.path, 'utf8')
    } catch (error) {
      throw new StateFileError(`key store ${this.path}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new StateFileError(`key store ${this.path}: not valid JSON`)
    }
    const parsed = storeFileSchema.safeParse(json)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw new StateFileError(`key store ${this.path}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`)
    }
    return parsed.data.keys.map((k) => ({ ...k, source: 'store' as const }))
  }

  #load(initial: boolean): void {
    // A missing file means only config keys.
    const stamp = fileStamp(this.path)
    if (!initial && (stamp === this.#stamp || stamp === this.#refused)) return
    let stored: StoredKey[]
    try {
      stored = this.#readFile()
    } catch (error) {
      // Initial load: fail start-up. Later: keep the last good store rather than drop all keys
      // or accept a corrupt one, and say so once the file stands still.
      if (initial) throw error
      const look = this.#watch.look()
      if (look.settled && look.stamp === stamp) this.#refuse(stamp, error instanceof Error ? error.message : String(error))
      return
    }
    const byId = new Map<string, StoredKey>()
    for (const k of this.configKeys) byId.set(k.id, k)
    for (const k of stored) if (!byId.has(k.id)) byId.set(k.id, k)
    this.#byId = byId
    this.#stamp = stamp
  }

  #refuse(stamp: string, message: string): void {
    this.#refused = stamp
    const signals = this.signals
    if (signals === undefined) return
    signals.log.error({ file: this.path, keys: this.#byId.size }, `key store change refused, the last good store stays in force: ${message}`)
    try {
      signals.audit.record({ event: 'keys.rejected', decision: 'error', reason: 'KEYS_INVALID', source: this.path, keys: this.#byId.size, detail: message.slice(0, 2000) })
    } catch {
      // The operator log has it; the audit sink's failure shows on the next request.
    }
  }

  #mutate(change: (keys: StoredKey[]) => StoredKey[]): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 })
    const lock = `${this.path}.lock`
    let fd: number
    try {
      fd = openSync(lock, 'wx', 0o600)
    } catch {
      throw new Error(`key store is locked by another process (${lock}); retry, or remove the lock if no bastion command is running`)
    }
    try {
      const next = change(this.#readFile()).map(({ source: _source, ...rest }) => rest)
      const tmp = `${this.path}.${process.pid}.tmp`
      writeFileSync(tmp, `${JSON.stringify({ version: 1, keys: next }, null, 2)}\n`, { mode: 0o600 })
      renameSync(tmp, this.path)
    } finally {
      closeSync(fd)
      unlinkSync(lock)
    }
    this.#load(true)
  }
}
