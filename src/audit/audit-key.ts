import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, fstatSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { ConfigError, type LoadedConfig, readSecret, statePath } from '../config/load.js'
import { auditKeyId, sealedUnder, sealsOf } from './key-id.js'

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
 * @throws ConfigError when the file exists but cannot be read, is empty or is shorter than a key
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
  // A damaged file is named, not reported as a short key somewhere later.
  if (Buffer.byteLength(text) < 32) throw new ConfigError(`audit key ${file}: ${Buffer.byteLength(text)} bytes, fewer than 32: the file is damaged; restore it from a backup`)
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
    // Another process may create it first: link() then fails and we use theirs.
    writeKeyFile(file, newAuditKey(), { replace: false })
  }
  const key = readAuditKeyFile(file)
  if (key === undefined) throw new ConfigError(`audit key ${file}: removed while starting`)
  return key
}

/** A new audit key: 32 random bytes as hex (the hex text is the key, as the file holds it). */
export function newAuditKey(): Buffer {
  return Buffer.from(randomBytes(32).toString('hex'), 'utf8')
}

/**
 * Write a key file atomically, mode 0600: a temporary file, fsynced, then renamed over `file`
 * (`replace`) or linked to it only if it does not exist yet (no reader ever sees half a key).
 */
export function writeKeyFile(file: string, key: Buffer, options: { replace: boolean }): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  const fd = openSync(tmp, 'wx', 0o600)
  try {
    writeSync(fd, `${key.toString('utf8')}\n`)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  try {
    if (options.replace) renameSync(tmp, file)
    else linkSync(tmp, file)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  } finally {
    if (!options.replace) unlinkSync(tmp)
  }
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

const KEPT = /^audit\.key\.(ak_[0-9a-f]{16})\.old$/

/** The old keys `audit rotate-key` kept in this folder (`audit.key.<kid>.old`). Reads only. */
export function keptAuditKeys(dir: string): Buffer[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  return names
    .filter((n) => KEPT.test(n))
    .sort()
    .flatMap((n) => readAuditKeyFile(join(dir, n)) ?? [])
}

/** The end of an existing audit trail: its last sealed line, where it is, and the key id it declares. */
export interface TrailTail {
  readonly where: string
  readonly line: string
  /** The key id of the last line in the trail that declares one (read on refusal only). */
  readonly kid: () => string | undefined
}

/** Lines of a file from the last one backwards (byte-wise: a newline never occurs inside UTF-8). */
function* linesBackwards(file: string): Generator<string> {
  let fd: number
  try {
    fd = openSync(file, 'r')
  } catch {
    return
  }
  try {
    let end = fstatSync(fd).size
    let buf = Buffer.alloc(0)
    let atLineEnd = false
    while (end > 0) {
      const start = Math.max(0, end - 65_536)
      const chunk = Buffer.alloc(end - start)
      readSync(fd, chunk, 0, chunk.length, start)
      buf = Buffer.concat([chunk, buf])
      end = start
      if (!atLineEnd) {
        // What follows the last newline is a torn fragment (or nothing): never a line.
        const nl = buf.lastIndexOf(0x0a)
        if (nl < 0) continue
        buf = buf.subarray(0, nl)
        atLineEnd = true
      }
      for (let nl = buf.lastIndexOf(0x0a); nl >= 0; nl = buf.lastIndexOf(0x0a)) {
        yield buf.subarray(nl + 1).toString('utf8')
        buf = buf.subarray(0, nl)
      }
      if (end === 0 && atLineEnd) yield buf.toString('utf8')
    }
  } finally {
    closeSync(fd)
  }
}

/** The key a sealed line declares: an `audit.opened` line's `kid`, a hand-over's `newKid`. */
function declaredKid(line: string): string | undefined {
  if (!line.includes('"event":"audit.opened"') && !line.includes('"event":"audit.key-rotated"')) return undefined
  try {
    const record = JSON.parse(line) as { event?: unknown; kid?: unknown; newKid?: unknown }
    const kid = record.event === 'audit.key-rotated' && line.includes(',"macNext":"') ? record.newKid : record.kid
    return typeof kid === 'string' ? kid : undefined
  } catch {
    return undefined
  }
}

/**
 * The audit file and its rotated siblings (`<file>.<time>.<n>`), newest first, that exist.
 */
export function trailFiles(file: string): string[] {
  const base = basename(file)
  let names: string[]
  try {
    names = readdirSync(dirname(file))
  } catch {
    return []
  }
  const rotated = names.filter((n) => n.startsWith(`${base}.`) && /^\d{4}-\d\d-\d\dT[\d-]+Z\.\d+$/.test(n.slice(base.length + 1)))
  return [...(names.includes(base) ? [base] : []), ...rotated.sort().reverse()].map((n) => join(dirname(file), n))
}

/** The last sealed line of a file trail (the file, else its newest rotated sibling), if any. Reads only. */
export function fileTrailTail(file: string): TrailTail | undefined {
  const files = trailFiles(file)
  for (const [i, name] of files.entries()) {
    for (const line of linesBackwards(name)) {
      if (sealsOf(line) === undefined) continue
      const kid = (): string | undefined => {
        for (const older of files.slice(i)) for (const l of linesBackwards(older)) if (declaredKid(l) !== undefined) return declaredKid(l)
        return undefined
      }
      return { where: name, line, kid }
    }
  }
  return undefined
}

/** The tail of a sink's trail (a PostgreSQL table) from its last stored line, when that is sealed. */
export function sinkTrailTail(where: string, last: string | undefined): TrailTail | undefined {
  if (last === undefined || sealsOf(last) === undefined) return undefined
  return { where, line: last, kid: () => declaredKid(last) }
}

/**
 * The audit key a new writer seals under, refused when an existing trail is sealed under another
 * key: a key made or swapped now would leave every earlier line failing `audit verify`, silently.
 * No trail (or no sealed line in it): {@link auditKey}, created if needed. The test is the MAC of
 * the trail's last sealed line under the current key.
 * Does not check: the lines before the last (that is `audit verify`'s job).
 * @throws ConfigError saying what happened and how to fix it (restore the key, or rotate deliberately)
 */
export function writerAuditKey(loaded: LoadedConfig, env: NodeJS.ProcessEnv, tail: TrailTail | undefined): Buffer {
  if (tail === undefined) return auditKey(loaded, env)
  const configured = configuredKey(loaded, env)
  const file = statePath(loaded, 'audit.key')
  const key = configured ?? readAuditKeyFile(file)
  if (key !== undefined && sealedUnder(tail.line, key)) return key
  const kid = tail.kid()
  const under = kid === undefined ? 'another key' : `audit key ${kid}`
  const config = loaded.source === 'embedded default' || loaded.source === 'object' ? '' : ` --config ${loaded.source}`
  if (configured !== undefined)
    throw new ConfigError(
      `config ${loaded.source}: audit.key (${auditKeyId(configured)}) is not the key the audit trail ${tail.where} is sealed under (${under}, or its last line was edited: run mcp-bastion audit verify): restore the earlier value of audit.key; mcp-bastion audit rotate-key manages only <stateDir>/audit.key`,
    )
  const what =
    key === undefined
      ? `audit key ${file} is missing, but the audit trail ${tail.where} holds lines sealed under ${under}`
      : `audit key ${file} (${auditKeyId(key)}) is not the key the audit trail ${tail.where} is sealed under (${under}, or its last line was edited: run mcp-bastion audit verify)`
  throw new ConfigError(
    `${what}; a new key would make every earlier line fail audit verify. Restore ${file} from a backup, or start a new key deliberately with mcp-bastion audit rotate-key${config} (lines before it then verify only with the old key)`,
  )
}
