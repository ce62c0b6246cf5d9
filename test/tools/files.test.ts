import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { publicText, type SecurityError, toSecurityError } from '../../src/errors.js'
import { Workspace } from '../../src/tools/confine.js'
import { listFilesTool, readFileTool } from '../../src/tools/files.js'
import type { ToolContext, ToolOutput } from '../../src/tools/registry.js'

const CAP = 64
// The file tools never read the context; a minimal one is enough to call run() directly.
const ctx = { requestId: 'req-files-test', signal: new AbortController().signal } as unknown as ToolContext

let base: string
let root: string
let readFile: ReturnType<typeof readFileTool>
let listFiles: ReturnType<typeof listFilesTool>
let listAll: ReturnType<typeof listFilesTool>

beforeAll(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), 'bastion-files-')))
  root = join(base, 'workspace')
  await mkdir(join(root, 'docs', 'empty'), { recursive: true })
  await mkdir(join(base, 'outside'))
  await writeFile(join(root, 'hello.txt'), 'héllo wörld\n')
  await writeFile(join(root, 'empty.txt'), '')
  await writeFile(join(root, 'binary.bin'), Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x41]))
  await writeFile(join(root, 'at-cap.txt'), 'a'.repeat(CAP))
  await writeFile(join(root, 'over-cap.txt'), 'a'.repeat(CAP + 1))
  await writeFile(join(root, 'docs', 'z.md'), '# z')
  await writeFile(join(root, 'docs', 'a.md'), '# a')
  await writeFile(join(base, 'outside', 'secret.txt'), 'outside secret')
  await symlink(join(base, 'outside', 'secret.txt'), join(root, 'docs', 'link-out'))
  execFileSync('mkfifo', [join(root, 'docs', 'pipe')])
  const workspace = await Workspace.open(root)
  readFile = readFileTool({ workspace, maxFileBytes: CAP })
  listFiles = listFilesTool({ workspace, maxFileBytes: CAP, maxEntries: 4 })
  listAll = listFilesTool({ workspace, maxFileBytes: CAP })
})

afterAll(async () => {
  await rm(base, { recursive: true, force: true })
})

function onlyContent(output: ToolOutput): unknown {
  expect('content' in output).toBe(true)
  return 'content' in output ? output.content : undefined
}

async function refusal(promise: Promise<unknown>): Promise<SecurityError> {
  try {
    await promise
  } catch (error) {
    return toSecurityError(error)
  }
  throw new Error('expected a refusal, got success')
}

describe('read_file', () => {
  it('returns UTF-8 text as text', async () => {
    expect(onlyContent(await readFile.run({ path: 'hello.txt' }, ctx))).toStrictEqual([{ type: 'text', text: 'héllo wörld\n' }])
  })

  it('returns an empty file as empty text', async () => {
    expect(onlyContent(await readFile.run({ path: 'empty.txt' }, ctx))).toStrictEqual([{ type: 'text', text: '' }])
  })

  it('returns non-UTF-8 bytes as a base64 blob with a workspace URI', async () => {
    const content = onlyContent(await readFile.run({ path: 'binary.bin' }, ctx))
    expect(content).toStrictEqual([
      {
        type: 'resource',
        resource: { uri: 'workspace:///binary.bin', mimeType: 'application/octet-stream', blob: Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x41]).toString('base64') },
      },
    ])
    expect(JSON.stringify(content)).not.toContain(base)
  })

  it('returns a file of exactly the cap', async () => {
    expect(onlyContent(await readFile.run({ path: 'at-cap.txt' }, ctx))).toStrictEqual([{ type: 'text', text: 'a'.repeat(CAP) }])
  })

  it('refuses a file of cap + 1 bytes with ERR_FILE_TOO_LARGE', async () => {
    const error = await refusal(readFile.run({ path: 'over-cap.txt' }, ctx))
    expect(error.code).toBe('ERR_FILE_TOO_LARGE')
    expect(publicText(error)).toBe(`file too large: larger than ${CAP} bytes`)
  })

  const REFUSED = [
    { name: 'traversal', path: '../outside/secret.txt', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'absolute host path', path: '/etc/passwd', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'absolute path into the workspace', path: '__ROOT__/hello.txt', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'symlink to outside', path: 'docs/link-out', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'FIFO', path: 'docs/pipe', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'directory', path: 'docs', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'missing file', path: 'missing.txt', code: 'ERR_FILE_NOT_FOUND' },
    { name: 'file as directory', path: 'hello.txt/x', code: 'ERR_FILE_NOT_FOUND' },
  ] as const

  it.each(REFUSED)('$name → $code, no host path in what the client sees', async ({ path, code }) => {
    const error = await refusal(readFile.run({ path: path.replace('__ROOT__', root) }, ctx))
    expect(error.code).toBe(code)
    for (const shown of [publicText(error), error.expose ?? '']) {
      expect(shown).not.toContain('/tmp')
      expect(shown).not.toContain(base)
    }
  })
})

