import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import type { Logger } from 'pino'
import type { AuditFields } from '../audit/audit-log.js'
import { fileStamp, readJsonFile, SettledFile, updateJsonFile } from '../config/json-file.js'

/**
 * Envelope encryption at rest (AES-256-GCM): each value gets its own random data key, which is
 * wrapped (AES-256-GCM) by the keyring's active key; the value's purpose is bound in as additional
 * authenticated data, so a ciphertext moved to another slot does not decrypt. Format:
 *   `bse1.<key id>.<wrapped data key>.<ciphertext>` (base64url parts, each iv|bytes|tag).
 * Older keys stay in the keyring to decrypt; `mcp-bastion secrets rotate` re-encrypts under the new one.
 * Does not check: who can read the keyring (the state directory is 0700, the file 0600); keys in memory.
 */
export const ENVELOPE_PREFIX = 'bse1.'

export class DecryptError extends Error {
  override readonly name = 'DecryptError'
}

function seal(key: Buffer, plaintext: Buffer, aad: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(aad, 'utf8'))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')
}

function open(key: Buffer, sealed: string, aad: string): Buffer {
  const raw = Buffer.from(sealed, 'base64url')
  if (raw.length < 12 + 16) throw new DecryptError('ciphertext too short')
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12))
  decipher.setAAD(Buffer.from(aad, 'utf8'))
  decipher.setAuthTag(raw.subarray(raw.length - 16))
  try {
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()])
  } catch {
    throw new DecryptError('authentication tag mismatch: tampered, or not encrypted for this purpose')
  }
}

export class Keyring {
  readonly #keys: ReadonlyMap<string, Buffer>
  readonly activeId: string

  constructor(keys: ReadonlyMap<string, Buffer>, activeId: string) {
    for (const [id, k] of keys) {
      if (!/^[A-Za-z0-9_-]{1,32}$/.test(id)) throw new Error(`key id ${JSON.stringify(id)}: letters, digits, _ and - only`)
      if (k.length !== 32) throw new Error(`key ${id}: must be 32 bytes (64 hex characters or 43 base64url)`)
    }
    if (!keys.has(activeId)) throw new Error(`active key ${activeId} is not in the keyring`)
    this.#keys = keys
    this.activeId = activeId
  }

  /** Encrypt under the active key, bound to `purpose` (e.g. `vault:db-password`). */
  encrypt(plaintext: string, purpose: string): string {
    const active = this.#keys.get(this.activeId)
    if (active === undefined) throw new Error('no active key')
    const dataKey = randomBytes(32)
    return `${ENVELOPE_PREFIX}${this.activeId}.${seal(active, dataKey, `dek:${purpose}`)}.${seal(dataKey, Buffer.from(plaintext, 'utf8'), purpose)}`
  }

  /** @throws DecryptError when the key is unknown, or the envelope was altered or moved */
  decrypt(envelope: string, purpose: string): string {
    const parts = envelope.split('.')
    if (parts.length !== 4 || `${parts[0]}.` !== ENVELOPE_PREFIX) throw new DecryptError('not an envelope')
    const [, id = '', wrapped = '', body = ''] = parts
    const kek = this.#keys.get(id)
    if (kek === undefined) throw new DecryptError(`key ${id} is not in the keyring`)
    return open(open(kek, wrapped, `dek:${purpose}`), body, purpose).toString('utf8')
  }

  /** Key id of an envelope (to find what still needs re-encryption). */
  static keyIdOf(envelope: string): string | undefined {
    return envelope.startsWith(ENVELOPE_PREFIX) ? envelope.split('.')[1] : undefined
  }
}

function parseKey(text: string): Buffer {
  const t = text.trim()
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex')
  return Buffer.from(t, 'base64url')
}

interface KeyringFile {
  version: 1
  active: string
  keys: Record<string, string>
}

function parseFile(value: unknown): KeyringFile {
  if (value === undefined) return { version: 1, active: '', keys: {} }
  const v = value as KeyringFile
  if (v === null || typeof v !== 'object' || typeof v.active !== 'string' || typeof v.keys !== 'object') throw new Error('keyring file is corrupt')
  return { version: 1, active: v.active, keys: Object.assign(Object.create(null), v.keys) }
}

/** The keyring of the state directory: created with one key on first use. */
export function fileKeyring(path: string): Keyring {
  if (!existsSync(path)) {
    updateJsonFile(path, parseFile, (current) => {
      if (current.active !== '') return current
      const id = `k${Date.now().toString(36)}`
      return { version: 1 as const, active: id, keys: { [id]: randomBytes(32).toString('hex') } }
    })
  }
  const file = parseFile(readJsonFile(path))
  return new Keyring(new Map(Object.entries(file.keys).map(([id, k]) => [id, parseKey(k)])), file.active)
}

/** Add a new active key to the state directory's keyring; older keys stay to decrypt. */
export function rotateFileKeyring(path: string): Keyring {
  updateJsonFile(path, parseFile, (current) => {
    const id = `k${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
    return { version: 1 as const, active: id, keys: { ...current.keys, [id]: randomBytes(32).toString('hex') } }
  })
  return fileKeyring(path)
}

/** A keyring from configured keys (env or file), `active` naming the one that encrypts. */
export function configuredKeyring(keys: readonly { id: string; value: string }[], active: string): Keyring {
  return new Keyring(new Map(keys.map((k) => [k.id, parseKey(k.value)])), active)
}

/** Where a running server says that it refused a changed keyring file. */
export interface KeyringSignals {
  readonly log: Logger
  readonly audit: { record(fields: AuditFields): void }
}

/**
 * The keyring `load` builds, built again when the file at `path` changes (`secrets rotate` in
 * another process); `path` undefined: configured keys, built once. The first build's failure
 * throws (start-up fails). Later a JSON object's prefix never parses, so a file that loads is
 * whole and is taken at once; one that does not (corrupted, edited by hand, removed) is refused
 * once it stood still for `settleMs`: an operator log error and a `keyring.rejected` audit line,
 * and the last good keyring stays in force.
 * Does not check: that the new keyring still holds the keys the stored data is encrypted under.
 */
export function watchedKeyring(path: string | undefined, load: () => Keyring, signals?: KeyringSignals, settleMs = 1000): () => Keyring {
  let held: Keyring | undefined
  let stamp = ''
  let refused = ''
  const watch = path === undefined ? undefined : new SettledFile(path, settleMs)
  return function keyring() {
    const now = path === undefined ? 'configured' : fileStamp(path)
    if (held === undefined) {
      held = load()
      stamp = now
      return held
    }
    if (path === undefined || watch === undefined || now === stamp || now === refused) return held
    try {
      // A keyring is never created again in a running server: that would orphan the data.
      if (!existsSync(path)) throw new Error(`keyring file ${path} is missing`)
      held = load()
      stamp = now
    } catch (error) {
      const look = watch.look()
      if (look.settled && look.stamp === now) {
        refused = now
        const message = error instanceof Error ? error.message : String(error)
        signals?.log.error({ file: path, active: held.activeId }, `keyring change refused, the last good keyring stays in force: ${message}`)
        try {
          signals?.audit.record({ event: 'keyring.rejected', decision: 'error', reason: 'KEYRING_INVALID', source: path, active: held.activeId, detail: message.slice(0, 2000) })
        } catch {
          // The operator log has it.
        }
      }
    }
    return held
  }
}
