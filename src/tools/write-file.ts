import { createHash, randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { open, readlink, rename, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { z } from 'zod'
import { SecurityError } from '../errors.js'
import { checkWorkspacePath, isInside, type Workspace, workspacePathRefusal } from './confine.js'
import { Confirmations } from './confirm.js'
import type { InProcessTool } from './registry.js'

export interface WriteFileOptions {
  readonly workspace: Workspace
  readonly maxFileBytes: number
  readonly confirmations: Confirmations
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex')

/**
 * Where a new or existing file would go: its real parent inside the workspace, and what is there
 * now. The whole path, file name included, passes the workspace path rule: what `write_file`
 * creates, `read_file` and `list_files` accept.
 */
async function target(workspace: Workspace, path: string): Promise<{ real: string; shown: string; current: { bytes: number; sha256: string } | null }> {
  checkWorkspacePath(path)
  const slash = path.lastIndexOf('/')
  const name = path.slice(slash + 1)
  if (path === '.') throw new SecurityError('ERR_PATH_FORBIDDEN', 'no file name', { expose: 'the path must name a file' })
  const parent = await workspace.resolve(slash === -1 ? '.' : path.slice(0, slash))
  const real = join(parent, name)
  if (!isInside(workspace.root, real) || real === workspace.root) throw new SecurityError('ERR_PATH_FORBIDDEN', 'target outside the workspace', { expose: 'outside the workspace' })
  const shown = workspace.display(real)
  // Through a symlinked parent the real target may sit under a name the rule refuses (made
  // outside bastion): it is not written, nor shown to the user or the client.
  if (workspacePathRefusal(shown) !== undefined)
    throw new SecurityError('ERR_PATH_FORBIDDEN', 'real target has a name the workspace rule refuses', { expose: 'resolves to a name the workspace does not accept' })
  // The workspace's own checked open: no symlink followed, regular files only, inside the root.
  let opened: Awaited<ReturnType<Workspace['openChecked']>>
  try {
    opened = await workspace.openChecked(real, 'file')
  } catch (error) {
    if (error instanceof SecurityError && error.code === 'ERR_FILE_NOT_FOUND') return { real, shown, current: null }
    if (error instanceof SecurityError && error.code === 'ERR_PATH_FORBIDDEN')
      throw new SecurityError('ERR_PATH_FORBIDDEN', `target refused: ${error.message}`, { cause: error, expose: 'only regular files can be written' })
    throw error
  }
  // Streamed: an existing file of any size is hashed in constant memory.
  const hash = createHash('sha256')
  try {
    for await (const chunk of opened.handle.createReadStream({ autoClose: false })) hash.update(chunk as Buffer)
  } finally {
    await opened.handle.close()
  }
  return { real, shown, current: { bytes: opened.stats.size, sha256: hash.digest('hex') } }
}

/**
 * `write_file`: create or replace a UTF-8 file in the workspace, after a preview (which file, new
 * or replaced, sizes) and the user's confirmation. The file is written to a temporary file in the
 * same directory and renamed over the target, so readers see the old or the new file, never half;
 * a target that changed since the confirmation is left alone.
 * Does not check: what the content is (it may be a script or a config file).
 */
export function writeFileTool(options: WriteFileOptions) {
  const { workspace, maxFileBytes, confirmations } = options
  const input = z.strictObject({
    path: z.string().min(1).max(1024).describe('Path relative to the workspace root, "/" separated'),
    content: z.string().max(maxFileBytes).describe('The whole new content (UTF-8)'),
  })
  const tool: InProcessTool<typeof input> = {
    name: 'write_file',
    title: 'Write a workspace file (asks the user first)',
    description: `Create or replace a text file in the workspace (at most ${maxFileBytes} bytes). Asks the user to confirm first.`,
    input,
    permissions: ['files:write'],
    annotations: { destructiveHint: true, idempotentHint: true, openWorldHint: false },
    async run(args, ctx) {
      const bytes = Buffer.byteLength(args.content, 'utf8')
      if (bytes > maxFileBytes) throw new SecurityError('ERR_FILE_TOO_LARGE', `content of ${bytes} bytes over cap`, { expose: `larger than ${maxFileBytes} bytes` })
      const where = await target(workspace, args.path)
      const state = Confirmations.stateOf(ctx)
      if (state === undefined) {
        const preview = { path: where.shown, bytes, replaces: where.current === null ? null : where.current.sha256, replacedBytes: where.current?.bytes ?? null }
        ctx.audit({ dryRun: preview })
        const message =
          where.current === null
            ? `Create ${where.shown} (${bytes} bytes) in the workspace?`
            : `Replace ${where.shown} (${where.current.bytes} bytes now) with ${bytes} bytes? The old content is lost.`
        return confirmations.ask(ctx, tool.name, args, message, preview)
      }
      const preview = await confirmations.redeem(ctx, tool.name, args, state)
      if ((where.current?.sha256 ?? null) !== preview.replaces || where.shown !== preview.path) {
        throw new SecurityError('ERR_CONFIRMATION_INVALID', 'target changed since the confirmation', { expose: 'the file changed since you confirmed; nothing was written' })
      }
      // Not derived from the target's name: a name of 255 bytes plus a suffix would be too long.
      const temp = join(dirname(where.real), `.bastion-${randomBytes(6).toString('hex')}.tmp`)
      const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644)
      try {
        // The descriptor's real path: the parent directory was not swapped for a symlink meanwhile.
        if (process.platform === 'linux' && !isInside(workspace.root, await readlink(`/proc/self/fd/${handle.fd}`)))
          throw new SecurityError('ERR_PATH_FORBIDDEN', 'temporary file resolved outside the workspace (race)', { expose: 'outside the workspace' })
        await handle.writeFile(args.content, 'utf8')
        await handle.sync()
        await handle.close()
        await rename(temp, where.real)
      } catch (error) {
        await handle.close().catch(() => undefined)
        await rm(temp, { force: true })
        throw error
      }
      const written = { path: where.shown, bytes, sha256: sha256(args.content), replaced: where.current?.sha256 ?? null }
      ctx.audit({ changed: written })
      return { content: [{ type: 'text', text: `${where.current === null ? 'created' : 'replaced'} ${where.shown} (${bytes} bytes)` }] }
    },
  }
  return tool
}
