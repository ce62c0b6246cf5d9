import { closeSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { callModern, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

// Two whole versions that differ from their first line on (the rule ids), each with two denies
// over read_file. Their prefixes are valid YAML and valid policies: the empty file (no rules: the
// role grant alone, both folders open), a version without its second deny (private/ open), a deny
// without its `when` (every read refused).
const version = (tag: string): string => `rules:
  - id: no-secrets-${tag}
    effect: deny
    subjects: '*'
    targets: { tools: [read_file] }
    when: args.path.startsWith("secret/")
  - id: no-private-${tag}
    effect: deny
    subjects: '*'
    targets: { tools: [read_file] }
    when: args.path.startsWith("private/")
`
const A = version('a')
const B = version('b')
const INTERVAL = 100
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Truncate `file`, then write `text` one line at a time, `pause(i)` ms after line i. */
async function writeLineByLine(file: string, text: string, pause: (i: number) => number): Promise<void> {
  const fd = openSync(file, 'w')
  try {
    const lines = text.split('\n').slice(0, -1)
    for (const [i, line] of lines.entries()) {
      writeSync(fd, `${line}\n`)
      await sleep(pause(i))
    }
  } finally {
    closeSync(fd)
  }
}

describe('policy hot reload takes whole files only', () => {
  let server: TestServer
  let file: string
  let vA: string
  let vB: string
  beforeAll(async () => {
    server = await startServer(
      { policy: { file: 'policy.yaml', reloadIntervalMs: INTERVAL }, workspace: { enabled: true }, sql: { enabled: false }, limits: { principal: { rate: '100000/s' } } },
      undefined,
      (dir) => {
        file = join(dir, 'policy.yaml')
        writeFileSync(file, A)
      },
    )
    const ws = join(server.dir, '.bastion', 'workspace')
    for (const [folder, text] of [
      ['secret', 'CANARY-SECRET'],
      ['private', 'CANARY-PRIVATE'],
    ] as const) {
      mkdirSync(join(ws, folder), { recursive: true })
      writeFileSync(join(ws, folder, 'x.txt'), text)
    }
    // The hashes of the two whole versions, loaded explicitly.
    const source = server.bastion.policySource()
    vA = server.bastion.policy().version
    writeFileSync(file, B)
    source.reload()
    vB = server.bastion.policy().version
    writeFileSync(file, A)
    source.reload()
    expect(server.bastion.policy().version).toBe(vA)
    expect(vB).not.toBe(vA)
  })
  afterAll(async () => {
    await server?.close()
  })

  /** Reads from three callers until `done`: counts what leaked and what was wrongly refused. */
  async function reads(done: () => boolean): Promise<{ total: number; bypassed: number; refused: number }> {
    const counts = { total: 0, bypassed: 0, refused: 0 }
    const caller = async (path: string): Promise<void> => {
      while (!done()) {
        const { body } = await callModern(server.url, server.keys.reader, 'read_file', { path })
        counts.total += 1
        const text = JSON.stringify(body)
        if (text.includes('CANARY-')) counts.bypassed += 1
        if (path.startsWith('notes/') && body.error !== undefined) counts.refused += 1
      }
    }
    await Promise.all([caller('notes/todo.txt'), caller('secret/x.txt'), caller('private/x.txt')])
    return counts
  }

  it('a writer writing line by line (20–50 ms between lines): every decision comes from a whole version', async () => {
    const since = server.mark()
    let done = false
    const calls = reads(() => done)
    for (let round = 0; round < 3; round++) {
      for (const [text, v] of [
        [B, () => vB],
        [A, () => vA],
      ] as const) {
        await writeLineByLine(file, text, () => 20 + Math.random() * 30)
        // The whole version is taken once the file stood still for a reload interval.
        await waitFor(() => server.bastion.policy().version === v(), { what: 'the whole version in force', timeoutMs: 5000 })
      }
    }
    done = true
    const counts = await calls
    const lines = since().filter((l) => l.tool === 'read_file')
    const versions = new Set(lines.map((l) => l.policy))
    const loaded = since().filter((l) => l.event === 'policy.loaded')
    const rejected = since().filter((l) => l.event === 'policy.rejected')
    console.log(
      `line-by-line writer: ${counts.total} reads, ${counts.bypassed} bypassed, ${counts.refused} wrongly refused; ${loaded.length} versions loaded, ${rejected.length} rejected`,
    )
    expect(counts.total).toBeGreaterThan(100)
    expect(counts.bypassed).toBe(0)
    expect(counts.refused).toBe(0)
    expect([...versions].every((v) => v === vA || v === vB)).toBe(true)
    expect(loaded.map((l) => l.policy)).toStrictEqual([vB, vA, vB, vA, vB, vA])
    // A prefix that does not parse was never whole for a reload interval: not even refused.
    expect(rejected).toStrictEqual([])
  })

  it('the limit: a pause longer than the reload interval mid-file loads that prefix; writing a temp file and renaming it never does', async () => {
    const since = server.mark()
    const [head = ''] = B.split('  - id: no-private-b')
    const long = head.split('\n').length - 2
    // In place: the file stands still for 4 intervals after the first rule.
    await writeLineByLine(file, B, (i) => (i === long ? 4 * INTERVAL : 20))
    await waitFor(() => server.bastion.policy().version === vB, { what: 'version B', timeoutMs: 5000 })
    const inPlace = since()
      .filter((l) => l.event === 'policy.loaded')
      .map((l) => l.policy)
    expect(inPlace).toHaveLength(2)
    expect(inPlace[1]).toBe(vB)
    expect(inPlace[0]).not.toBe(vA) // the prefix (one deny) was in force for a while
    // Through rename, with the same pause: only the whole file is ever at the watched path.
    const after = server.mark()
    const tmp = `${file}.tmp`
    await writeLineByLine(tmp, A, (i) => (i === long ? 4 * INTERVAL : 20))
    renameSync(tmp, file)
    await waitFor(() => server.bastion.policy().version === vA, { what: 'version A', timeoutMs: 5000 })
    expect(
      after()
        .filter((l) => l.event === 'policy.loaded')
        .map((l) => l.policy),
    ).toStrictEqual([vA])
  })
})
