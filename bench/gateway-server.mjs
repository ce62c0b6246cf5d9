// A bastion fronting one upstream, for bench/gateway.mjs:
//   node bench/gateway-server.mjs stdio            (the drift fixture over stdio)
//   node bench/gateway-server.mjs http URL         (a Streamable HTTP upstream)
// prints one JSON line {url, key, upstreamPid}, then serves. Every layer on: API key, RBAC, rate
// limits (memory), audit to a file, PII masking, argument validation against the upstream's schema.
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { z } from 'zod'
import { createBastion } from '../dist/index.js'

const [kind, upstreamUrl] = process.argv.slice(2)
const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bench-gateway-')))
const defs = join(dir, 'defs.json')
writeFileSync(defs, JSON.stringify([{ name: 'echo', description: 'Echo.', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } }]))
const drift = new URL('../test/fixtures/upstreams/drift-server.mjs', import.meta.url).pathname
const upstreams =
  kind === 'none'
    ? {}
    : kind === 'stdio'
      ? { up: { command: process.execPath, args: [drift], env: { DRIFT_DEFS: { env: 'BENCH_DEFS' } }, pin: 'off' } }
      : { up: { url: upstreamUrl, pin: 'off' } }
const bastion = await createBastion({
  baseDir: dir,
  announce: false,
  logger: pino({ level: 'silent' }),
  env: { ...process.env, BENCH_DEFS: defs },
  config: { upstreams, limits: { principal: { rate: '100000000/min' }, anonymous: { rate: '100000000/min' } }, alerts: { rules: [] } },
})
// `none`: the same echo as a tool of bastion's own, the gateway's floor.
if (kind === 'none')
  bastion.tool({
    name: 'up__echo',
    description: 'Echo.',
    input: z.object({ text: z.string() }),
    run: async (args) => ({ content: [{ type: 'text', text: JSON.stringify(args) }] }),
  })
const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
const key = bastion.keys.create({ name: 'bench', roles: ['admin'], expiresAt: null }).key
process.stdout.write(`${JSON.stringify({ url: running.url, key, upstreamPid: bastion.gateway?.report()[0]?.pid ?? null })}\n`)
