import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { ConfigError, type LoadedConfig, readSecret, statePath } from '../config/load.js'

/**
 * The audit MAC key, kept apart from every other key: `audit.key` from the environment or a file,
 * else `<stateDir>/audit.key`, created once (32 random bytes, hex, mode 0600).
 * @throws ConfigError when the configured key is shorter than 32 bytes or cannot be read
 */
export function auditKey(loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): Buffer {
  const ref = loaded.config.audit.key
  if (ref !== undefined) {
    const key = Buffer.from(readSecret(loaded, ref, 'audit.key', env), 'utf8')
    if (key.length < 32) throw new ConfigError(`config ${loaded.source}: audit.key: the audit key must be at least 32 bytes (got ${key.length})`)
    return key
  }
  const file = statePath(loaded, 'audit.key')
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
    try {
      writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' })
    } catch (error) {
      // Another process created it first: use theirs.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
  return Buffer.from(readFileSync(file, 'utf8').trim(), 'utf8')
}
