import { spawn, spawnSync } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, realpathSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuditLog, FileAuditSink } from '../../src/audit/audit-log.js'
import { verifyAudit } from '../../src/audit/chain.js'
import { cli } from '../cli/run.js'
import { serveProcess } from '../helpers/processes.js'
import { callModern } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

const KEY = Buffer.from('k'.repeat(64))
const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'bastion-faults-')))
const lineCount = (path: string): number => readFileSync(path, 'utf8').split('\n').length - 1

/** A real full disk: a tmpfs of `size`, mounted here (root with mount privileges only). */
function mountTmpfs(size: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined
  const dir = tmp()
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { encoding: 'utf8' })
  return r.status === 0 ? dir : undefined
}

describe('a full disk mid-load (a real 256 KiB tmpfs)', () => {
  let disk: string | undefined
  beforeAll(() => {
    disk = mountTmpfs('256k')
  })
  afterAll(() => {
    if (disk !== undefined) spawnSync('umount', [disk])
  })

  it('every write lands whole or not at all; when space returns the refused lines are recorded as a gap and everything verifies', () => {
    // A test that cannot build its full disk fails loudly: it must never pass without testing.
    if (disk === undefined) throw new Error('this test needs root with mount privileges for a real full filesystem (mount -t tmpfs)')
    const filler = join(disk, 'filler')
    writeFileSync(filler, Buffer.alloc(128 * 1024))
    const path = join(disk, 'state', 'audit.jsonl')
    mkdirSync(join(disk, 'state'))
    writeFileSync(join(disk, 'state', 'audit.key'), KEY)
    const log = new AuditLog(new FileAuditSink(path), undefined, KEY)
    let stored = 0
    let refused = 0
    const attempt = (i: number, pad: number): boolean => {
      try {
        log.record({ event: 'tool.call', decision: 'allow', reason: 'OK', i, pad: 'p'.repeat(pad) })
        stored += 1
        return true
      } catch (error) {
        expect(error).toMatchObject({ code: 'ERR_AUDIT_UNAVAILABLE' })
        refused += 1
        return false
      }
    }
    // Lines of varied length until the disk is full, then 20 more that cannot fit (over a page each).
    for (let i = 0; attempt(i, 300 + ((i * 137) % 900)); i++) expect(i).toBeLessThan(1000)
    for (let i = 0; i < 20; i++) expect(attempt(1000 + i, 5000)).toBe(false)
    // While full the file holds whole lines only: each refused line left nothing behind.
    const full = readFileSync(path, 'utf8')
    expect(full.endsWith('\n')).toBe(true)
    expect(
      full
        .split('\n')
        .slice(0, -1)
        .every((l) => JSON.parse(l) !== undefined),
    ).toBe(true)
    expect(lineCount(path)).toBe(stored + 1) // and audit.opened
    unlinkSync(filler) // space returns
    for (let i = 0; i < 50; i++) expect(attempt(2000 + i, 200)).toBe(true)
    log.close()
    const report = verifyAudit([{ name: 'audit.jsonl', text: readFileSync(path, 'utf8') }], KEY)
    expect(report).toMatchObject({ ok: true, problems: [], writers: 1, open: [], lines: stored + 3 })
    expect(report.gaps).toStrictEqual([
      expect.objectContaining({
        detail: expect.stringMatching(
          new RegExp(
            `^${refused} line\\(s\\) not stored from .* \\((ENOSPC|short audit write: \\d+ of \\d+ bytes)\\): their requests were refused; [1-9]\\d* partial write\\(s\\) cut back$`,
          ),
        ),
      }),
    ])
    expect(refused).toBe(21)
    // The CLI says the same: exit 0, the gap on a line of its own.
    const r = cli(disk, ['audit', 'verify', 'state/audit.jsonl'])
    expect(r.stdout).toMatch(/^GAP state\/audit\.jsonl:\d+: 21 line\(s\) not stored .*\nOK: \d+ lines from 1 writer\(s\) verify; 1 recorded gap\(s\) above\n$/)
    expect(r.status).toBe(0)
  })
})

