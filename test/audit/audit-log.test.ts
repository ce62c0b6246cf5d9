import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AuditFields, AuditLog, type AuditSink, FileAuditSink, MemoryAuditSink, toJsonLine } from '../../src/audit/audit-log.js'
import { publicText, SecurityError } from '../../src/errors.js'
import { createExchange } from '../../src/pipeline/exchange.js'

const FIXED = new Date('2026-01-02T03:04:05.678Z')
const clock = () => FIXED

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bastion-audit-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** The invariants of one JSON Lines line: one terminator, no raw line breaks, parses back to the record. */
function assertOneLine(line: string, expected: Record<string, unknown>): void {
  expect(line.endsWith('\n')).toBe(true)
  const body = line.slice(0, -1)
  expect(body).not.toMatch(/[\r\n\u2028\u2029\u0085]/)
  expect(JSON.parse(body)).toStrictEqual(expected)
}

describe('toJsonLine', () => {
  const NASTY = [
    { name: 'LF', value: 'a\nb' },
    { name: 'CR', value: 'a\rb' },
    { name: 'CRLF then a forged line', value: 'x\r\n{"ts":"1970","decision":"allow","reason":"OK"}' },
    { name: 'U+2028 line separator', value: 'a\u2028b' },
    { name: 'U+2029 paragraph separator', value: 'a\u2029b' },
    { name: 'NEL', value: 'a\u0085b' },
    { name: 'forged quotes', value: '","decision":"allow' },
    { name: 'forged object end', value: '"}\n{"decision":"allow"}' },
    { name: 'lone high surrogate', value: 'a\ud800b' },
    { name: 'lone low surrogate', value: '\udfff' },
    { name: 'backslashes', value: '\\","decision":"allow\\' },
    { name: 'NUL and escapes', value: '\u0000\u001b[31m' },
  ] as const

  it.each(NASTY)('$name in every string field stays one line and keeps decision deny', ({ value }) => {
    const record = {
      ts: FIXED.toISOString(),
      event: value,
      requestId: value,
      principal: value,
      tool: value,
      decision: 'deny',
      reason: value,
      roles: [value],
      [value]: value,
    } as const
    const line = toJsonLine(record)
    assertOneLine(line, record)
    expect(JSON.parse(line)).toMatchObject({ decision: 'deny' })
    expect(line.split('\n')).toHaveLength(2)
  })

  it('property: any strings in any fields give one valid JSON line that round-trips', () => {
    const nasty = fc.string({ unit: fc.constantFrom('\r', '\n', '\u2028', '\u2029', '\u0085', '"', ',', ':', '\\', '{', '}', '\ud800', '\udfff', 'a', ' ') })
    const text = fc.oneof(fc.string({ unit: 'binary' }), nasty)
    fc.assert(
      fc.property(text, text, text, fc.array(text, { maxLength: 3 }), fc.dictionary(text, text, { maxKeys: 4 }), (event, reason, principal, roles, extra) => {
        const fields: AuditFields = { ...extra, event, reason, principal, roles, decision: 'deny' }
        const sink = new MemoryAuditSink()
        new AuditLog(sink, clock).record(fields)
        expect(sink.lines).toHaveLength(1)
        const [line] = sink.lines
        expect(line).toBeDefined()
        if (line === undefined) return
        assertOneLine(line, { ts: FIXED.toISOString(), ...fields })
        expect(JSON.parse(line)).toMatchObject({ decision: 'deny', reason, event })
      }),
      { numRuns: 500 },
    )
  })
})

