import { mkdtempSync, readFileSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { pino } from 'pino'
import { type Bastion, type BastionConfigInput, createBastion, type RunningServer } from '../../src/index.js'

export interface TestServer {
  readonly bastion: Bastion
  readonly running: RunningServer
  readonly url: string
  readonly dir: string
  readonly auditPath: string
  /** Keys by role, created in the store. */
  readonly keys: { admin: string; reader: string; nobody: string }
  /** Audit lines written so far, parsed. */
  audit(): Record<string, unknown>[]
  /** Audit lines written after `mark()`. */
  mark(): () => Record<string, unknown>[]
  close(): Promise<void>
}

/** A real bastion on 127.0.0.1:0 in a fresh state directory, with keys for three roles. */
export async function startServer(config: BastionConfigInput = {}, setup?: (b: Bastion) => void, prepare?: (dir: string) => void): Promise<TestServer> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-test-')))
  prepare?.(dir)
  const { bastion, running } = await listenIn(dir, config, setup)
  const admin = bastion.keys.create({ name: 'admin', roles: ['admin'], expiresAt: null }).key
  const reader = bastion.keys.create({ name: 'reader', roles: ['reader'], expiresAt: null }).key
  const nobody = bastion.keys.create({ name: 'nobody', roles: ['nobody'], expiresAt: null }).key
  return testServer(dir, bastion, running, { admin, reader, nobody })
}

/**
 * The same server started again on its state directory (keys, audit log, embedded database), as
 * after a restart: `server` must be closed first. Its keys still work; the audit log continues.
 */
export async function reopenServer(server: TestServer, config: BastionConfigInput = {}, setup?: (b: Bastion) => void): Promise<TestServer> {
  const { bastion, running } = await listenIn(server.dir, config, setup)
  return testServer(server.dir, bastion, running, server.keys)
}

async function listenIn(dir: string, config: BastionConfigInput, setup?: (b: Bastion) => void): Promise<{ bastion: Bastion; running: RunningServer }> {
  const bastion = await createBastion({
    baseDir: dir,
    logger: pino({ level: 'silent' }),
    // Keys are made below, for three roles: no first-run key, no start-up lines in the test output.
    announce: false,
    config: {
      ...config,
      roles: config.roles ?? { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] } },
      auth: { reloadIntervalMs: 0, ...config.auth },
      // Alert lines would add to the one-line-per-request counts other tests assert; test/audit/alerts.test.ts turns them on.
      alerts: config.alerts ?? { rules: [] },
    },
  })
  setup?.(bastion)
  return { bastion, running: await bastion.listen({ host: '127.0.0.1', port: 0 }) }
}

function testServer(dir: string, bastion: Bastion, running: RunningServer, keys: TestServer['keys']): TestServer {
  const auditPath = join(dir, '.bastion', 'audit.jsonl')
  const audit = (): Record<string, unknown>[] =>
    readFileSync(auditPath, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  return {
    bastion,
    running,
    url: running.url,
    dir,
    auditPath,
    keys,
    audit,
    mark() {
      const start = audit().length
      return () => audit().slice(start)
    },
    async close() {
      await bastion.close()
    },
  }
}

export type Era = 'legacy' | 'modern'

/** The SDK's real MCP client over Streamable HTTP, in either protocol era. */
export async function connect(url: string, era: Era, headers: Record<string, string>): Promise<Client> {
  const client = new Client({ name: 'bastion-test', version: '1.0.0' }, era === 'modern' ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {})
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } })
  await client.connect(transport)
  return client
}

export const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

/** A raw JSON-RPC POST. */
export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { ...JSON_HEADERS, ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
}

/** A legacy (2025-11-25) initialize request body. */
export function initializeBody(id = 1): unknown {
  return { jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }
}

/** Read a JSON-RPC response from a JSON or single-event SSE body. */
export async function rpcBody(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text()
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) {
    const data = text
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => l.slice(6))
      .filter((l) => l.length > 0)
      .at(-1)
    return JSON.parse(data ?? '{}') as Record<string, unknown>
  }
  return JSON.parse(text) as Record<string, unknown>
}

/** `_meta` every 2026-07-28 request carries. */
export const MODERN_META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
}

/** Routing headers of a 2026-07-28 request. */
export const modernHeaders = (method: string, name?: string): Record<string, string> => ({
  'mcp-protocol-version': '2026-07-28',
  'mcp-method': method,
  ...(name === undefined ? {} : { 'mcp-name': name }),
})

/** A 2026-07-28 `tools/call` body. */
export const modernCall = (name: string, args: unknown, id = 7): unknown => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: MODERN_META } })

/** POST a 2026-07-28 `tools/call` with a key; returns the response and its parsed body. */
export async function callModern(
  url: string,
  key: string,
  name: string,
  args: unknown,
  init: { signal?: AbortSignal; id?: number } = {},
): Promise<{ res: Response; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', name), authorization: `Bearer ${key}` },
    body: JSON.stringify(modernCall(name, args, init.id ?? 7)),
    ...(init.signal === undefined ? {} : { signal: init.signal }),
  })
  return { res, body: await rpcBody(res) }
}
