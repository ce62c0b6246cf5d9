import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { BIN, serveProcess } from '../helpers/processes.js'
import { initializeBody, MODERN_META, modernHeaders, post } from '../helpers/server.js'

/**
 * What an HTTP client can make a real `mcp-bastion serve` process hold: memory for request bodies
 * (before and after authentication), connections, and time (headers or a body sent slowly). The
 * server runs in a child process so that its resident memory is its own (/proc/<pid>/status).
 */

const stops: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop()
})

interface Served {
  readonly dir: string
  readonly port: number
  readonly pid: number
  readonly key: string
}

/** `keys create --role admin`, then `serve` with `server` settings (YAML lines under `server:`). */
async function serve(server: string[] = []): Promise<Served> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-body-')))
  writeFileSync(join(dir, 'bastion.yaml'), server.length === 0 ? '{}\n' : ['server:', ...server.map((l) => `  ${l}`), ''].join('\n'))
  const created = spawnSync(process.execPath, [BIN, 'keys', 'create', '--role', 'admin', '--name', 'admin', '--config', 'bastion.yaml'], { cwd: dir, encoding: 'utf8' })
  const key = created.stdout.trim()
  expect(key).toMatch(/^bst_/)
  const started = await serveProcess(dir, ['--config', 'bastion.yaml'])
  stops.push(started.stop)
  return { dir, port: Number(new URL(started.url).port), pid: started.child.pid ?? 0, key }
}

/** Resident memory of a process, in MiB: now and its peak since it started. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
  return { rss: Math.round(kib('VmRSS') / 1024), hwm: Math.round(kib('VmHWM') / 1024) }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** The audit lines of requests (those with a request id), once `count` of them are stored (or 5 s passed). */
async function requestLines(served: Served, count: number): Promise<Record<string, unknown>[]> {
  const read = (): Record<string, unknown>[] =>
    readFileSync(join(served.dir, '.bastion', 'audit.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => typeof l.requestId === 'string' && l.event !== 'alert')
  for (let waited = 0; waited < 5000 && read().length < count; waited += 100) await sleep(100)
  return read()
}

/** Every request has exactly one line, and `reason` has as many as the client saw `status`. */
async function expectAudited(served: Served, statuses: Map<number, number>, status: number, reason: string): Promise<void> {
  const lines = await requestLines(served, 500)
  expect(new Set(lines.map((l) => l.requestId)).size, 'one line per request').toBe(lines.length)
  expect(lines.length, 'every request audited').toBe(500)
  // A client whose connection closed before the answer arrived (status 0) saw nothing to count.
  expect(lines.filter((l) => l.reason === reason).length, `${reason} lines`).toBeGreaterThanOrEqual(statuses.get(status) ?? 0)
  expect(lines.filter((l) => l.reason === reason).length, `${reason} lines`).toBeLessThanOrEqual((statuses.get(status) ?? 0) + (statuses.get(0) ?? 0))
}

/** A 2026-07-28 `tools/list` padded to `bytes` (a valid JSON-RPC request a server must parse to answer). */
function paddedBody(bytes: number): Buffer {
  const shape = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: MODERN_META, pad: '' } })
  return Buffer.from(shape.replace('"pad":""', `"pad":"${'x'.repeat(bytes - shape.length)}"`))
}

function head(port: number, headers: Record<string, string>, length: number): string {
  const lines = [
    'POST /mcp HTTP/1.1',
    `host: 127.0.0.1:${port}`,
    'content-type: application/json',
    'accept: application/json, text/event-stream',
    `content-length: ${length}`,
    ...Object.entries({ ...modernHeaders('tools/list'), ...headers }).map(([k, v]) => `${k}: ${v}`),
  ]
  return `${lines.join('\r\n')}\r\n\r\n`
}

/**
 * POST `body` on a fresh connection from `localAddress`, all but its last byte at once and the
 * last byte when `release` resolves (so that every body is in flight together); resolves with the
 * status (0 when the connection closed before one came) once the server closed or answered.
 * `sent` resolves when the bytes before the last were written out, or the connection closed.
 */
