import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { ConfigError, type LoadedConfig, readSecret, statePath } from '../config/load.js'

/** The key `audit.key` configures (env or file), checked for length. @throws ConfigError */
function configuredKey(loaded: LoadedConfig, env: NodeJS.ProcessEnv): Buffer | undefined {
  const ref = loaded.config.audit.key
  if (ref === undefined) return undefined
  const key = Buffer.from(readSecret(loaded, ref, 'audit.key', env), 'utf8')
  if (key.length < 32) throw new ConfigError(`config ${loaded.source}: audit.key: the audit key must be at least 32 bytes (got ${key.length})`)
  return key
}

/**
 * An audit key file as `<stateDir>/audit.key` holds it (hex text; the text is the key), or
 * undefined when there is no such file. Reads only.
 * @throws ConfigError when the file exists but cannot be read or is empty
 */
export function readAuditKeyFile(file: string): Buffer | undefined {
  let text: string
  try {
    text = readFileSync(file, 'utf8').trim()
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new ConfigError(`audit key ${file}: cannot read (${code ?? 'error'})`)
  }
  if (text === '') throw new ConfigError(`audit key ${file}: the file is empty`)
  return Buffer.from(text, 'utf8')
}

/**
 * The audit MAC key, kept apart from every other key: `audit.key` from the environment or a file,
 * else `<stateDir>/audit.key`, created once (32 random bytes, hex, mode 0600).
 * @throws ConfigError when the configured key is shorter than 32 bytes or cannot be read
 */
export function auditKey(loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): Buffer {
  const configured = configuredKey(loaded, env)
  if (configured !== undefined) return configured
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

/**
 * The audit MAC key as {@link auditKey} finds it, for readers (`audit verify`): never creates a
 * key or a folder. Undefined when `audit.key` is not configured and `<stateDir>/audit.key` does
 * not exist.
 * @throws ConfigError when the configured key is short or unreadable
 */
export function readAuditKey(loaded: LoadedConfig, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  return configuredKey(loaded, env) ?? readAuditKeyFile(statePath(loaded, 'audit.key'))
}
