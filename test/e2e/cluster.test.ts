import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { freePort } from '../helpers/processes.js'
import { connect, JSON_HEADERS, MODERN_META, modernHeaders, rpcBody } from '../helpers/server.js'
import { PG_ADMIN_URL } from '../helpers/sql.js'
import { waitFor } from '../helpers/wait.js'

// `npm run cluster` as a user runs it: two replicas behind the proxy, on this machine's Redis and
// PostgreSQL (the test's own key prefix and audit table), the state folder shared.
const BIN = resolve('dist/cli/main.js')
const SCRIPT = resolve('scripts/cluster.mjs')
const RATE = 30
let cluster: ChildProcess
let dir: string
let proxy: string
let replicas: string[] = []
const table = `cluster_test_${process.pid}_${Date.now() % 100_000}`

beforeAll(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-cluster-')))
  const ports = [await freePort(), await freePort(), await freePort()]
  cluster = spawn(process.execPath, [SCRIPT], {
    env: { ...process.env, CLUSTER_DIR: dir, CLUSTER_PORTS: ports.join(','), CLUSTER_PREFIX: `test:${table}:`, CLUSTER_TABLE: table, CLUSTER_PRINCIPAL_RATE: `${RATE}/min` },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  await new Promise<void>((ok, fail) => {
    let out = ''
    cluster.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /cluster ready: (\S+) -> replica a (\S+), replica b (\S+)/.exec(out)
      if (m !== null) {
        proxy = m[1] ?? ''
        replicas = [m[2] ?? '', m[3] ?? '']
        ok()
      }
    })
    let err = ''
    cluster.stderr?.on('data', (c: Buffer) => {
      err += c.toString()
    })
    cluster.once('exit', (code) => fail(new Error(`cluster exited ${code}: ${out}${err}`)))
  })
}, 60_000)

afterAll(async () => {
  if (cluster.exitCode === null) {
    const exited = new Promise((r) => cluster.once('exit', r))
    cluster.kill('SIGTERM')
    await exited
  }
  const client = new pg.Client({ connectionString: PG_ADMIN_URL })
  await client.connect()
  await client.query(`DROP TABLE IF EXISTS ${table}`)
  await client.end()
})

const cli = (...args: string[]): string =>
  execFileSync(process.execPath, [BIN, ...args, '--config', join(dir, 'bastion.yaml')], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, BASTION_REDIS_URL: 'redis://127.0.0.1:6379', BASTION_PG_URL: PG_ADMIN_URL },
  })

/** A new key in the shared store, once both replicas accept it. */
async function newKey(): Promise<{ key: string; id: string }> {
  const key = cli('keys', 'create', '--role', 'reader', '--name', 'test').trim().split('\n').pop() ?? ''
  // One accepted call per replica exactly (a refusal before the key store reloads charges no principal bucket).
  const accepted = new Set<string>()
  await waitFor(
    async () => {
      for (const r of replicas) if (!accepted.has(r) && (await list(r, key)).status === 200) accepted.add(r)
      return accepted.size === replicas.length
    },
    { what: 'both replicas accept the new key', timeoutMs: 10_000 },
  )
  return { key, id: key.slice(4, 20) }
}

async function list(url: string, key: string): Promise<{ status: number; code: unknown; replica: string | null }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...JSON_HEADERS, ...modernHeaders('tools/list'), authorization: `Bearer ${key}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: MODERN_META } }),
  })
  const body = await rpcBody(res)
  return { status: res.status, code: (body.error as { data?: { code?: unknown } } | undefined)?.data?.code, replica: res.headers.get('x-bastion-replica') }
}

describe('npm run cluster: two replicas, one Redis, one PostgreSQL', () => {
  it('one principal limit across both replicas: exactly the rate is admitted, wherever the calls land', async () => {
    const { key } = await newKey()
    // newKey spent one call on each replica.
    const answers = []
    for (let i = 0; i < RATE + 4; i++) answers.push(await list(replicas[i % 2] ?? '', key))
    const admitted = answers.filter((a) => a.status === 200).length
    expect(admitted).toBe(RATE - 2)
    const refused = answers.filter((a) => a.status === 429)
    expect(refused.every((a) => a.code === 'ERR_RATE_LIMITED')).toBe(true)
    // Both replicas refused: the bucket is the shared one, not each process's own.
    expect(new Set(answers.map((a, i) => (a.status === 429 ? i % 2 : -1)).filter((r) => r >= 0)).size).toBe(2)
  })

  it('the proxy spreads calls over both replicas and keeps a 2025-11-25 session on the one that opened it', async () => {
    const { key } = await newKey()
    const seen = new Set([(await list(proxy, key)).replica, (await list(proxy, key)).replica])
    expect(seen).toEqual(new Set(['a', 'b']))
    const client = await connect(proxy, 'legacy', { authorization: `Bearer ${key}` })
    try {
      for (let i = 0; i < 2; i++) {
        const r = await client.callTool({ name: 'read_file', arguments: { path: 'notes/todo.txt' } })
        expect(JSON.stringify(r.content)).toContain('read_file on notes/todo.txt')
      }
    } finally {
      await client.close()
    }
  })

  it('a WebSocket connection passes through the proxy to a replica', async () => {
    const { key } = await newKey()
    const ws = new WebSocket(proxy.replace('http:', 'ws:').replace(/\/mcp$/, '/mcp/ws'), ['mcp', `bearer.${key}`])
    const answer = new Promise<string>((ok, fail) => {
      ws.once('message', (d) => ok(String(d)))
      ws.once('error', fail)
    })
    await new Promise((r) => ws.once('open', r))
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: MODERN_META } }))
    expect(await answer).toContain('"read_file"')
    ws.close()
  })

  it('a key revoked from the shared store is refused by both replicas', async () => {
    const { key, id } = await newKey()
    cli('keys', 'revoke', id)
    await waitFor(async () => (await Promise.all(replicas.map(async (r) => (await list(r, key)).code === 'ERR_AUTH_REVOKED'))).every(Boolean), {
      what: 'both replicas refuse the revoked key',
      timeoutMs: 10_000,
    })
  })

  it('both replicas write one audit table, and it verifies', async () => {
    const { key } = await newKey()
    await list(replicas[0] ?? '', key)
    await list(replicas[1] ?? '', key)
    const out = cli('audit', 'verify', '--postgres')
    const m = /^OK: (\d+) lines from (\d+) writer\(s\) verify/m.exec(out)
    expect(m, out).not.toBeNull()
    // Each replica is a writer with its own chain in the one table (the CLI's own lines go to the state folder).
    expect(Number(m?.[2])).toBe(2)
  })
})
