import { constants, realpathSync, type Stats } from 'node:fs'
import { type FileHandle, open, readlink, realpath } from 'node:fs/promises'
import { relative, resolve, sep } from 'node:path'
import { SecurityError } from '../errors.js'

/** Longest accepted workspace path, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 1024
/** Longest accepted name (one path segment), in UTF-8 bytes: Linux's NAME_MAX. */
export const MAX_NAME_BYTES = 255

// Every character of a name: letters (any script, with their combining marks), decimal digits,
// space and `. _ - + , @ ( )`. That is POSIX's portable filename set (`A-Za-z0-9._-`) widened to
// other scripts and to what ordinary names hold ("report (2).pdf", "@types", "c++", "a, b").
// Left out on purpose: separators and escapes (`\ %`), shell, glob and quoting syntax
// (`" ' $ * ? [ ] { } ~ ! # & ; < > | ^` and backtick), `:` and `=`, every C0/C1 control, DEL,
// line and paragraph separators, format characters (bidi overrides, zero-width), symbols, and
// private-use, unassigned and lone-surrogate code points.
const NAME_CHARS = /^[\p{L}\p{M}\p{Nd} ._+,@()-]+$/u
// Letters and marks that draw nothing (Hangul fillers, variation selectors, the grapheme joiner):
// two names that look identical must not be two files.
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u
// First a letter, digit, `.`, `_` or `@` (not a combining mark, a space, or an option-like `-` or
// `+`); last not a `.` or space, which Windows and SMB strip (`a.txt.` would be `a.txt` there).
const NAME_START = /^[\p{L}\p{Nd}._@]/u
const NAME_END = /[. ]$/
// C0, DEL and C1 controls (CR, LF, NUL, ESC…), and the line and paragraph separators.
const CONTROL = /[\p{Cc}\u2028\u2029]/u

/**
 * Why one name (a path segment) is refused, or `undefined` when it is acceptable: the workspace
 * name rule. Accepted: 1 to {@link MAX_NAME_BYTES} UTF-8 bytes in Unicode normalization form C,
 * only letters, combining marks, decimal digits, space and `. _ - + , @ ( )`; starting with a
 * letter, digit, `.`, `_` or `@`; not ending in `.` or a space; not `.` or `..`; nothing
 * default-ignorable (invisible). The text returned is ours (safe to show a client): it never
 * contains the name. Pure: no I/O.
 *
 * Does not check: confusable names in different scripts (Latin `a` and Cyrillic `а` are two
 * names), right-to-left letters that reorder how a listing is displayed, Windows reserved names
 * (`CON`, `NUL`), case-insensitive collisions, or whether the name exists.
 */
export function workspaceNameRefusal(name: string): string | undefined {
  if (name === '') return 'empty path segment (a doubled or trailing "/")'
  if (name === '.' || name === '..') return '"." and ".." segments are not accepted'
  if (name.length > MAX_NAME_BYTES || Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `a name is longer than ${MAX_NAME_BYTES} bytes`
  if (name.includes('\\')) return 'backslashes are not accepted; the separator is "/"'
  if (name.includes('%')) return '"%" is not accepted (no percent-encoding)'
  if (CONTROL.test(name)) return 'control characters and line breaks are not accepted'
  if (name.normalize('NFC') !== name) return 'names must be in Unicode normalization form C (NFC)'
  if (!NAME_CHARS.test(name) || INVISIBLE.test(name)) return 'names may hold only letters, digits, spaces and . _ - + , @ ( )'
  if (!NAME_START.test(name)) return 'a name must start with a letter, a digit, ".", "_" or "@"'
  if (NAME_END.test(name)) return 'a name must not end with "." or a space'
  return undefined
}

/**
 * Why a workspace path is refused, or `undefined` when it is acceptable: the one rule every tool
 * that takes a workspace path applies (`read_file`, `list_files`, `write_file`, `run_command`'s
 * `path` parameters and its configured `cwd`), and `list_files` applies to what it lists. A path
 * is `.` (the workspace root) or names joined by `/`, each accepted by
 * {@link workspaceNameRefusal}; at most {@link MAX_PATH_BYTES} UTF-8 bytes; relative (no leading
 * `/`, `~` or drive letter). There is one spelling per file: no empty, `.` or `..` segments, no
 * trailing `/`, no encodings. The text returned is ours and never contains the path. Pure: no I/O.
 *
 * Does not check: where the path leads (symlinks: {@link Workspace.resolve} confines the real
 * path), whether it exists, or anything {@link workspaceNameRefusal} does not check.
 */
export function workspacePathRefusal(path: string): string | undefined {
  if (path.length > MAX_PATH_BYTES || Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`
  if (path === '') return 'the path is empty'
  if (path === '.') return undefined
  if (path.startsWith('/') || path.startsWith('~') || /^[A-Za-z]:/.test(path)) return 'absolute paths are not accepted; use a path relative to the workspace'
  for (const name of path.split('/')) {
    const refusal = workspaceNameRefusal(name)
    if (refusal !== undefined) return refusal
  }
  return undefined
}

/**
 * The throwing form of {@link workspacePathRefusal}.
 * @throws SecurityError ERR_PATH_FORBIDDEN, exposing the rule's text (never the path).
 */
export function checkWorkspacePath(path: string): void {
  const refusal = workspacePathRefusal(path)
  if (refusal !== undefined) refuse(`workspace path rule: ${refusal}`, refusal)
}

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
 * A workspace root, resolved once to its real path. Every user-supplied path is checked against
 * the workspace path rule, then lexically, then after symlink resolution (realpath), then again on
 * the opened descriptor.
 *
 * Does not check: file contents, or what another process does to files after they were read.
 */
export class Workspace {
  private constructor(readonly root: string) {}

  static async open(root: string): Promise<Workspace> {
    return new Workspace(await realpath(resolve(root)))
  }

  /** {@link Workspace.open}, at start-up where it must not wait. */
  static openSync(root: string): Workspace {
    return new Workspace(realpathSync(resolve(root)))
  }

  /**
   * Resolve a user path to a real path inside the workspace: the workspace path rule
   * ({@link workspacePathRefusal}) first, then the real path must be inside the root.
   * @throws SecurityError ERR_PATH_FORBIDDEN for a path the rule refuses or one that resolves
   *   outside the root; ERR_FILE_NOT_FOUND when nothing is there.
   */
  async resolve(userPath: string): Promise<string> {
    checkWorkspacePath(userPath)
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
