import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const DEMO_FILES: Record<string, string> = {
  'README.md': '# Demo workspace\n\nFiles here are readable through the `read_file` and `list_files` tools.\nNothing outside this folder is.\n',
  'notes/todo.txt': '- try read_file on notes/todo.txt\n- try list_files on data\n- try ../ and watch it be refused\n',
  'data/products.csv': 'id,name,price\n1,widget,9.99\n2,gadget,24.50\n3,gizmo,3.75\n',
}

/** Create the state folder (0700) and, the first time, a demo workspace with a few files. */
export function ensureState(stateDir: string, workspaceRoot: string | undefined): { createdWorkspace: boolean } {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 })
  if (workspaceRoot === undefined || existsSync(workspaceRoot)) return { createdWorkspace: false }
  for (const [rel, text] of Object.entries(DEMO_FILES)) {
    const file = join(workspaceRoot, rel)
    mkdirSync(join(file, '..'), { recursive: true })
    writeFileSync(file, text, { mode: 0o644 })
  }
  return { createdWorkspace: true }
}

/** Parse `30d`, `12h`, `90m`, `45s`, `2w` into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhdw])$/.exec(text)
  if (m === null) throw new Error(`invalid duration ${JSON.stringify(text)}: use a number and one of s, m, h, d, w (e.g. 30d)`)
  const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w']
  const ms = Number(m[1]) * unit
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new Error(`invalid duration ${JSON.stringify(text)}: out of range`)
  return ms
}
