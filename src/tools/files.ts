import type { Stats } from 'node:fs'
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { SecurityError } from '../errors.js'
import { type Workspace, workspaceNameRefusal } from './confine.js'
import type { InProcessTool } from './registry.js'

export interface FileToolsOptions {
  readonly workspace: Workspace
  /** Largest file `read_file` returns. */
  readonly maxFileBytes: number
  /** Most entries `list_files` returns. */
  readonly maxEntries?: number
}

const pathArg = z.string().min(1).max(1024).describe('Path relative to the workspace root, "/" separated')

/**
 * `read_file`: a regular file inside the workspace, up to the size cap. UTF-8 text comes back as
 * text; anything else as a base64 blob.
 * Does not check: what the file contains (secrets in workspace files are returned as they are).
 */
export function readFileTool(options: FileToolsOptions): InProcessTool<z.ZodObject<{ path: typeof pathArg }>> {
  const { workspace, maxFileBytes } = options
  return {
    name: 'read_file',
    title: 'Read a workspace file',
    description: `Read a file from the workspace (at most ${maxFileBytes} bytes). Paths are relative to the workspace root.`,
    input: z.strictObject({ path: pathArg }),
    permissions: ['files:read'],
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run({ path }) {
      const real = await workspace.resolve(path)
      const { handle, stats } = await workspace.openChecked(real, 'file')
      try {
        if (stats.size > maxFileBytes) {
          throw new SecurityError('ERR_FILE_TOO_LARGE', `file of ${stats.size} bytes over cap ${maxFileBytes}`, { expose: `larger than ${maxFileBytes} bytes` })
        }
        // Read at most cap + 1 bytes: a file that grew since fstat is still refused, never streamed.
        const buffer = Buffer.alloc(maxFileBytes + 1)
        let filled = 0
        while (filled < buffer.length) {
          const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled)
          if (bytesRead === 0) break
          filled += bytesRead
        }
        if (filled > maxFileBytes) throw new SecurityError('ERR_FILE_TOO_LARGE', 'file grew past the cap while reading', { expose: `larger than ${maxFileBytes} bytes` })
        const bytes = buffer.subarray(0, filled)
        const shown = workspace.display(real)
        let text: string | undefined
        try {
          text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
        } catch {
          text = undefined
        }
        if (text !== undefined) return { content: [{ type: 'text', text }] }
        return {
          content: [{ type: 'resource', resource: { uri: `workspace:///${encodeURI(shown)}`, mimeType: 'application/octet-stream', blob: bytes.toString('base64') } }],
        }
      } finally {
        await handle.close()
      }
    },
  }
}

/** One `list_files` entry: a name the workspace rule accepts, its kind, and a file's size in bytes. */
export type ListedEntry = { readonly name: string; readonly type: 'file' | 'directory' | 'symlink' | 'other'; readonly size: number | null }

/** What `list_files` returns, as `structuredContent` and (the same, as JSON) text. */
export type Listing = {
  /** The directory, as the client named it. */
  readonly path: string
  readonly entries: readonly ListedEntry[]
  /** Entries past `maxEntries`, not listed. */
  readonly notShown: number
  /** Entries whose names the workspace rule refuses (made outside bastion): counted, never shown. */
  readonly refusedNames: number
}

/**
 * `list_files`: the entries of a workspace directory (name, kind, size for files), sorted by name.
 * Only names the workspace path rule accepts are listed, so every name listed can be passed to
 * `read_file`; the others are counted. Symlinks are listed as symlinks and never followed. The
 * result is structured content and the same as JSON text, so a name can never pass for another
 * entry or for other text.
 * Does not check: entries' contents; hidden files are listed like any other. The directory is
 * read whole before the cap applies (its size is bounded by the filesystem, not by bastion).
 */
export function listFilesTool(options: FileToolsOptions): InProcessTool<z.ZodObject<{ path: z.ZodDefault<typeof pathArg> }>> {
  const { workspace } = options
  const maxEntries = options.maxEntries ?? 1000
  return {
    name: 'list_files',
    title: 'List workspace files',
    description:
      'List the entries of a workspace directory. Paths are relative to the workspace root; the default is the root. ' +
      'Returns JSON: {"path", "entries": [{"name", "type": "file" | "directory" | "symlink" | "other", "size": bytes or null}], "notShown", "refusedNames"}.',
    input: z.strictObject({ path: pathArg.default('.') }),
    permissions: ['files:read'],
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run({ path }) {
      const real = await workspace.resolve(path)
      const { handle } = await workspace.openChecked(real, 'directory')
      try {
        // Through the descriptor on Linux: what is listed is the directory that was checked, even
        // if its path is swapped for a symlink meanwhile.
        const dir = process.platform === 'linux' ? `/proc/self/fd/${handle.fd}` : real
        const names = await readdir(dir)
        const listable = names.filter((name) => workspaceNameRefusal(name) === undefined).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
        const entries: ListedEntry[] = []
        for (const name of listable.slice(0, maxEntries)) {
          let stats: Stats
          try {
            stats = await lstat(join(dir, name))
          } catch (error) {
            if (error instanceof Error && (error as NodeJS.ErrnoException).code === 'ENOENT') continue // removed since readdir
            throw error
          }
          const type = stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'directory' : stats.isFile() ? 'file' : 'other'
          entries.push({ name, type, size: type === 'file' ? stats.size : null })
        }
        const listing: Listing = { path, entries, notShown: Math.max(0, listable.length - maxEntries), refusedNames: names.length - listable.length }
        return { content: [{ type: 'text', text: listingText(listing) }], structuredContent: listing }
      } finally {
        await handle.close()
      }
    },
  }
}

/** JSON, one entry a line. U+2028/2029 are escaped too: JSON allows them raw, JavaScript source once did not. */
function listingText(listing: Listing): string {
  const json = (value: unknown): string => JSON.stringify(value).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`)
  const { path, entries, notShown, refusedNames } = listing
  const rows = entries.map((entry) => json(entry))
  return `{"path":${json(path)},"entries":[${rows.length === 0 ? '' : `\n${rows.join(',\n')}\n`}],"notShown":${notShown},"refusedNames":${refusedNames}}`
}