describe('a full disk under a running server (a real 2 MiB tmpfs as its state folder)', () => {
  let disk: string | undefined
  beforeAll(() => {
    disk = mountTmpfs('2m')
  })
  afterAll(() => {
    if (disk !== undefined) spawnSync('umount', [disk])
  })

  it('requests fail closed with 503 while the disk is full, every answered request has its line, and the trail verifies after', async () => {
    // A test that cannot build its full disk fails loudly: it must never pass without testing.
    if (disk === undefined) throw new Error('this test needs root with mount privileges for a real full filesystem (mount -t tmpfs)')
    const dir = tmp()
    writeFileSync(join(dir, 'bastion.yaml'), `stateDir: ${join(disk, 'state')}\n`)
    const key = cli(dir, ['keys', 'create', '--role', 'admin', '--config', 'bastion.yaml']).stdout.trim()
    const server = await serveProcess(dir, ['--config', 'bastion.yaml'])
    const answered: string[] = []
    const statuses = new Map<number, number>()
    let phase: 'before' | 'full' | 'after' = 'before'
    const perPhase = { before: 0, full: 0, after: 0 }
    let stop = false
    // Four clients in a loop: the disk fills, then frees, while they run.
    const clients = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const { res, body } = await callModern(server.url, key, 'read_file', { path: 'missing.txt' })
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        perPhase[phase] += res.status === 503 ? 1 : 0
        if (res.status === 503) expect(body).toMatchObject({ error: { data: { code: 'ERR_AUDIT_UNAVAILABLE' } } })
        else answered.push(res.headers.get('x-request-id') ?? 'none')
      }
    })
    await waitFor(() => answered.length >= 50, { what: '50 answered requests' })
    const filler = join(disk, 'filler')
    const fd = openSync(filler, 'w')
    try {
      for (;;) writeSync(fd, Buffer.alloc(4096))
    } catch (error) {
      expect(error).toMatchObject({ code: 'ENOSPC' })
    } finally {
      closeSync(fd)
    }
    phase = 'full'
    await waitFor(() => perPhase.full >= 30, { what: '30 refusals while the disk is full' })
    unlinkSync(filler)
    phase = 'after'
    const resumed = answered.length
    await waitFor(() => answered.length >= resumed + 50, { what: '50 answered requests once space returned' })
    stop = true
    await Promise.all(clients)
    await server.stop()
    expect([...statuses.keys()].sort()).toStrictEqual([200, 503])
    const text = readFileSync(join(disk, 'state', 'audit.jsonl'), 'utf8')
    for (const id of answered) expect(text).toContain(`"requestId":"${id}"`)
    const r = cli(dir, ['audit', 'verify', join(disk, 'state', 'audit.jsonl')])
    expect(r.stdout).toMatch(/^(GAP [^\n]*: \d+ line\(s\) not stored [^\n]*\n)+OK: \d+ lines from 2 writer\(s\) verify; \d+ recorded gap\(s\) above\n$/)
    expect(r.status).toBe(0)
    // Each refused request is counted in a gap: none is missing from the record, none half-written.
    const counted = [...r.stdout.matchAll(/: (\d+) line\(s\) not stored/g)].reduce((sum, m) => sum + Number(m[1]), 0)
    expect(counted).toBe(statuses.get(503))
  }, 60_000)
})

describe('kill -9 mid-write, then a restart', () => {
  it('the torn tail is cut and sealed as an audit.repaired line by the next writer (the CLI); verify is OK apart from the reported gap', async () => {
    const dir = tmp()
    expect(cli(dir, ['keys', 'create', '--role', 'admin']).status).toBe(0)
    const path = join(dir, '.bastion', 'audit.jsonl')
    const script = `
      import { readFileSync } from 'node:fs'
      import { AuditLog, FileAuditSink } from ${JSON.stringify(new URL('../../dist/audit/audit-log.js', import.meta.url).href)}
      const key = Buffer.from(readFileSync(${JSON.stringify(join(dir, '.bastion', 'audit.key'))}, 'utf8').trim())
      const log = new AuditLog(new FileAuditSink(${JSON.stringify(path)}), undefined, key)
      process.stdout.write('ready\\n')
      for (let i = 0; ; i++) log.record({ event: 'tool.call', decision: 'allow', reason: 'OK', i, pad: 'y'.repeat(1000 + (i % 97) * 31) })
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()))
    await waitFor(() => lineCount(path) > 500, { what: 'the writer to put 500 lines on disk' })
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    // SIGKILL usually lands between two write(2)s, but Linux also ends a write that spans pages early
    // when a fatal signal is pending, which tears the last line by itself. When it did not, the tail
    // is torn as a power cut tears it, losing the end of the last line with the page cache.
    const killed = readFileSync(path)
    if (killed.at(-1) === 0x0a) truncateSync(path, killed.length - 100)
    const text = readFileSync(path, 'utf8')
    const whole = text.slice(0, text.lastIndexOf('\n') + 1)
    const tornBytes = Buffer.byteLength(text) - Buffer.byteLength(whole)
    const wholeLines = whole.split('\n').length - 1
    const before = cli(dir, ['audit', 'verify', '.bastion/audit.jsonl'])
    expect(before.status).toBe(1)
    expect(before.stdout).toMatch(new RegExp(`^FAIL \\.bastion/audit\\.jsonl:${wholeLines + 1}: torn tail: ${tornBytes} bytes after line ${wholeLines}, not sealed`))
    expect(before.stdout).toContain(`trusted: .bastion/audit.jsonl lines 1-${wholeLines}\n`)

    expect(cli(dir, ['keys', 'create', '--role', 'reader']).status).toBe(0)
    const after = readFileSync(path, 'utf8')
    expect(after.startsWith(whole)).toBe(true) // nothing before the fragment changed
    const repaired = JSON.parse(after.slice(whole.length).split('\n')[1] ?? '{}') as Record<string, unknown>
    expect(repaired).toMatchObject({ event: 'audit.repaired', cause: 'torn tail', from: Buffer.byteLength(whole), to: Buffer.byteLength(text), bytes: tornBytes })
    const r = cli(dir, ['audit', 'verify', '.bastion/audit.jsonl'])
    expect(r.stdout).toMatch(
      new RegExp(
        `^GAP \\.bastion/audit\\.jsonl:${wholeLines + 2}: torn tail of ${tornBytes} bytes .*\\nOK: ${wholeLines + 4} lines from 3 writer\\(s\\) verify; 1 recorded gap\\(s\\) above; 1 writer\\(s\\) without audit\\.closed`,
      ),
    )
    expect(r.status).toBe(0)
  })
})
