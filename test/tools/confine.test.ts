import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, sep } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { publicText, SecurityError } from '../../src/errors.js'
import { isInside, Workspace } from '../../src/tools/confine.js'

let base: string
let root: string
let ws: Workspace

beforeAll(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), 'bastion-confine-')))
  root = join(base, 'workspace')
  await mkdir(join(root, 'sub', 'deeper'), { recursive: true })
  await mkdir(join(base, 'workspace-evil'))
  await mkdir(join(base, 'outside'))
  await writeFile(join(root, 'a.txt'), 'inside a')
  await writeFile(join(root, 'sub', 'b.txt'), 'inside b')
  await writeFile(join(base, 'workspace-evil', 'x'), 'sibling secret')
  await writeFile(join(base, 'outside', 'secret.txt'), 'outside secret')
  await symlink(join(base, 'outside', 'secret.txt'), join(root, 'link-out'))
  await symlink(join(base, 'outside'), join(root, 'link-out-dir'))
  await symlink('../workspace-evil', join(root, 'link-sibling'))
  await symlink('sub/b.txt', join(root, 'link-in'))
  await symlink('sub', join(root, 'link-in-dir'))
  await symlink(join(root, 'a.txt'), join(root, 'sub', 'link-abs-in'))
  await symlink('loop2', join(root, 'loop1'))
  await symlink('loop1', join(root, 'loop2'))
  await symlink(join(base, 'outside', 'missing'), join(root, 'dangling-out'))
  execFileSync('mkfifo', [join(root, 'fifo')])
  ws = await Workspace.open(root)
})

afterAll(async () => {
  await rm(base, { recursive: true, force: true })
})

async function refusal(promise: Promise<unknown>): Promise<SecurityError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof SecurityError) return error
    throw error
  }
  throw new Error('expected a SecurityError, got success')
}

function assertNoHostPath(error: SecurityError): void {
  const client = `${publicText(error)} ${error.expose ?? ''}`
  expect(client).not.toContain(base)
  expect(client).not.toContain(tmpdir())
}

describe('isInside', () => {
  const CASES = [
    { root: '/w/workspace', candidate: '/w/workspace', inside: true },
    { root: '/w/workspace', candidate: '/w/workspace/a', inside: true },
    { root: '/w/workspace', candidate: '/w/workspace/a/b/c', inside: true },
    { root: '/w/workspace/', candidate: '/w/workspace/a', inside: true },
    { root: '/w/workspace', candidate: '/w/workspace-evil', inside: false },
    { root: '/w/workspace', candidate: '/w/workspace-evil/x', inside: false },
    { root: '/w/workspace', candidate: '/w/workspaceX/x', inside: false },
    { root: '/w/workspace', candidate: '/w/workspace.bak', inside: false },
    { root: '/w/workspace', candidate: '/w', inside: false },
    { root: '/w/workspace', candidate: '/', inside: false },
    { root: '/w/workspace', candidate: '/other/w/workspace/a', inside: false },
    { root: '/', candidate: '/etc/passwd', inside: true },
  ] as const

  it.each(CASES)('$candidate inside $root → $inside', ({ root, candidate, inside }) => {
    expect(isInside(root, candidate)).toBe(inside)
  })
})

