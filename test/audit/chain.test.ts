import { spawn, spawnSync } from 'node:child_process'
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { AuditLog, FileAuditSink } from '../../src/audit/audit-log.js'
import { verifyAudit } from '../../src/audit/chain.js'
import { BIN } from '../helpers/processes.js'
import { waitFor } from '../helpers/wait.js'

const KEY = Buffer.from('k'.repeat(64))
const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'bastion-chain-')))

/** A closed, chained file of `n` request lines from one writer. */
function chainedFile(n: number): { path: string; text: string } {
  const path = join(tmp(), 'audit.jsonl')
  const log = new AuditLog(new FileAuditSink(path), undefined, KEY)
  for (let i = 0; i < n; i++) log.record({ event: 'tool.call', decision: i % 2 === 0 ? 'allow' : 'deny', reason: 'OK', n: i })
  log.close()
  return { path, text: readFileSync(path, 'utf8') }
}

const verify = (text: string, key = KEY) => verifyAudit([{ name: 'audit.jsonl', text }], key)
const lines = (text: string): string[] => text.slice(0, -1).split('\n')
const join_ = (ls: string[]): string => `${ls.join('\n')}\n`
const countLines = (path: string): number => readFileSync(path, 'utf8').split('\n').length - 1

describe('hash-chained audit', () => {
  it('a fresh log verifies: opened, every line, closed', () => {
    const { text } = chainedFile(10)
    expect(verify(text)).toMatchObject({ ok: true, lines: 12, writers: 1, open: [] })
    const first = JSON.parse(lines(text)[0] ?? '{}') as Record<string, unknown>
    expect(first).toMatchObject({ event: 'audit.opened', seq: 1, prev: '0'.repeat(64) })
    expect(Object.keys(first).at(-1)).toBe('mac')
  })

  const TAMPER: { name: string; change: (ls: string[]) => string[]; line: number; says: RegExp }[] = [
    { name: 'a field edited', change: (ls) => ls.map((l, i) => (i === 4 ? l.replace('"decision":"deny"', '"decision":"allow"') : l)), line: 5, says: /MAC does not match/ },
    { name: 'a line deleted', change: (ls) => ls.filter((_, i) => i !== 6), line: 7, says: /1 line\(s\) deleted before this one/ },
    { name: 'two lines swapped', change: (ls) => ls.map((l, i) => (i === 3 ? (ls[4] ?? '') : i === 4 ? (ls[3] ?? '') : l)), line: 4, says: /seq 5 after 3/ },
    {
      name: 'a forged line inserted',
      change: (ls) => [...ls.slice(0, 5), `{"ts":"x","event":"tool.call","decision":"allow","mac":"${'0'.repeat(64)}"}`, ...ls.slice(5)],
      line: 6,
      says: /MAC does not match/,
    },
    { name: 'a real line replayed', change: (ls) => [...ls.slice(0, 5), ls[2] ?? '', ...ls.slice(5)], line: 6, says: /reordered or duplicated/ },
    { name: 'lines after the close', change: (ls) => [...ls, ls[3] ?? ''], line: 13, says: /wrote after closing/ },
    { name: 'the first lines removed', change: (ls) => ls.slice(2), line: 1, says: /starts at seq 3/ },
  ]
  it.each(TAMPER)('$name → FAIL at line $line', ({ change, line, says }) => {
    const { text } = chainedFile(10)
    const report = verify(join_(change(lines(text))))
    expect(report.ok).toBe(false)
    expect(report.problem?.line).toBe(line)
    expect(report.problem?.reason).toMatch(says)
  })

  it('a truncated tail is reported as torn, and a different key fails at line 1', () => {
    const { text } = chainedFile(5)
    expect(verify(text.slice(0, -40))).toMatchObject({
      ok: false,
      problem: { line: 7, kind: 'torn tail', reason: expect.stringMatching(/^torn tail: \d+ bytes after line 6, not sealed/) },
    })
    // Every line names its writer's key by id: another key is a wrong key, reported once.
    expect(verify(text, Buffer.from('x'.repeat(64)))).toMatchObject({
      ok: false,
      lines: 0,
      problems: [{ line: 1, reason: expect.stringMatching(/^wrong key: the line is sealed under audit key ak_.*; so are all 7 lines$/) }],
    })
  })

  it('writes a sealed checkpoint every N lines', () => {
    const path = join(tmp(), 'audit.jsonl')
    const log = new AuditLog(new FileAuditSink(path), undefined, KEY)
    log.checkpointEvery(5)
    for (let i = 0; i < 12; i++) log.record({ event: 'tool.call', decision: 'allow', reason: 'OK' })
    log.close()
    const text = readFileSync(path, 'utf8')
    const checkpoints = lines(text)
      .map((l) => JSON.parse(l) as { event: string; seq: number; lines?: number })
      .filter((l) => l.event === 'audit.checkpoint')
    expect(checkpoints.map((c) => [c.seq, c.lines])).toStrictEqual([
      [5, 5],
      [10, 10],
      [15, 15],
    ])
    expect(verify(text)).toMatchObject({ ok: true })
  })

  it('writers interleave (server and CLI) and each chain verifies', () => {
    const path = join(tmp(), 'audit.jsonl')
    const server = new AuditLog(new FileAuditSink(path), undefined, KEY)
    server.record({ event: 'a', decision: 'allow', reason: 'OK' })
    const cli = new AuditLog(new FileAuditSink(path), undefined, KEY)
    cli.record({ event: 'key.created', decision: 'allow', reason: 'OK' })
    server.record({ event: 'b', decision: 'allow', reason: 'OK' })
    cli.close()
    server.record({ event: 'c', decision: 'allow', reason: 'OK' })
    expect(verify(readFileSync(path, 'utf8'))).toMatchObject({ ok: true, writers: 2, open: [server.writer] })
    server.close()
  })

  it('rotation continues the chain across files; verifying only the newest file says earlier ones are missing', () => {
    const dir = tmp()
    const path = join(dir, 'audit.jsonl')
    const log = new AuditLog(new FileAuditSink(path, { maxBytes: 2000 }), undefined, KEY)
    for (let i = 0; i < 40; i++) log.record({ event: 'tool.call', decision: 'allow', reason: 'OK', pad: 'x'.repeat(50) })
    log.close()
    const rotated = readdirSync(dir)
      .filter((f) => f.startsWith('audit.jsonl.'))
      .sort()
    expect(rotated.length).toBeGreaterThan(2)
    const files = [...rotated, 'audit.jsonl'].map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8') }))
    expect(verifyAudit(files, KEY)).toMatchObject({ ok: true, lines: 42 })
    expect(verifyAudit(files.slice(-1), KEY)).toMatchObject({ ok: false, problem: { line: 1, reason: expect.stringMatching(/starts at seq/) } })
  })

  it('kill -9 under a write-heavy load leaves whole lines that verify; a torn line is reported, never accepted, even after a restart', async () => {
    const dir = tmp()
    const path = join(dir, 'audit.jsonl')
    const script = `
      import { AuditLog, FileAuditSink } from ${JSON.stringify(new URL('../../dist/audit/audit-log.js', import.meta.url).href)}
      const log = new AuditLog(new FileAuditSink(${JSON.stringify(path)}), undefined, Buffer.from('k'.repeat(64)))
      process.stdout.write('ready\\n')
      for (let i = 0; ; i++) log.record({ event: 'tool.call', decision: 'allow', reason: 'OK', i, pad: 'y'.repeat(i % 300) })
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()))
    // Killed mid-stream once enough lines are on disk, however fast this machine writes them.
    await waitFor(() => countLines(path) > 200, { what: 'the writer to put 200 lines on disk' })
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    const killed = verify(readFileSync(path, 'utf8'))
    expect(killed.ok).toBe(true)
    expect(killed.lines).toBeGreaterThan(100)
    expect(killed.open).toHaveLength(1)
    // Power loss mid-line: a fragment without its newline.
    appendFileSync(path, '{"ts":"2026-11-24T00:00:00.000Z","event":"tool.ca')
    expect(verify(readFileSync(path, 'utf8'))).toMatchObject({
      ok: false,
      lines: killed.lines,
      problem: { kind: 'torn tail', reason: expect.stringMatching(/^torn tail: 49 bytes/) },
    })
    // The next writer never appends to the fragment: it cuts it and seals the cut as a recorded gap.
    const restarted = new AuditLog(new FileAuditSink(path), undefined, KEY)
    restarted.record({ event: 'after', decision: 'allow', reason: 'OK' })
    restarted.close()
    const after = verify(readFileSync(path, 'utf8'))
    expect(after).toMatchObject({ ok: true, lines: killed.lines + 4, problems: [], gaps: [{ line: killed.lines + 2, detail: expect.stringMatching(/^torn tail of 49 bytes/) }] })
  })

  /**
   * Writer A (5 lines, then a torn line as a crash leaves it, terminated by the next writer as
   * before this repair existed), then writer B (12 lines) with a forged line inserted and an edit
   * below it: every problem is reported, and the lines between them verify.
   */
  function damagedFile(): { text: string; torn: number; forged: number; edited: number } {
    const path = join(tmp(), 'audit.jsonl')
    const a = new AuditLog(new FileAuditSink(path), undefined, KEY)
    for (let i = 0; i < 3; i++) a.record({ event: 'tool.call', decision: 'allow', reason: 'OK', i })
    const before = lines(readFileSync(path, 'utf8'))
    const b = new AuditLog(new FileAuditSink(path), undefined, KEY)
    for (let i = 0; i < 10; i++) b.record({ event: 'tool.call', decision: 'deny', reason: 'ERR_FORBIDDEN', i })
    b.close()
    const written = lines(readFileSync(path, 'utf8')).slice(before.length)
    const forged = `{"ts":"x","event":"tool.call","decision":"allow","reason":"OK","wid":"${b.writer}","seq":5,"mac":"${'0'.repeat(64)}"}`
    const ls = [...before, '{"ts":"2026-11-24T00:00:00.000Z","event":"tool.call","decision":"al', ...written.slice(0, 4), forged, ...written.slice(4)]
    const edited = ls.length - 3
    ls[edited - 1] = (ls[edited - 1] ?? '').replace('"decision":"deny"', '"decision":"allow"')
    return { text: join_(ls), torn: before.length + 1, forged: before.length + 6, edited }
  }

  it('every problem is reported, each as what it is, and verifying goes on past a torn line: an edit below it is found', () => {
    const { text, torn, forged, edited } = damagedFile()
    const report = verify(text)
    expect(report.problems).toStrictEqual([
      { file: 'audit.jsonl', line: torn, kind: 'torn', reason: expect.stringMatching(/^not a sealed audit line \(\d+ bytes, no MAC\): torn/) },
      { file: 'audit.jsonl', line: forged, kind: 'forged', reason: expect.stringMatching(/^MAC does not match/) },
      { file: 'audit.jsonl', line: edited, kind: 'forged', reason: expect.stringMatching(/^MAC does not match/) },
    ])
    const total = lines(text).length
    expect(report).toMatchObject({ ok: false, lines: total - 3, writers: 2, open: [expect.any(String)] })
    expect(report.trusted).toStrictEqual([
      { file: 'audit.jsonl', from: 1, to: torn - 1 },
      { file: 'audit.jsonl', from: torn + 1, to: forged - 1 },
      { file: 'audit.jsonl', from: forged + 1, to: edited - 1 },
      { file: 'audit.jsonl', from: edited + 1, to: total },
    ])
  })

  it('a failed write with the next line appended to it (the old disk-full tear) is reported, and that next line verifies', () => {
    const { text } = chainedFile(6)
    const ls = lines(text)
    ls[4] = `{"ts":"2026-11-24T00:00:00.000Z","event":"tool.call","deci${ls[4] ?? ''}`
    const report = verify(join_(ls))
    expect(report.problems).toStrictEqual([{ file: 'audit.jsonl', line: 5, kind: 'glued', reason: expect.stringMatching(/^a torn line of 58 bytes .* that next line verifies$/) }])
    expect(report).toMatchObject({
      lines: 8,
      trusted: [
        { from: 1, to: 4 },
        { from: 5, to: 8 },
      ],
    })
  })

  it('mcp-bastion audit verify prints every problem and the trusted lines, exit 1', () => {
    const dir = tmp()
    const { text, torn, forged, edited } = damagedFile()
    writeFileSync(join(dir, 'audit.jsonl'), text)
    writeFileSync(join(dir, 'audit.key'), KEY)
    const r = spawnSync(process.execPath, [BIN, 'audit', 'verify', 'audit.jsonl'], { cwd: dir, encoding: 'utf8' })
    expect(r.status).toBe(1)
    const total = lines(text).length
    expect(r.stdout.split('\n')).toStrictEqual([
      expect.stringMatching(new RegExp(`^FAIL audit\\.jsonl:${torn}: not a sealed audit line`)),
      expect.stringMatching(new RegExp(`^FAIL audit\\.jsonl:${forged}: MAC does not match`)),
      expect.stringMatching(new RegExp(`^FAIL audit\\.jsonl:${edited}: MAC does not match`)),
      `trusted: audit.jsonl lines 1-${torn - 1}, ${torn + 1}-${forged - 1}, ${forged + 1}-${edited - 1}, ${edited + 1}-${total}`,
      expect.stringMatching(new RegExp(`^FAIL: 3 problem\\(s\\); ${total - 3} line\\(s\\) from 2 writer\\(s\\) verify; 1 writer\\(s\\) without audit\\.closed`)),
      '',
    ])
  })

  it('mcp-bastion audit verify: OK on a fresh state directory, the line number after an edit', () => {
    const dir = tmp()
    const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: 'utf8' })
    expect(run(['keys', 'create', '--role', 'admin']).status).toBe(0)
    expect(run(['keys', 'create', '--role', 'reader']).status).toBe(0)
    const ok = run(['audit', 'verify', '.bastion/audit.jsonl'])
    expect(ok.status).toBe(0)
    expect(ok.stdout).toMatch(/^OK: 6 lines from 2 writer\(s\) verify\n$/)
    const file = join(dir, '.bastion', 'audit.jsonl')
    writeFileSync(file, readFileSync(file, 'utf8').replace('"roles":["reader"]', '"roles":["admin"]'))
    const bad = run(['audit', 'verify', '.bastion/audit.jsonl'])
    expect(bad.status).toBe(1)
    expect(bad.stdout).toMatch(/^FAIL \.bastion\/audit\.jsonl:5: MAC does not match/)
  })
})