function postRaw(port: number, localAddress: string, headers: Record<string, string>, body: Buffer, release: Promise<void>): { sent: Promise<void>; status: Promise<number> } {
  let onSent: () => void = () => undefined
  const sent = new Promise<void>((r) => {
    onSent = r
  })
  const status = new Promise<number>((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress })
    let text = ''
    let settled = false
    const statusOf = (): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
    const done = (): void => {
      onSent()
      if (settled) return
      settled = true
      socket.destroy()
      resolve(statusOf())
    }
    socket.on('error', done)
    socket.on('close', done)
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      // The answer is complete once its declared length arrived (the answers here are JSON).
      const at = text.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length: (\d+)/i.exec(text)?.[1]
      if (at >= 0 && length !== undefined && text.length - at - 4 >= Number(length)) done()
    })
    socket.on('connect', () => {
      socket.write(head(port, headers, body.byteLength))
      socket.write(body.subarray(0, -1), () => onSent())
      void release.then(() => {
        if (!socket.destroyed) socket.end(body.subarray(-1))
      })
    })
  })
  return { sent, status }
}

/**
 * 500 connections at once, spread over ten loopback addresses, each POSTing the same 1 MB body;
 * the last byte of each goes 3 s after all are sent (or 8 s), so the server holds together what it reads.
 */
async function flood(
  served: Served,
  headers: Record<string, string>,
): Promise<{ statuses: Map<number, number>; before: { rss: number; hwm: number }; after: { rss: number; hwm: number } }> {
  const body = paddedBody(1_000_000)
  const before = memoryOf(served.pid)
  let release: () => void = () => undefined
  const released = new Promise<void>((r) => {
    release = r
  })
  const posts = Array.from({ length: 500 }, (_, i) => postRaw(served.port, `127.0.0.${2 + (i % 10)}`, headers, body, released))
  // Sent is in the kernel's buffers, not yet the server's: give it time to read what it will.
  await Promise.race([Promise.all(posts.map((p) => p.sent)), sleep(5000)])
  await sleep(3000)
  release()
  const results = await Promise.all(posts.map((p) => p.status))
  const after = memoryOf(served.pid)
  const statuses = new Map<number, number>()
  for (const s of results) statuses.set(s, (statuses.get(s) ?? 0) + 1)
  return { statuses, before, after }
}

// What reading and parsing a body may cost at most, besides the budget: 1 MB bodies are read
// under the default 32 MiB in-flight budget (each read, decoded and parsed: ~3 times its size).
const PEAK_GROWTH_MIB = 200

describe('request bodies: memory is paid only for authenticated callers, within a budget', () => {
  it('500 concurrent unauthenticated 1 MB bodies: refused from the headers, unread; the peak grows by little', async () => {
    const served = await serve()
    const { statuses, before, after } = await flood(served, {})
    console.log(`unauthenticated: VmHWM ${before.hwm} → ${after.hwm} MiB, VmRSS ${before.rss} → ${after.rss} MiB, answers ${JSON.stringify([...statuses])}`)
    // Every answer that arrived is a refusal decided before the body (401, or the anonymous 429).
    for (const status of statuses.keys()) expect([0, 401, 429]).toContain(status)
    expect((statuses.get(401) ?? 0) + (statuses.get(429) ?? 0), 'answers that arrived').toBeGreaterThan(0)
    expect(after.hwm - before.hwm, 'peak RSS growth, MiB').toBeLessThan(PEAK_GROWTH_MIB)
    await expectAudited(served, statuses, 401, 'ERR_AUTH_MISSING')
  }, 90_000)

  it('500 concurrent authenticated 1 MB bodies: read within the in-flight budget, the rest refused unread; the peak stays bounded', async () => {
    const served = await serve()
    const { statuses, before, after } = await flood(served, { authorization: `Bearer ${served.key}` })
    console.log(`authenticated: VmHWM ${before.hwm} → ${after.hwm} MiB, VmRSS ${before.rss} → ${after.rss} MiB, answers ${JSON.stringify([...statuses])}`)
    expect(after.hwm - before.hwm, 'peak RSS growth, MiB').toBeLessThan(PEAK_GROWTH_MIB)
    expect(statuses.get(200) ?? 0, 'some were served').toBeGreaterThan(0)
    // server.maxBodyBytesInFlight (32 MiB): about 33 of these bodies at once; the rest are refused unread.
    expect(statuses.get(429) ?? 0, 'refused by the in-flight budget').toBeGreaterThan(0)
    await expectAudited(served, statuses, 429, 'ERR_CONCURRENCY_LIMIT')
  }, 90_000)
})

/** Open a connection from `localAddress`; resolves once connected, with when it closed (if it does). */
function open(port: number, localAddress: string): Promise<{ socket: Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress })
    const started = performance.now()
    const closed = new Promise<number>((r) => socket.once('close', () => r(performance.now() - started)))
    socket.on('error', () => undefined)
    socket.once('connect', () => resolve({ socket, closed }))
    socket.once('error', reject)
  })
}