describe('Workspace.resolve', () => {
  it('opens the root as its real path', () => {
    expect(ws.root).toBe(root)
  })

  const ALLOWED = [
    { name: 'plain file', path: 'a.txt', real: 'a.txt' },
    { name: 'nested file', path: 'sub/b.txt', real: 'sub/b.txt' },
    { name: 'the root itself', path: '.', real: '' },
    { name: 'symlink to a file inside', path: 'link-in', real: 'sub/b.txt' },
    { name: 'symlink to a directory inside', path: 'link-in-dir/b.txt', real: 'sub/b.txt' },
    { name: 'absolute symlink target inside', path: 'sub/link-abs-in', real: 'a.txt' },
  ] as const

  it.each(ALLOWED)('$name: $path', async ({ path, real }) => {
    expect(await ws.resolve(path)).toBe(real === '' ? root : join(root, ...real.split('/')))
  })

  const REFUSED = [
    { name: 'parent traversal', path: '../outside/secret.txt', expose: '"." and ".." segments are not accepted' },
    { name: 'deep parent traversal', path: 'sub/../../../../../../etc/passwd', expose: '"." and ".." segments are not accepted' },
    { name: 'parent of the root', path: '..', expose: '"." and ".." segments are not accepted' },
    { name: 'sibling with the root as prefix', path: '../workspace-evil/x', expose: '"." and ".." segments are not accepted' },
    { name: 'dot segments that stay inside (one spelling per file)', path: './sub/./../a.txt', expose: '"." and ".." segments are not accepted' },
    { name: 'up and back into the workspace by name', path: '../workspace/a.txt', expose: '"." and ".." segments are not accepted' },
    { name: 'trailing slash', path: 'sub/', expose: 'empty path segment (a doubled or trailing "/")' },
    { name: 'doubled slash', path: 'sub//b.txt', expose: 'empty path segment (a doubled or trailing "/")' },
    { name: 'absolute path outside', path: '/etc/passwd', expose: 'absolute paths are not accepted; use a path relative to the workspace' },
    { name: 'absolute path that is inside', path: '/__ROOT__/a.txt', expose: 'absolute paths are not accepted; use a path relative to the workspace' },
    { name: 'double slash absolute', path: '//etc/passwd', expose: 'absolute paths are not accepted; use a path relative to the workspace' },
    { name: 'Windows drive', path: 'C:/Windows/win.ini', expose: 'absolute paths are not accepted; use a path relative to the workspace' },
    { name: 'home directory', path: '~/.ssh/id_rsa', expose: 'absolute paths are not accepted; use a path relative to the workspace' },
    { name: 'other user home', path: '~root/.bashrc', expose: 'absolute paths are not accepted; use a path relative to the workspace' },
    { name: 'percent-encoded traversal', path: '%2e%2e%2fsecret', expose: '"%" is not accepted (no percent-encoding)' },
    { name: 'percent-encoded traversal, upper case', path: '%2E%2E%2Foutside', expose: '"%" is not accepted (no percent-encoding)' },
    { name: 'percent-encoded slash only', path: '..%2foutside', expose: '"%" is not accepted (no percent-encoding)' },
    { name: 'double percent-encoding', path: '%252e%252e%252f', expose: '"%" is not accepted (no percent-encoding)' },
    { name: 'percent-encoded NUL', path: 'a.txt%00.png', expose: '"%" is not accepted (no percent-encoding)' },
    { name: 'percent sign not followed by hex', path: 'sub/%zz/../b.txt', expose: '"%" is not accepted (no percent-encoding)' },
    { name: 'backslash traversal', path: '..\\outside\\secret.txt', expose: 'backslashes are not accepted; the separator is "/"' },
    { name: 'mixed separators', path: 'sub\\..\\..\\outside', expose: 'backslashes are not accepted; the separator is "/"' },
    { name: 'NUL byte', path: 'a.txt\u0000.png', expose: 'control characters and line breaks are not accepted' },
    { name: 'newline', path: 'a\n.txt', expose: 'control characters and line breaks are not accepted' },
    { name: 'DEL character', path: 'a\u007f', expose: 'control characters and line breaks are not accepted' },
    { name: 'path longer than the limit', path: `${'a/'.repeat(600)}a.txt`, expose: 'longer than 1024 bytes' },
    { name: 'symlink to a file outside', path: 'link-out', expose: 'resolves outside the workspace' },
    { name: 'symlink to a directory outside', path: 'link-out-dir/secret.txt', expose: 'resolves outside the workspace' },
    { name: 'relative symlink to the sibling', path: 'link-sibling/x', expose: 'resolves outside the workspace' },
    { name: 'symlink loop', path: 'loop1', expose: 'symlink loop' },
    { name: 'path through a symlink loop', path: 'loop1/x', expose: 'symlink loop' },
  ] as const

  it.each(REFUSED)('$name → ERR_PATH_FORBIDDEN', async ({ path, expose }) => {
    const error = await refusal(ws.resolve(path.replace('/__ROOT__', root)))
    expect(error.code).toBe('ERR_PATH_FORBIDDEN')
    expect(error.expose).toBe(expose)
    assertNoHostPath(error)
  })

  const MISSING = [
    { name: 'missing file', path: 'nope.txt' },
    { name: 'file used as a directory', path: 'a.txt/x' },
    { name: 'dangling symlink', path: 'dangling-out' },
  ] as const

  it.each(MISSING)('$name → ERR_FILE_NOT_FOUND', async ({ path }) => {
    const error = await refusal(ws.resolve(path))
    expect(error.code).toBe('ERR_FILE_NOT_FOUND')
    assertNoHostPath(error)
  })

  it('property: no generated path that resolve accepts is outside the root (checked with realpath)', async () => {
    const segment = fc.constantFrom(
      '..',
      '.',
      '',
      'a',
      'a.txt',
      'sub',
      'deeper',
      'b.txt',
      'workspace',
      'workspace-evil',
      'outside',
      'x',
      'secret.txt',
      'link-in',
      'link-in-dir',
      'link-out',
      'link-out-dir',
      'link-sibling',
      'link-abs-in',
      'loop1',
      'dangling-out',
    )
    let accepted = 0
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 8 }), async (segments) => {
        const path = segments.join('/')
        let real: string
        try {
          real = await ws.resolve(path)
        } catch (error) {
          expect(error).toBeInstanceOf(SecurityError)
          if (error instanceof SecurityError) expect(['ERR_PATH_FORBIDDEN', 'ERR_FILE_NOT_FOUND']).toContain(error.code)
          return
        }
        accepted++
        const again = await realpath(real)
        expect(again).toBe(real)
        expect(isInside(root, again)).toBe(true)
        const rel = relative(root, again)
        expect(rel === '..' || rel.startsWith(`..${sep}`)).toBe(false)
      }),
      { numRuns: 1000 },
    )
    expect(accepted).toBeGreaterThan(10) // the property saw real successes, not only refusals
  })
})

