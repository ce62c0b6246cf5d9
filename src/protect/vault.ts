import { readJsonFile, updateJsonFile } from '../config/json-file.js'
import { type Keyring, Keyring as KeyringClass } from './keyring.js'

interface VaultFile {
  version: 1
  entries: Record<string, { envelope: string; updatedAt: string }>
}

function parse(value: unknown): VaultFile {
  if (value === undefined) return { version: 1, entries: {} }
  const v = value as VaultFile
  if (v === null || typeof v !== 'object' || typeof v.entries !== 'object') throw new Error('vault file is corrupt')
  return { version: 1, entries: Object.assign(Object.create(null), v.entries) }
}

/**
 * Named secrets, each encrypted under the keyring (bound to its name), in a 0600 file written
 * atomically. Does not check: who may read or write them (the vault tools are under RBAC).
 */
export class Vault {
  constructor(
    readonly path: string,
    private readonly keyring: () => Keyring,
  ) {}

  put(name: string, value: string): void {
    const envelope = this.keyring().encrypt(value, `vault:${name}`)
    updateJsonFile(this.path, parse, (file) => {
      file.entries[name] = { envelope, updatedAt: new Date().toISOString() }
      return file
    })
  }

  /** @throws DecryptError when the entry was tampered with or its key is gone */
  get(name: string): string | undefined {
    const file = parse(readJsonFile(this.path))
    const entry = Object.hasOwn(file.entries, name) ? file.entries[name] : undefined
    return entry === undefined ? undefined : this.keyring().decrypt(entry.envelope, `vault:${name}`)
  }

  /** Re-encrypt every entry not under the active key. Returns how many changed. */
  reencrypt(keyring: Keyring): number {
    let changed = 0
    updateJsonFile(this.path, parse, (file) => {
      for (const [name, entry] of Object.entries(file.entries)) {
        if (KeyringClass.keyIdOf(entry.envelope) === keyring.activeId) continue
        file.entries[name] = { envelope: keyring.encrypt(keyring.decrypt(entry.envelope, `vault:${name}`), `vault:${name}`), updatedAt: entry.updatedAt }
        changed += 1
      }
      return file
    })
    return changed
  }
}
