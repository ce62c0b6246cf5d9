import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { SecurityError } from '../errors.js'
import type { Workspace } from './confine.js'
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

/**
 * `list_files`: the entries of a workspace directory (name and kind; size for files). Symlinks
 * are listed as symlinks and never followed.
 * Does not check: entries' contents; hidden files are listed like any other.
 */
export function listFilesTool(options: FileToolsOptions): InProcessTool<z.ZodObject<{ path: z.ZodDefault<typeof pathArg> }>> {
  const { workspace } = options
  const maxEntries = options.maxEntries ?? 1000
  return {
    name: 'list_files',
    title: 'List workspace files',
    description: 'List the entries of a workspace directory. Paths are relative to the workspace root; the default is the root.',
    input: z.strictObject({ path: pathArg.default('.') }),
    permissions: ['files:read'],
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run({ path }) {
      const real = await workspace.resolve(path)
      const { handle } = await workspace.openChecked(real, 'directory')
      await handle.close()
      const entries = await readdir(real, { withFileTypes: true })
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      const shown = entries.slice(0, maxEntries).map((e) => {
        const kind = e.isSymbolicLink() ? 'symlink' : e.isDirectory() ? 'directory' : e.isFile() ? 'file' : 'other'
        const rel = workspace.display(join(real, e.name))
        return { path: rel, kind }
      })
      const lines = shown.map((e) => `${e.kind === 'directory' ? `${e.path}/` : e.path}${e.kind === 'symlink' ? ' (symlink)' : e.kind === 'other' ? ' (special)' : ''}`)
      if (entries.length > maxEntries) lines.push(`… ${entries.length - maxEntries} more entries not shown`)
      return { content: [{ type: 'text', text: lines.length === 0 ? '(empty directory)' : lines.join('\n') }] }
    },
  }
}
