import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, realpathSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { BIN, runProcess } from '../helpers/processes.js'

export function tempDir(prefix = 'bastion-cli-'): string {
  return realpathSync(mkdtempSync(join(tmpdir(), prefix)))
}

export interface Ran {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The built CLI as a child process, in `cwd`, with only PATH and `env` (no inherited BASTION_*). */
export function cli(cwd: string, args: readonly string[], env: Record<string, string> = {}): Ran {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Every file and folder under `root` with its size and mtime: a write anywhere changes it. */
export function tree(root: string): string[] {
  const out: string[] = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name)
      const s = statSync(path)
      out.push(`${relative(root, path)}${s.isDirectory() ? '/' : ` ${s.size} ${s.mtimeMs}`}`)
      if (s.isDirectory()) walk(path)
    }
  }
  walk(root)
  return out
}

/** {@link cli}, without blocking the worker: for files whose tests run concurrently. */
export async function cliAsync(cwd: string, args: readonly string[], env: Record<string, string> = {}): Promise<Ran> {
  const r = await runProcess(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, timeoutMs: 20_000 })
  return { status: r.code, stdout: r.stdout, stderr: r.stderr }
}
