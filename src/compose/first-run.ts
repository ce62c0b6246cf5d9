import type { AuditLog } from '../audit/audit-log.js'
import type { KeyStore } from '../auth/key-store.js'
import { ConfigError, type LoadedConfig, statePath } from '../config/load.js'

/** Where people-facing start-up lines go: a stream, or `false` for none. */
export type Announce = { write(text: string): unknown } | false

/** A port from `$BASTION_PORT`, or undefined when unset. @throws ConfigError when malformed */
export function envPort(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new ConfigError(`BASTION_PORT: ${JSON.stringify(text)} is not a port number (0-65535)`)
  return Number(text)
}

/**
 * The first start of a key store that holds no key: an admin key is created (for the first role
 * holding `*`) and shown once on `say`, never logged; with no such role, how to make one is said.
 * Nothing happens when nothing can be shown. Returns whether a key was created.
 */
export function firstRunKey(deps: { readonly loaded: LoadedConfig; readonly keys: KeyStore; readonly audit: AuditLog; readonly say: Announce }): boolean {
  const { loaded, keys, audit, say } = deps
  if (say === false || keys.list().length > 0) return false
  const adminRole = Object.entries(loaded.config.roles).find(([, r]) => r.permissions.includes('*'))?.[0]
  if (adminRole === undefined) {
    say.write('No API keys exist and no role holds "*": create one with `mcp-bastion keys create --role ROLE` (or bastion.keys.create()).\n')
    return false
  }
  const { key, stored } = keys.create({ name: 'admin (first run)', roles: [adminRole], expiresAt: null })
  audit.record({ event: 'key.created', principal: `key:${stored.id}`, roles: stored.roles, decision: 'allow', reason: 'OK', cause: 'first run' })
  say.write(
    `\nFirst run: created an admin API key. It is shown only now and stored only as a hash:\n\n  ${key}\n\nUse it as "Authorization: Bearer <key>" or "X-API-Key: <key>". More keys: mcp-bastion keys create --role ROLE\n\n`,
  )
  return true
}

/** The line that says where a bastion serves, its config and its audit trail. */
export function listeningLine(loaded: LoadedConfig, url: string, console: boolean): string {
  const { audit } = loaded.config
  const where = audit.sink === 'file' ? statePath(loaded, audit.file) : audit.sink === 'stdout' ? 'stdout' : `postgres table ${audit.postgres?.table ?? ''}`
  const consoleUrl = console ? `; console: ${new URL(loaded.config.console.path, url).href}` : ''
  return `mcp-bastion listening on ${url} (config: ${loaded.source}; audit: ${where}${consoleUrl})\n`
}
