import { constants, type Stats } from 'node:fs'
import { type FileHandle, open, readlink, realpath } from 'node:fs/promises'
import { isAbsolute, relative, resolve, sep } from 'node:path'
import { SecurityError } from '../errors.js'

const MAX_PATH_LENGTH = 1024
// Percent-encoding (`%2e%2e%2f`), backslashes (Windows separators), NUL and other control chars.
const ENCODED = /%[0-9A-Fa-f]{2}/
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
const FORBIDDEN_CHARS = /[\\\u0000-\u001f\u007f]/

function refuse(message: string, expose: string): never {
  throw new SecurityError('ERR_PATH_FORBIDDEN', message, { expose })
}

/**
 * Is `candidate` the root itself or inside it? Separator-aware, so `/w/workspace-evil` is not
 * inside `/w/workspace`.
 */
export function isInside(root: string, candidate: string): boolean {
  if (candidate === root) return true
  const prefix = root.endsWith(sep) ? root : `${root}${sep}`
  return candidate.startsWith(prefix)
}

/**
 * A workspace root, resolved once to its real path. Every user-supplied path is checked
 * lexically, then after symlink resolution (realpath), then again on the opened descriptor.
 *
 * Does not check: file contents, or what another process does to files after they were read.
 */
export class Workspace {
  private constructor(readonly root: string) {}

  static async open(root: string): Promise<Workspace> {
    return new Workspace(await realpath(resolve(root)))
  }

  /**
   * Resolve a user path to a real path inside the workspace.
   * @throws SecurityError ERR_PATH_FORBIDDEN for absolute, encoded, malformed or escaping paths;
   *   ERR_FILE_NOT_FOUND when nothing is there.
   */
  async resolve(userPath: string): Promise<string> {
    if (userPath.length > MAX_PATH_LENGTH) refuse('path longer than the limit', `longer than ${MAX_PATH_LENGTH} characters`)
    if (FORBIDDEN_CHARS.test(userPath)) refuse('path contains a backslash or control character', 'contains a backslash or control character')
    if (ENCODED.test(userPath)) refuse('path contains percent-encoding', 'percent-encoded paths are not accepted')
    if (isAbsolute(userPath) || /^[A-Za-z]:/.test(userPath) || userPath.startsWith('~'))
      refuse('absolute path', 'absolute paths are not accepted; use a path relative to the workspace')
    const lexical = resolve(this.root, userPath)
    if (!isInside(this.root, lexical)) refuse('path escapes the workspace lexically', 'outside the workspace')
    let real: string
    try {
      real = await realpath(lexical)
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) {
        throw new SecurityError('ERR_FILE_NOT_FOUND', 'no such file in the workspace', { expose: 'no such file or directory in the workspace' })
      }
      if (isErrno(error, 'ELOOP')) refuse('symlink loop', 'symlink loop')
      throw error
    }
    if (!isInside(this.root, real)) refuse('path resolves outside the workspace (symlink)', 'resolves outside the workspace')
    return real
  }

  /** Display form of a real path: relative to the workspace, `/` separated. Never a host path. */
  display(real: string): string {
    const rel = relative(this.root, real)
    return rel === '' ? '.' : rel.split(sep).join('/')
  }

  /**
   * Open a resolved path without following a final symlink and without blocking on FIFOs, then
   * confirm through the descriptor that what was opened is still inside the workspace (closes
   * the race between realpath and open) and is of the expected kind.
   */
  async openChecked(real: string, kind: 'file' | 'directory'): Promise<{ handle: FileHandle; stats: Stats }> {
    const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (kind === 'directory' ? constants.O_DIRECTORY : 0)
    let handle: FileHandle
    try {
      handle = await open(real, flags)
    } catch (error) {
      if (isErrno(error, 'ELOOP')) refuse('final component became a symlink', 'symlinks are not followed')
      if (isErrno(error, 'ENOTDIR')) refuse('not a directory', 'not a directory')
      if (isErrno(error, 'ENOENT')) throw new SecurityError('ERR_FILE_NOT_FOUND', 'file vanished before open', { expose: 'no such file or directory in the workspace' })
      if (isErrno(error, 'ENXIO') || isErrno(error, 'EACCES') || isErrno(error, 'EPERM')) refuse('cannot open (socket, device or permission)', 'not a readable regular file')
      throw error
    }
    try {
      const stats = await handle.stat()
      if (kind === 'file' && !stats.isFile()) refuse('not a regular file', 'not a regular file')
      if (kind === 'directory' && !stats.isDirectory()) refuse('not a directory', 'not a directory')
      if (process.platform === 'linux') {
        const opened = await readlink(`/proc/self/fd/${handle.fd}`)
        if (!isInside(this.root, opened)) refuse('opened descriptor is outside the workspace (race)', 'resolves outside the workspace')
      }
      return { handle, stats }
    } catch (error) {
      await handle.close()
      throw error
    }
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code
}