describe('AuditLog', () => {
  it('stamps the record with the injected clock first', () => {
    const sink = new MemoryAuditSink()
    new AuditLog(sink, clock).record({ event: 'e', decision: 'allow', reason: 'OK' })
    expect(sink.lines).toStrictEqual(['{"ts":"2026-01-02T03:04:05.678Z","event":"e","decision":"allow","reason":"OK"}\n'])
  })

  it('a sink whose write throws → ERR_AUDIT_UNAVAILABLE, cause kept for operators, nothing leaked to clients', () => {
    const failure = new Error('EIO: disk on fire at /var/log/bastion/audit.jsonl')
    const broken: AuditSink = {
      write() {
        throw failure
      },
      close() {},
    }
    const log = new AuditLog(broken, clock)
    let caught: unknown
    try {
      log.record({ event: 'e', decision: 'deny', reason: 'ERR_FORBIDDEN' })
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(SecurityError)
    if (!(caught instanceof SecurityError)) return
    expect(caught.code).toBe('ERR_AUDIT_UNAVAILABLE')
    expect(caught.cause).toBe(failure)
    expect(publicText(caught)).toBe('service unavailable')
  })

  it('an audit scope writes one line per request, from the exchange, and only once', async () => {
    const sink = new MemoryAuditSink()
    const log = new AuditLog(sink, clock)
    const x = createExchange({ requestId: 'req-00000001', transport: 'http', remoteAddress: '127.0.0.1', signal: new AbortController().signal, audit: log })
    x.principal = { id: 'key:0123456789abcdef', kind: 'api-key', name: 'ci', roles: ['reader'] }
    x.method = 'tools/call'
    x.message = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'read_file' } }
    x.audit.note({ rule: 'default-deny' })
    x.audit.fail(new SecurityError('ERR_FORBIDDEN', 'no rule'))
    await x.audit.commit()
    await x.audit.commit()
    expect(x.audit.committed).toBe(true)
    expect(sink.lines).toHaveLength(1)
    const [line] = sink.lines
    expect(JSON.parse(line ?? '')).toMatchObject({
      ts: FIXED.toISOString(),
      event: 'authz.denied',
      requestId: 'req-00000001',
      principal: 'key:0123456789abcdef',
      roles: ['reader'],
      method: 'tools/call',
      tool: 'read_file',
      decision: 'deny',
      reason: 'ERR_FORBIDDEN',
      transport: 'http',
      remote: '127.0.0.1',
      detail: 'no rule',
      rule: 'default-deny',
    })
  })

  it('an audit scope whose sink fails throws ERR_AUDIT_UNAVAILABLE', async () => {
    const log = new AuditLog(
      {
        write() {
          throw new Error('down')
        },
        close() {},
      },
      clock,
    )
    const x = createExchange({ requestId: 'req-00000002', transport: 'stdio', remoteAddress: undefined, signal: new AbortController().signal, audit: log })
    await expect(x.audit.commit()).rejects.toMatchObject({ code: 'ERR_AUDIT_UNAVAILABLE' })
  })
})

describe('FileAuditSink', () => {
  it('appends whole lines, across sink instances, to a 0600 file in a created directory', async () => {
    const path = join(dir, 'nested', 'logs', 'audit.jsonl')
    const values = ['plain', 'a\nb', 'c\r\nd', 'e\u2028f', '","decision":"allow', 'x'.repeat(200_000)]
    const first = new AuditLog(new FileAuditSink(path), clock)
    for (const reason of values.slice(0, 3)) first.record({ event: 'e', decision: 'deny', reason })
    first.close()
    const second = new AuditLog(new FileAuditSink(path), clock)
    for (const reason of values.slice(3)) second.record({ event: 'e', decision: 'deny', reason })
    second.close()

    const text = await readFile(path, 'utf8')
    expect(text.endsWith('\n')).toBe(true)
    const lines = text.slice(0, -1).split('\n')
    expect(lines).toHaveLength(values.length)
    expect(lines.map((l) => JSON.parse(l))).toStrictEqual(values.map((reason) => ({ ts: FIXED.toISOString(), event: 'e', decision: 'deny', reason })))
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('opening reads only; the first line cuts a torn tail and records the cut (range and hash) in the same write, never appending to it', async () => {
    const path = join(dir, 'torn', 'audit.jsonl')
    const firstLog = new AuditLog(new FileAuditSink(path), clock)
    firstLog.record({ event: 'first', decision: 'allow', reason: 'OK' })
    firstLog.close()
    const whole = await readFile(path, 'utf8')
    const fragment = '{"ts":"2026-01-02T03:04:05.678Z","event":"sec'
    await writeFile(path, whole + fragment)
    const sink = new FileAuditSink(path)
    expect(sink.lastLine()).toBe(whole.slice(0, -1))
    expect(await readFile(path, 'utf8')).toBe(whole + fragment)
    new AuditLog(sink, clock).record({ event: 'after', decision: 'allow', reason: 'OK' })
    sink.close()
    const [first, repaired, after, ...rest] = (await readFile(path, 'utf8')).split('\n')
    expect(rest).toStrictEqual([''])
    expect(`${first}\n`).toBe(whole)
    expect(JSON.parse(repaired ?? '')).toStrictEqual({
      ts: FIXED.toISOString(),
      event: 'audit.repaired',
      decision: 'error',
      reason: 'ERR_AUDIT_UNAVAILABLE',
      cause: 'torn tail',
      from: whole.length,
      to: whole.length + fragment.length,
      bytes: fragment.length,
      sha256: createHash('sha256').update(fragment).digest('hex'),
    })
    expect(JSON.parse(after ?? '')).toMatchObject({ event: 'after' })
  })

  it.runIf(existsSync('/dev/full'))('a real failing write (disk full) → ERR_AUDIT_UNAVAILABLE', () => {
    const sink = new FileAuditSink('/dev/full')
    const log = new AuditLog(sink, clock)
    try {
      expect(() => log.record({ event: 'e', decision: 'allow', reason: 'OK' })).toThrow(expect.objectContaining({ code: 'ERR_AUDIT_UNAVAILABLE' }))
    } finally {
      expect(() => sink.close()).toThrow() // fsync on /dev/full is refused too; the descriptor is still closed
    }
  })
})
