// One benchmark server per process, so that its CPU and memory are its own:
//   node bench/servers.mjs <variant>
// prints one JSON line {url, headers, body} (what a load generator must send), then serves.
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NodeStreamableHTTPServerTransport, toNodeHandler } from '@modelcontextprotocol/node'
import { McpServer as McpServerV1 } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport as TransportV1 } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server'
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/server/validators/ajv'
import { SignJWT } from 'jose'
import { pino } from 'pino'
import { z } from 'zod'
import { createBastion } from '../dist/index.js'

const variant = process.argv[2] ?? ''
const RESOURCE = 'https://bench.test/mcp'
const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'bench', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
}
const MODERN = {
  headers: {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2026-07-28',
    'mcp-method': 'tools/call',
    'mcp-name': 'echo',
  },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' }, _meta: META } }),
}
const LEGACY_CALL = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' } } })
const LEGACY_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' }
const echo = async ({ text }) => ({ content: [{ type: 'text', text }] })
const shared = new AjvJsonSchemaValidator()

function sdkServer(validator) {
  const server = new McpServer({ name: 'bench', version: '1' }, validator === undefined ? {} : { jsonSchemaValidator: validator })
  server.registerTool('echo', { description: 'echo', inputSchema: z.object({ text: z.string().max(100) }) }, echo)
  return server
}

function sdkV1Server() {
  const server = new McpServerV1({ name: 'bench', version: '1' })
  server.registerTool('echo', { description: 'echo', inputSchema: { text: z.string().max(100) } }, echo)
  return server
}

/** Node reads the body; SDK v1's Node transport takes it parsed. */
function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      } catch (error) {
        reject(error)
      }
    })
    req.on('error', reject)
  })
}

