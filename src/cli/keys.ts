import { z } from 'zod'
import { fileTrailTail, writerAuditKey } from '../audit/audit-key.js'
import { AuditLog, FileAuditSink } from '../audit/audit-log.js'
import { KeyStore } from '../auth/key-store.js'
import { SigningKeys } from '../auth/signing-keys.js'
import { type LoadedConfig, statePath } from '../config/load.js'
import { parseDuration } from '../config/state.js'
import { keyringFor } from '../protect/setup.js'
import { KEYS_CREATE, KEYS_REVOKE } from './commands.js'
import { loadConfig } from './config-path.js'
import { EXIT, type Parsed, UsageError } from './usage.js'

/** The key store, read only: `keys list` opens nothing else. */
function keyStore(loaded: LoadedConfig): KeyStore {
  return new KeyStore(statePath(loaded, loaded.config.auth.keysFile), [], 0)
}

/**
 * The audit trail a command that changes state records to (creating the state folder and audit
 * key). @throws ConfigError when the trail is sealed under another key than the current one
 */
export function auditTrail(loaded: LoadedConfig): AuditLog {
  const file = statePath(loaded, loaded.config.audit.file)
  const key = writerAuditKey(loaded, process.env, fileTrailTail(file))
  return new AuditLog(
    new FileAuditSink(file, { maxBytes: loaded.config.audit.maxBytes, fsync: loaded.config.audit.fsync, fsyncIntervalMs: loaded.config.audit.fsyncIntervalMs }),
    undefined,
    key,
  )
}

const DATE = z.iso.datetime({ offset: true }).or(z.iso.date())

/**
 * `--expires`: a duration from now (`30d`) or a date as the config's `auth.keys[].expires` takes
 * it (`2027-06-30`, which is 00:00 UTC that day, or an ISO time with an offset).
 * @throws Error saying why, when malformed or not in the future
 */
export function parseExpires(text: string, now: number): Date {
  if (/^\d+[a-z]$/.test(text)) return new Date(now + parseDuration(text))
  if (!DATE.safeParse(text).success) throw new Error(`${JSON.stringify(text.slice(0, 64))} is neither a duration (30d, 12h, 2w) nor a date (2027-06-30 or 2027-06-30T12:00:00Z)`)
  const at = new Date(text)
  if (at.getTime() <= now) throw new Error(`${text} is not in the future`)
  return at
}

export function keysCreate(p: Parsed): number {
  const roles = p.strings('role')
  if (roles.length === 0) throw new UsageError(KEYS_CREATE, 'missing --role ROLE')
  let expiresAt: Date | null = null
  const expires = p.string('expires')
  if (expires !== undefined) {
    try {
      expiresAt = parseExpires(expires, Date.now())
    } catch (error) {
      throw new UsageError(KEYS_CREATE, `--expires: ${(error as Error).message}`)
    }
  }
  const loaded = loadConfig(p.string('config'))
  for (const role of roles) {
    if (!Object.hasOwn(loaded.config.roles, role))
      throw new UsageError(KEYS_CREATE, `role ${JSON.stringify(role)} is not defined (defined: ${Object.keys(loaded.config.roles).join(', ')})`)
  }
  const store = keyStore(loaded)
  const audit = auditTrail(loaded)
  const { key, stored } = store.create({ name: p.string('name') ?? roles.join('+'), roles, expiresAt })
  audit.record({ event: 'key.created', principal: `key:${stored.id}`, roles: stored.roles, decision: 'allow', reason: 'OK', expiresAt: stored.expiresAt, transport: 'cli' })
  audit.close()
  process.stderr.write(
    `Created key ${stored.id} (${stored.name}; roles ${stored.roles.join(', ')}${stored.expiresAt === null ? '' : `; expires ${stored.expiresAt}`}). It is shown only now:\n`,
  )
  process.stdout.write(`${key}\n`)
  return EXIT.ok
}

export function keysList(p: Parsed): number {
  const store = keyStore(loadConfig(p.string('config')))
  const now = Date.now()
  const rows = store.list().map(({ hash: _hash, source: _source, ...k }) => ({
    ...k,
    status: k.revokedAt !== null ? 'revoked' : k.expiresAt !== null && Date.parse(k.expiresAt) <= now ? 'expired' : 'active',
  }))
  if (p.flag('json')) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    return EXIT.ok
  }
  if (rows.length === 0) process.stdout.write('no keys\n')
  for (const r of rows)
    process.stdout.write(
      `${r.id}  ${r.status.padEnd(7)}  ${r.roles.join(',').padEnd(16)}  ${r.name}  created ${r.createdAt}${r.expiresAt === null ? '' : `  expires ${r.expiresAt}`}\n`,
    )
  return EXIT.ok
}

export function keysRevoke(p: Parsed): number {
  const id = p.positionals[0] ?? ''
  if (!/^[0-9a-f]{16}$/.test(id)) throw new UsageError(KEYS_REVOKE, `${JSON.stringify(id.slice(0, 40))} is not a key id (16 hex characters, see keys list)`)
  const loaded = loadConfig(p.string('config'))
  const store = keyStore(loaded)
  if (!store.list().some((k) => k.id === id)) throw new UsageError(KEYS_REVOKE, `no stored key with id ${id}`)
  const audit = auditTrail(loaded)
  store.revoke(id)
  audit.record({ event: 'key.revoked', principal: `key:${id}`, decision: 'allow', reason: 'OK', transport: 'cli' })
  audit.close()
  process.stdout.write(`revoked ${id}\n`)
  return EXIT.ok
}

export async function keysRotateSigning(p: Parsed): Promise<number> {
  const loaded = loadConfig(p.string('config'))
  const { tokenService } = loaded.config.auth
  const keys = new SigningKeys(statePath(loaded, tokenService.signingKeysFile), tokenService.accessTokenSeconds, () => keyringFor(loaded))
  // Opened first: a trail sealed under another key refuses before anything changes.
  const audit = auditTrail(loaded)
  await keys.init()
  const kid = await keys.rotate()
  audit.record({ event: 'signing-key.rotated', kid, decision: 'allow', reason: 'OK', transport: 'cli' })
  audit.close()
  process.stdout.write(`signing key ${kid} now signs; older keys verify for ${tokenService.accessTokenSeconds} s more\n`)
  return EXIT.ok
}