describe('Workspace.display', () => {
  it('shows paths relative to the root, never the host path', () => {
    expect(ws.display(root)).toBe('.')
    expect(ws.display(join(root, 'sub', 'b.txt'))).toBe('sub/b.txt')
  })
})

describe('Workspace.openChecked', () => {
  it('opens a regular file and reports its size', async () => {
    const { handle, stats } = await ws.openChecked(await ws.resolve('a.txt'), 'file')
    try {
      expect(stats.isFile()).toBe(true)
      expect(stats.size).toBe('inside a'.length)
    } finally {
      await handle.close()
    }
  })

  it('opens a directory as a directory', async () => {
    const { handle, stats } = await ws.openChecked(await ws.resolve('sub'), 'directory')
    await handle.close()
    expect(stats.isDirectory()).toBe(true)
  })

  it('refuses a FIFO as not a regular file, without blocking', async () => {
    const real = await ws.resolve('fifo')
    const timeout = new Promise<'blocked'>((resolve) => setTimeout(() => resolve('blocked'), 2000).unref())
    const outcome = await Promise.race([refusal(ws.openChecked(real, 'file')), timeout])
    expect(outcome).not.toBe('blocked')
    if (outcome === 'blocked') return
    expect(outcome.code).toBe('ERR_PATH_FORBIDDEN')
    expect(outcome.expose).toBe('not a regular file')
  })

  it('refuses a directory opened as a file', async () => {
    const error = await refusal(ws.openChecked(await ws.resolve('sub'), 'file'))
    expect(error.code).toBe('ERR_PATH_FORBIDDEN')
    expect(error.expose).toBe('not a regular file')
  })

  it('refuses a file opened as a directory', async () => {
    const error = await refusal(ws.openChecked(await ws.resolve('a.txt'), 'directory'))
    expect(error.code).toBe('ERR_PATH_FORBIDDEN')
    expect(error.expose).toBe('not a directory')
  })

  it('does not follow a final symlink (a path swapped for a link after resolve)', async () => {
    const error = await refusal(ws.openChecked(join(root, 'link-out'), 'file'))
    expect(error.code).toBe('ERR_PATH_FORBIDDEN')
    expect(error.expose).toBe('symlinks are not followed')
    assertNoHostPath(error)
  })

  it.runIf(process.platform === 'linux')('refuses a descriptor that lands outside the root (an intermediate directory swapped for a link)', async () => {
    const error = await refusal(ws.openChecked(join(root, 'link-out-dir', 'secret.txt'), 'file'))
    expect(error.code).toBe('ERR_PATH_FORBIDDEN')
    expect(error.expose).toBe('resolves outside the workspace')
    assertNoHostPath(error)
  })

  it('reports a file that vanished before open as not found', async () => {
    const error = await refusal(ws.openChecked(join(root, 'vanished.txt'), 'file'))
    expect(error.code).toBe('ERR_FILE_NOT_FOUND')
    assertNoHostPath(error)
  })
})
