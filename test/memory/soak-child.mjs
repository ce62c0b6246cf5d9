// Drives N tool calls through one bastion process and reports heap use. Run with --expose-gc.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { z } from 'zod'
import { createBastion } from '../../dist/index.js'

const total = Number(process.argv[2] ?? 50_000)
const concurrency = 8
const dir = mkdtempSync(join(tmpdir(), 'bastion-soak-'))
const bastion = await createBastion({
  baseDir: dir,
  logger: pino({ level: 'silent' }),
  announce: false,
  config: { auth: { reloadIntervalMs: 1000 }, limits: { principal: { rate: '1000000/s' }, anonymous: { rate: '1000000/s' } } },
})
bastion.tool({
  name: 'echo',
  description: 'echo',
  input: z.strictObject({ text: z.string().max(100) }),
  permissions: ['echo'],
  run: async ({ text }) => ({ content: [{ type: 'text', text }] }),
})
const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
const { key } = bastion.keys.create({ name: 'soak', roles: ['admin'], expiresAt: null })
const base = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}` }
const meta = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 's', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
}

const init = await fetch(running.url, {
  method: 'POST',
  headers: base,
  body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 's', version: '1' } } }),
})
const session = init.headers.get('mcp-session-id')
await init.text()
const legacyHeaders = { ...base, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' }
const modernHeaders = { ...base, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' }

let failures = 0
async function call(i) {
  const legacy = process.env.SOAK_MODE === 'legacy' ? true : process.env.SOAK_MODE === 'modern' ? false : i % 2 === 0
  const params = { name: 'echo', arguments: { text: `hello ${i}` }, ...(legacy ? {} : { _meta: meta }) }
  const res = await fetch(running.url, {
    method: 'POST',
    headers: legacy ? legacyHeaders : modernHeaders,
    body: JSON.stringify({ jsonrpc: '2.0', id: i + 1, method: 'tools/call', params }),
  })
  const text = await res.text()
  if (res.status !== 200 || !text.includes(`hello ${i}`)) failures++
}
async function drive(from, to) {
  let next = from
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to) await call(next++)
    }),
  )
}
const heap = () => {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}
const warm = Math.min(5000, Math.floor(total / 10))
await drive(0, warm)
const before = heap()
const started = performance.now()
await drive(warm, total)
const seconds = (performance.now() - started) / 1000
const after = heap()
await running.close()
await bastion.close()
process.stdout.write(`${JSON.stringify({ calls: total - warm, failures, before, after, growthBytes: after - before, perCallBytes: (after - before) / (total - warm), seconds })}\n`)
process.exit(0)
