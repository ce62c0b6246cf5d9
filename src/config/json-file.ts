import { closeSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/** Read a JSON state file; undefined when it does not exist. @throws on unreadable or corrupt files (never silently reset). */
export function readJsonFile(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  return JSON.parse(text) as unknown
}

/**
 * Change a JSON state file under an exclusive lock file, writing a temp file (0600) and renaming
 * it over the old one, so readers see the old or the new content, never a torn one.
 * @throws when another process holds the lock, or the change throws (nothing is written then)
 */
export function updateJsonFile<T>(path: string, parse: (value: unknown) => T, change: (current: T) => T): T {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  const lock = `${path}.lock`
  let fd: number | undefined
  for (let attempt = 0; fd === undefined; attempt++) {
    try {
      fd = openSync(lock, 'wx', 0o600)
    } catch {
      // Another writer in this machine: they hold it for a few ms. Spin briefly, then give up.
      if (attempt > 200) throw new Error(`${path} is locked by another process (${lock}); retry, or remove the lock if no bastion process is running`)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
    }
  }
  try {
    const next = change(parse(readJsonFile(path)))
    const tmp = `${path}.${process.pid}.tmp`
    writeFileSync(tmp, `${JSON.stringify(next)}\n`, { mode: 0o600 })
    renameSync(tmp, path)
    return next
  } finally {
    closeSync(fd)
    unlinkSync(lock)
  }
}
