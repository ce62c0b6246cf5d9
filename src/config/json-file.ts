import { closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/** A state file (key store, keyring, vault, …) that is unreadable or corrupt: nothing was done; the CLI exits 2 naming it. */
export class StateFileError extends Error {
  override readonly name = 'StateFileError'
}

/** Read a JSON state file; undefined when it does not exist. @throws StateFileError on unreadable or corrupt files (never silently reset). */
export function readJsonFile(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new StateFileError(`state file ${path}: cannot read (${code ?? 'error'})`, { cause: error })
  }
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw new StateFileError(`state file ${path}: not valid JSON`, { cause: error })
  }
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

/** What identifies a file's current content cheaply: modification time, size and inode. */
export function fileStamp(path: string): string {
  try {
    const st = statSync(path)
    return `${st.mtimeMs}:${st.size}:${st.ino}`
  } catch {
    return 'missing'
  }
}

/**
 * A parsed JSON state file kept in memory: read again only when its stamp changed, and the stamp
 * checked at most every `maxAgeMs` (0: on every read), so a per-request read costs no I/O.
 * Changes made through `update` are seen at once; another process's within `maxAgeMs`.
 */
export class JsonFileView<T> {
  #value: T | undefined
  #stamp = ''
  #checkedAt = Number.NEGATIVE_INFINITY

  constructor(
    readonly path: string,
    private readonly parse: (value: unknown) => T,
    private readonly maxAgeMs = 0,
  ) {}

  read(): T {
    const now = performance.now()
    if (this.#value !== undefined && now - this.#checkedAt < this.maxAgeMs) return this.#value
    this.#checkedAt = now
    const stamp = fileStamp(this.path)
    if (this.#value === undefined || stamp !== this.#stamp) {
      this.#value = this.parse(readJsonFile(this.path))
      this.#stamp = stamp
    }
    return this.#value
  }

  /** `updateJsonFile`, and the view holds the result. */
  update(change: (current: T) => T): T {
    const next = updateJsonFile(this.path, this.parse, change)
    this.#value = next
    this.#stamp = fileStamp(this.path)
    this.#checkedAt = performance.now()
    return next
  }
}

/** One look at a watched file: its stamp, and its text (undefined when missing or unreadable). */
export interface FileLook {
  readonly stamp: string
  readonly text: string | undefined
  /** The file has not changed for the settle time: its modification time is that old, or the same stamp and text were seen a check that long ago. */
  readonly settled: boolean
}

/**
 * Watches one file that another process rewrites, deciding when a change stands still. A look
 * reads the text between two stats (a write in between makes the look unsettled); it is settled
 * when the modification time is at least `settleMs` old, or when the same stamp and text were seen
 * by a look at least `settleMs` earlier (a clock that disagrees with the file system's).
 * Does not check: that the content is whole. A writer that stops mid-file for longer than
 * `settleMs` shows a settled prefix; only writing a temp file and renaming it over the path rules
 * that out. A JSON object's prefix never parses, a YAML document's may.
 */
export class SettledFile {
  #seen: { stamp: string; text: string | undefined; at: number } | undefined

  constructor(
    readonly path: string,
    private readonly settleMs: number,
  ) {}

  look(now = performance.now()): FileLook {
    const before = fileStamp(this.path)
    let text: string | undefined
    try {
      text = readFileSync(this.path, 'utf8')
    } catch {
      text = undefined
    }
    const stamp = fileStamp(this.path)
    if (stamp !== before) {
      this.#seen = undefined
      return { stamp, text, settled: false }
    }
    const seen = this.#seen
    const same = seen !== undefined && seen.stamp === stamp && seen.text === text
    if (!same) this.#seen = { stamp, text, at: now }
    const held = same && now - seen.at >= this.settleMs
    return { stamp, text, settled: held || mtimeAge(this.path) >= this.settleMs }
  }
}

/** Milliseconds since the file was modified; -1 when missing (a missing file settles by being seen missing twice). */
function mtimeAge(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs
  } catch {
    return -1
  }
}