async function listen(handler) {
  const server = createServer(handler)
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${server.address().port}/mcp`
}

/** Open a 2025-11-25 session the way a client does; the load then reuses it. */
async function openSession(url, headers) {
  const init = await fetch(url, {
    method: 'POST',
    headers: { ...LEGACY_HEADERS, ...headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '1' } } }),
  })
  const session = init.headers.get('mcp-session-id')
  await init.text()
  if (session === null) throw new Error(`no session from ${url}: ${init.status}`)
  const sessionHeaders = { ...LEGACY_HEADERS, ...headers, 'mcp-session-id': session }
  await (await fetch(url, { method: 'POST', headers: sessionHeaders, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text()
  return { headers: sessionHeaders, body: LEGACY_CALL }
}

const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const jwt = await new SignJWT({ scope: 'mcp:tools' })
  .setProtectedHeader({ alg: 'ES256' })
  .setIssuer('https://idp.bench')
  .setSubject('bench')
  .setAudience(RESOURCE)
  .setIssuedAt()
  .setExpirationTime('2h')
  .sign(privateKey)

/** A bastion with the given layers; the rest off as far as bastion allows (API keys always authenticate). */
async function bastion(layers) {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-bench-')))
  writeFileSync(join(dir, 'idp.pem'), publicKey.export({ type: 'spki', format: 'pem' }))
  const huge = { rate: '100000000/s' }
  const config = {
    workspace: { enabled: false },
    vault: { enabled: false },
    pii: { mode: layers.pii ? 'mask' : 'allow' },
    roles: { admin: { permissions: ['*'] }, caller: { permissions: layers.policy ? [] : ['echo'] } },
    tools: { echo: { permissions: ['echo'] } },
    limits: {
      principal: huge,
      anonymous: huge,
      concurrency: { perPrincipal: 100_000, global: 100_000 },
      ...(layers.redis ? { backend: 'redis', redis: { url: { env: 'BENCH_REDIS_URL' }, keyPrefix: `bench:${process.pid}:` } } : {}),
    },
    policy: layers.policy
      ? { rules: [{ id: 'short-echo', effect: 'allow', subjects: { roles: ['caller'] }, targets: { tools: ['echo'] }, when: 'size(args.text) <= 100 && principal.id != ""' }] }
      : { rules: [] },
    auth: {
      resource: RESOURCE,
      tokenCache: { maxEntries: layers.jwtNoCache ? 0 : 10_000 },
      issuers: [{ name: 'idp', issuer: 'https://idp.bench', algorithms: ['ES256'], keys: [{ pem: { file: 'idp.pem' } }], defaultRoles: ['caller'] }],
    },
  }
  const noLimiter = { backend: 'memory', take: async () => ({ admitted: true }), close: async () => {} }
  process.env.BENCH_REDIS_URL = 'redis://127.0.0.1:6379'
  const b = await createBastion({
    baseDir: dir,
    logger: pino({ level: 'silent' }),
    config,
    // No file: the audit layer is measured on its own; a discarding sink otherwise.
    ...(layers.audit ? {} : { auditSink: { write() {}, close() {} } }),
    ...(layers.memory || layers.redis ? {} : { rateLimiter: noLimiter }),
  })
  b.tool({ name: 'echo', description: 'echo', input: z.object({ text: z.string().max(100) }), run: echo })
  const running = await b.listen({ host: '127.0.0.1', port: 0 })
  const key = b.keys.create({ name: 'bench', roles: ['caller'], expiresAt: null }).key
  const credential = layers.jwt || layers.jwtNoCache ? jwt : key
  if (layers.legacy) return { url: running.url, ...(await openSession(running.url, { authorization: `Bearer ${credential}` })) }
  return { url: running.url, headers: { ...MODERN.headers, authorization: `Bearer ${credential}` }, body: MODERN.body }
}

const VARIANTS = {
  // The floor: node:http, one JSON parse, a canned answer; no MCP at all.
  floor: async () => {
    const url = await listen(async (req, res) => {
      const message = await readJson(req)
      const text = message.params?.arguments?.text
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text }] } }))
    })
    return { url, headers: { 'content-type': 'application/json' }, body: LEGACY_CALL }
  },
  // SDK v1, one server and transport for a 2025-11-25 session, as its README shows.
  'sdk1-session': async () => {
    const transport = new TransportV1({ sessionIdGenerator: () => crypto.randomUUID() })
    await sdkV1Server().connect(transport)
    const url = await listen(async (req, res) => transport.handleRequest(req, res, await readJson(req)))
    return { url, ...(await openSession(url, {})) }
  },
  // SDK v1 stateless, as its README's stateless example: a new server and transport per request.
  'sdk1-stateless': async () => {
    const url = await listen(async (req, res) => {
      const body = await readJson(req)
      const server = sdkV1Server()
      const transport = new TransportV1({ sessionIdGenerator: undefined, enableJsonResponse: true })
      res.on('close', () => {
        transport.close()
        server.close()
      })
      await server.connect(transport)
      await transport.handleRequest(req, res, body)
    })
    return { url, headers: LEGACY_HEADERS, body: LEGACY_CALL }
  },
  'sdk-stateless-new': async () => ({ url: await listen(toNodeHandler(createMcpHandler(() => sdkServer(undefined)))), ...MODERN }),
  'sdk-stateless-shared': async () => ({ url: await listen(toNodeHandler(createMcpHandler(() => sdkServer(shared)))), ...MODERN }),
  'sdk-session': async () => {
    const transport = new NodeStreamableHTTPServerTransport({ sessionIdGenerator: () => crypto.randomUUID() })
    await sdkServer(shared).connect(transport)
    const url = await listen((req, res) => transport.handleRequest(req, res))
    return { url, ...(await openSession(url, {})) }
  },
  'bastion-minimal': () => bastion({}),
  'bastion-jwt': () => bastion({ jwt: true }),
  'bastion-jwt-nocache': () => bastion({ jwtNoCache: true }),
  'bastion-policy': () => bastion({ policy: true }),
  'bastion-memory-limiter': () => bastion({ memory: true }),
  'bastion-redis-limiter': () => bastion({ redis: true }),
  'bastion-audit': () => bastion({ audit: true }),
  'bastion-pii': () => bastion({ pii: true }),
  'bastion-full': () => bastion({ policy: true, memory: true, audit: true, pii: true }),
  'bastion-minimal-legacy': () => bastion({ legacy: true }),
  'bastion-full-legacy': () => bastion({ policy: true, memory: true, audit: true, pii: true, legacy: true }),
  fastmcp: async () => {
    const { FastMCP } = await import('fastmcp')
    const apiKey = 'bench-key-0123456789abcdef0123456789abcdef'
    const server = new FastMCP({
      name: 'bench',
      version: '1.0.0',
      authenticate: async (request) => {
        if (request.headers['x-api-key'] !== apiKey) throw new Response(null, { status: 401, statusText: 'Unauthorized' })
        return { id: 'bench' }
      },
    })
    server.addTool({ name: 'echo', description: 'echo', parameters: z.object({ text: z.string().max(100) }), execute: async ({ text }) => text })
    const port = 20000 + (process.pid % 20000)
    await server.start({ transportType: 'httpStream', httpStream: { port, host: '127.0.0.1', endpoint: '/mcp' } })
    const url = `http://127.0.0.1:${port}/mcp`
    return { url, ...(await openSession(url, { 'x-api-key': apiKey })) }
  },
}

const make = VARIANTS[variant]
if (make === undefined) {
  process.stderr.write(`unknown variant ${variant}; one of ${Object.keys(VARIANTS).join(', ')}\n`)
  process.exit(2)
}
const target = await make()
process.stdout.write(`BENCH_TARGET ${JSON.stringify(target)}\n`)
// SIGTERM exits normally, so that --cpu-prof writes its profile.
process.on('SIGTERM', () => process.exit(0))
// Keep the process alive until the runner kills it; the soak asks for heap figures.
if (process.env.BENCH_HEAP === '1') setInterval(() => process.stdout.write(`BENCH_HEAP ${process.memoryUsage().heapUsed} ${process.memoryUsage().rss}\n`), 5_000)
else setInterval(() => {}, 1 << 30)
