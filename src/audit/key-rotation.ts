import { existsSync, mkdirSync, renameSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { ConfigError, type LoadedConfig, statePath } from '../config/load.js'
import { fileTrailTail, newAuditKey, readAuditKeyFile, writeKeyFile } from './audit-key.js'
import { FileAuditSink, toJsonLine } from './audit-log.js'
import { AuditChain } from './chain.js'
import { auditKeyId, sealedUnder } from './key-id.js'

/** What `audit rotate-key` did. */
export interface KeyRotation {
  /** The key the trail was sealed under, if known. */
  readonly oldKid: string | null
  readonly newKid: string
  /** `held`: the hand-over is MACed by both keys; `lost`: the old key was missing or replaced; `none`: no trail yet. */
  readonly oldKey: 'held' | 'lost' | 'none'
  /** Where the key that was in `audit.key` is kept, if there was one. */
  readonly kept: string | undefined
}

/**
 * A new audit key in `<stateDir>/audit.key`, and a sealed hand-over line in the trail. Steps, so a
 * crash leaves nothing that silently verifies wrong: the new key is written beside
 * (`audit.key.new`), the current key is kept as `audit.key.<kid>.old` (0600, never deleted), the
 * writer appends `audit.opened` (under the old key), `audit.key-rotated` (naming `oldKid` and
 * `newKid`: `mac` under the old key, `macNext` under the new one) and `audit.closed` (under the
 * new key), and only then the new key is renamed into place. When the trail is not sealed under
 * the current key (missing or replaced: the old key is lost), the hand-over is sealed under the
 * new key only and says `oldKey: "lost"`; lines before it then verify only with the old key.
 * Does not check: that no server is writing the trail meanwhile (stop it first: a running writer
 * keeps the old key, and the next start refuses).
 * @throws ConfigError when `audit.key` is configured (rotate-key manages only the state folder's key),
 * or the sink is postgres (the hand-over would not reach the table)
 */
export function rotateAuditKey(loaded: LoadedConfig): KeyRotation {
  if (loaded.config.audit.key !== undefined)
    throw new ConfigError(
      `config ${loaded.source}: audit.key is set in the config: audit rotate-key makes and keeps only <stateDir>/audit.key; remove audit.key from the config to use it`,
    )
  // The hand-over goes where CLI commands write: the file. A table's last line would stay under the old key.
  if (loaded.config.audit.sink === 'postgres')
    throw new ConfigError(
      `config ${loaded.source}: audit.sink is postgres: audit rotate-key writes its hand-over to the audit file only, so the table would stay sealed under the old key`,
    )
  const file = statePath(loaded, 'audit.key')
  const trailFile = statePath(loaded, loaded.config.audit.file)
  const tail = fileTrailTail(trailFile)
  const current = readAuditKeyFile(file)
  const held = current !== undefined && (tail === undefined || sealedUnder(tail.line, current)) ? current : undefined
  const next = newAuditKey()
  const newKid = auditKeyId(next)
  const oldKid = held !== undefined ? auditKeyId(held) : (tail?.kid() ?? null)
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const pending = `${file}.new`
  writeKeyFile(pending, next, { replace: true })
  let kept: string | undefined
  if (current !== undefined) {
    kept = join(dirname(file), `audit.key.${auditKeyId(current)}.old`)
    if (!existsSync(kept)) writeKeyFile(kept, current, { replace: false })
  }
  const sink = new FileAuditSink(trailFile, { maxBytes: loaded.config.audit.maxBytes })
  try {
    const chain = new AuditChain(held ?? next, sink.lastLine())
    const write = (fields: Record<string, unknown>, nextKey?: Buffer): void => {
      const sealed = chain.seal(toJsonLine({ ts: new Date().toISOString(), ...fields } as Parameters<typeof toJsonLine>[0]), nextKey)
      sink.write(sealed.line)
      sealed.commit()
    }
    write({ event: 'audit.opened', decision: 'allow', reason: 'OK', pid: process.pid, kid: chain.kid })
    const oldKey = held !== undefined ? 'held' : tail === undefined ? 'none' : 'lost'
    write({ event: 'audit.key-rotated', decision: 'allow', reason: 'OK', transport: 'cli', oldKid, newKid, oldKey }, held === undefined ? undefined : next)
    write({ event: 'audit.closed', decision: 'allow', reason: 'OK', lines: chain.seq + 1 })
    renameSync(pending, file)
    return { oldKid, newKid, oldKey, kept }
  } finally {
    sink.close()
  }
}