describe('list_files', () => {
  it('lists a directory sorted, with kinds and file sizes, as structured content and the same as JSON text', async () => {
    const output = await listAll.run({ path: 'docs' }, ctx)
    const listing = {
      path: 'docs',
      entries: [
        { name: 'a.md', type: 'file', size: 3 },
        { name: 'empty', type: 'directory', size: null },
        { name: 'link-out', type: 'symlink', size: null },
        { name: 'pipe', type: 'other', size: null },
        { name: 'z.md', type: 'file', size: 3 },
      ],
      notShown: 0,
      refusedNames: 0,
    }
    expect(output).toStrictEqual({ content: [{ type: 'text', text: expect.any(String) }], structuredContent: listing })
    const [text] = onlyContent(output) as { text: string }[]
    expect(JSON.parse(text?.text ?? '')).toStrictEqual(listing)
    // One entry a line: readable, and still one JSON value.
    expect(text?.text.split('\n')).toHaveLength(listing.entries.length + 2)
  })

  it('caps the number of entries and says how many were left out', async () => {
    const output = await listFiles.run({ path: '.' }, ctx)
    expect('structuredContent' in output && output.structuredContent).toStrictEqual({
      path: '.',
      entries: [
        { name: 'at-cap.txt', type: 'file', size: CAP },
        { name: 'binary.bin', type: 'file', size: 5 },
        { name: 'docs', type: 'directory', size: null },
        { name: 'empty.txt', type: 'file', size: 0 },
      ],
      notShown: 2,
      refusedNames: 0,
    })
  })

  it('says an empty directory is empty', async () => {
    const output = await listFiles.run({ path: 'docs/empty' }, ctx)
    expect(onlyContent(output)).toStrictEqual([{ type: 'text', text: '{"path":"docs/empty","entries":[],"notShown":0,"refusedNames":0}' }])
  })

  it('defaults to the root through the input schema', () => {
    expect(listFiles.input.parse({})).toStrictEqual({ path: '.' })
    expect(listFiles.input.safeParse({ path: '.', extra: 1 }).success).toBe(false)
  })

  const REFUSED = [
    { name: 'parent', path: '..', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'symlink to outside', path: 'docs/link-out', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'a file', path: 'hello.txt', code: 'ERR_PATH_FORBIDDEN' },
    { name: 'missing directory', path: 'nope', code: 'ERR_FILE_NOT_FOUND' },
  ] as const

  it.each(REFUSED)('$name → $code, no host path in what the client sees', async ({ path, code }) => {
    const error = await refusal(listFiles.run({ path }, ctx))
    expect(error.code).toBe(code)
    for (const shown of [publicText(error), error.expose ?? '']) {
      expect(shown).not.toContain('/tmp')
      expect(shown).not.toContain(base)
    }
  })
})