/** Resolves with the time it took, or `undefined` if `closed` did not come within `ms`. */
const within = (closed: Promise<number>, ms: number): Promise<number | undefined> => Promise.race([closed, sleep(ms).then(() => undefined)])

describe('connections: capped in number, and timed out to the second', () => {
  const timing = ['headersTimeoutSeconds: 2', 'requestTimeoutSeconds: 3', 'keepAliveTimeoutSeconds: 2']

  it('past server.maxConnectionsPerAddress and server.maxConnections, a new connection is closed at once; the admitted ones stay open', async () => {
    const served = await serve(['maxConnections: 6', 'maxConnectionsPerAddress: 3', ...timing])
    const first = await Promise.all([1, 2, 3].map(() => open(served.port, '127.0.0.2')))
    const fourth = await open(served.port, '127.0.0.2')
    expect(await within(fourth.closed, 1000), 'the 4th connection from one address is closed').toBeDefined()
    const other = await Promise.all([1, 2, 3].map(() => open(served.port, '127.0.0.3')))
    const seventh = await open(served.port, '127.0.0.4')
    expect(await within(seventh.closed, 1000), 'the 7th connection is closed').toBeDefined()
    for (const c of [...first, ...other]) expect(c.socket.destroyed, 'an admitted connection').toBe(false)
    // A freed place is taken again.
    first[0]?.socket.destroy()
    await first[0]?.closed
    await sleep(100)
    const again = await open(served.port, '127.0.0.2')
    expect(await within(again.closed, 500), 'a connection in the freed place stays open').toBeUndefined()
    for (const c of [...first, ...other, again]) c.socket.destroy()
  }, 30_000)

  it('slowloris (headers dribbled), a slow body and an idle connection are closed within their timeout + 1 s', async () => {
    const served = await serve(timing)
    // Headers never finished: one header line every 300 ms.
    const loris = await open(served.port, '127.0.0.2')
    loris.socket.write(`POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:${served.port}\r\n`)
    const dribble = setInterval(() => loris.socket.write('x-a: b\r\n'), 300)
    // An authenticated body never finished: 10 bytes every 300 ms of a declared 1000.
    const slow = await open(served.port, '127.0.0.3')
    slow.socket.write(head(served.port, { authorization: `Bearer ${served.key}` }, 1000))
    const trickle = setInterval(() => slow.socket.write('x'.repeat(10)), 300)
    // Nothing sent at all.
    const idle = await open(served.port, '127.0.0.4')
    try {
      const [headers, body, silent] = await Promise.all([within(loris.closed, 6000), within(slow.closed, 6000), within(idle.closed, 6000)])
      console.log(`lifetimes: slowloris ${headers?.toFixed(0)} ms, slow body ${body?.toFixed(0)} ms, idle ${silent?.toFixed(0)} ms`)
      expect(headers, 'slowloris closed').toBeDefined()
      expect(headers ?? 0).toBeLessThan(3000 + 250)
      expect(body, 'slow body closed').toBeDefined()
      expect(body ?? 0).toBeLessThan(4000 + 250)
      expect(silent, 'idle connection closed').toBeDefined()
      expect(silent ?? 0).toBeLessThan(3000 + 250)
    } finally {
      clearInterval(dribble)
      clearInterval(trickle)
      for (const c of [loris, slow, idle]) c.socket.destroy()
    }
  }, 30_000)
})

describe('a 2025-11-25 GET stream', () => {
  it('sends its response headers at once, not with the first keep-alive', async () => {
    const served = await serve()
    const url = `http://127.0.0.1:${served.port}/mcp`
    const auth = { authorization: `Bearer ${served.key}` }
    const init = await post(url, initializeBody(), auth)
    await init.body?.cancel()
    const session = init.headers.get('mcp-session-id') ?? ''
    expect(session).not.toBe('')
    const h = { ...auth, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' }
    const initialized = await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, h)
    await initialized.body?.cancel()
    const abort = new AbortController()
    const started = performance.now()
    const stream = await Promise.race([fetch(url, { headers: { ...h, accept: 'text/event-stream' }, signal: abort.signal }), sleep(3000).then(() => undefined)])
    const waited = performance.now() - started
    console.log(`GET stream headers after ${waited.toFixed(0)} ms`)
    abort.abort()
    expect(stream?.status, 'the stream answered within 3 s').toBe(200)
    expect(stream?.headers.get('content-type')).toMatch(/^text\/event-stream/)
  }, 30_000)
})
