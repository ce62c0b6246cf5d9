import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { type SecurityErrorCode, WIRE } from '../../src/errors.js'
import { freePort } from '../helpers/processes.js'
import { JSON_HEADERS, MODERN_META, modernCall, modernHeaders, post } from '../helpers/server.js'
import { PG_ADMIN_URL } from '../helpers/sql.js'
import { waitFor } from '../helpers/wait.js'
import { messagesOf, nodeRequest, type RawResponse, rawRequest, startWireServer, type WireServer } from '../helpers/wire-server.js'
import { coverageGaps, expectRow, NOT_REACHABLE, type RpcMessage, type Seen, type Transport } from '../helpers/wire-table.js'
import { type WireUpstreams, wireUpstreams } from '../helpers/wire-upstreams.js'

/**
 * Pins what leaves the process over HTTP: for every row of the WIRE table, a real server is driven
 * into that refusal in each protocol era it can occur in (2026-07-28 stateless POSTs, 2025-11-25
 * sessions), and the status, headers, JSON-RPC body and the one audit line are read back.
 */

const RESOURCE = 'https://mcp.test/mcp'
const ISSUER = 'https://issuer.wire.test'
const JWT_SECRET = 'wT9cV2xQ7mB4nK8pL3zR6sF1hD5gJ0aYe4Ur'
const FIXTURES = new URL('../fixtures/isolated-tools.mjs', import.meta.url)
const WRITE_CAPS = { ...MODERN_META, 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } }

let main: WireServer
let tight: WireServer
let upstreams: WireUpstreams
const secrets: string[] = []
const forbidden = (): string[] => [main.dir, tight.dir, upstreams.dir, ...secrets.map((k) => k.slice(21)), JWT_SECRET]

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` })

/** A fresh key in `server`'s store (kept from the wire by the leak check). */
function key(server: WireServer, roles: string[], expiresAt: Date | null = null): string {
  const k = server.key(roles, expiresAt)
  secrets.push(k)
  return k
}

const modernBody = (method: string, params: Record<string, unknown> = {}, id: number | string = 1): RpcMessage => ({
  jsonrpc: '2.0',
  id,
  method,
  params: { ...params, _meta: params._meta ?? MODERN_META },
})

function legacyInit(id: number | string = 0, capabilities: Record<string, unknown> = {}): RpcMessage {
  return { jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities, clientInfo: { name: 'wire', version: '1' } } }
}

/** A 2025-11-25 session of `key`: initialize, then notifications/initialized; the headers of its requests. */
async function session(server: WireServer, k: string, capabilities: Record<string, unknown> = {}): Promise<Record<string, string>> {
  const init = await post(server.url, legacyInit(0, capabilities), bearer(k))
  const id = init.headers.get('mcp-session-id')
  await init.text()
  if (init.status !== 200 || id === null) throw new Error(`initialize answered ${init.status}`)
  const headers = { ...bearer(k), 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' }
  await (await post(server.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)).text()
  return headers
}

/** What a fetch response carried: status, headers, every byte, and the answer to `rpcId`. */
async function fromResponse(transport: Transport, res: Response, since: () => Record<string, unknown>[], rpcId?: unknown): Promise<Seen> {
  const raw = { text: '' }
  let message: RpcMessage | undefined
  for await (const m of messagesOf(res, raw)) {
    if (m.method !== undefined) continue
    message = m
    if (rpcId === undefined || m.id === rpcId) break
  }
  return { transport, status: res.status, headers: res.headers, text: raw.text, message, requestId: res.headers.get('x-request-id') ?? '', audit: since() }
}

/** The same from a node:http or raw-socket response (JSON body). */
function fromRaw(transport: Transport, res: RawResponse, since: () => Record<string, unknown>[]): Seen {
  let message: RpcMessage | undefined
  try {
    message = JSON.parse(res.text) as RpcMessage
  } catch {
    message = undefined
  }
  return { transport, status: res.status, headers: res.headers, text: res.text, message, requestId: res.headers.get('x-request-id') ?? '', audit: since() }
}

/** POST one message in an era: 2026-07-28 with its routing headers, 2025-11-25 on a session (or none). */
async function send(
  transport: Transport,
  server: WireServer,
  body: RpcMessage | string,
  headers: Record<string, string>,
  route?: { method: string; name?: string },
): Promise<Seen> {
  const since = server.mark()
  const routing = transport === 'http-modern' && route !== undefined ? modernHeaders(route.method, route.name) : {}
  const res = await post(server.url, body, { ...routing, ...headers })
  return fromResponse(transport, res, since, typeof body === 'string' ? undefined : body.id)
}

/** A `tools/call` in an era, by a principal: 2026-07-28 stateless, or on a fresh 2025-11-25 session. */
async function call(transport: Transport, server: WireServer, k: string, name: string, args: unknown, meta?: Record<string, unknown>): Promise<Seen> {
  if (transport === 'http-modern') {
    const body = modernBody('tools/call', { name, arguments: args, ...(meta === undefined ? {} : { _meta: meta }) }, 7)
    return send(transport, server, body, bearer(k), { method: 'tools/call', name })
  }
  const h = await session(server, k)
  return send(transport, server, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: args } }, h)
}

/** Any request in an era: `params` gets the 2026-07-28 envelope, or goes on a 2025-11-25 session. */
async function request(transport: Transport, server: WireServer, k: string, method: string, params: Record<string, unknown>, name?: string): Promise<Seen> {
  if (transport === 'http-modern') return send(transport, server, modernBody(method, params, 5), bearer(k), { method, ...(name === undefined ? {} : { name }) })
  const h = await session(server, k)
  return send(transport, server, { jsonrpc: '2.0', id: 5, method, params }, h)
}

/** An unauthenticated-stage refusal: the era only shapes the body (a 2026-07-28 call, or a 2025-11-25 initialize). */
function eraBody(transport: Transport): { body: RpcMessage; headers: Record<string, string> } {
  return transport === 'http-modern' ? { body: modernBody('tools/list', {}, 3), headers: modernHeaders('tools/list') } : { body: legacyInit(3), headers: {} }
}

async function refused(transport: Transport, server: WireServer, headers: Record<string, string>, body?: RpcMessage | string, url = server.url): Promise<Seen> {
  const since = server.mark()
  const shaped = eraBody(transport)
  const res = await post(url, body ?? shaped.body, { ...shaped.headers, ...headers })
  return fromResponse(transport, res, since)
}

/** A JWT from the trusted HS256 issuer. */
async function jwt(scope: string): Promise<string> {
  const token = await new SignJWT({ scope, roles: ['admin'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(ISSUER)
    .setAudience(RESOURCE)
    .setSubject('svc')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(JWT_SECRET))
  secrets.push(`${'x'.repeat(21)}${token.split('.')[2] ?? ''}`)
  return token
}

/** A 2025-11-25 tools/call whose tool asks the client (elicitation on the POST's stream); `answer` replies. */
async function legacyElicited(server: WireServer, k: string, name: string, args: unknown, answer: () => unknown): Promise<Seen> {
  const h = await session(server, k, { elicitation: { form: {} } })
  const since = server.mark()
  const res = await post(server.url, { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name, arguments: args } }, h)
  const raw = { text: '' }
  let message: RpcMessage | undefined
  for await (const m of messagesOf(res, raw)) {
    if (m.method === 'elicitation/create') {
      await (await post(server.url, { jsonrpc: '2.0', id: m.id, result: answer() }, h)).text()
      continue
    }
    if (m.id === 8 && m.method === undefined) {
      message = m
      break
    }
  }
  return {
    transport: 'http-legacy',
    status: res.status,
    headers: res.headers,
    text: raw.text,
    message,
    requestId: res.headers.get('x-request-id') ?? '',
    audit: since(),
    rounds: 2,
  }
}

/** The first 2026-07-28 round of a confirming tool: its sealed state. */
async function firstRound(server: WireServer, k: string, name: string, args: unknown): Promise<string> {
  const res = await post(server.url, modernBody('tools/call', { name, arguments: args, _meta: WRITE_CAPS }, 9), { ...bearer(k), ...modernHeaders('tools/call', name) })
  const body = (await res.json()) as { result?: { resultType?: string; requestState?: string } }
  if (body.result?.resultType !== 'input_required' || body.result.requestState === undefined) throw new Error(`no input_required round: ${JSON.stringify(body)}`)
  return body.result.requestState
}

async function modernRound2(server: WireServer, k: string, name: string, args: unknown, requestState: string, inputResponses: unknown): Promise<Seen> {
  const body = modernBody('tools/call', { name, arguments: args, requestState, inputResponses, _meta: WRITE_CAPS }, 10)
  return send('http-modern', server, body, bearer(k), { method: 'tools/call', name })
}

/** An upstream of `main` as its gateway reports it now. */
const upstream = (name: string) => main.bastion.gateway?.report().find((u) => u.name === name)

/** Two calls of `nap` at once by one principal (concurrency cap 1): the second is refused. */
async function overCap(transport: Transport): Promise<Seen> {
  const k = key(main, ['admin'])
  const first = call(transport, main, k, 'nap', { ms: 600 })
  await waitFor(() => main.bastion.caps.total === 1, { what: 'the first nap to hold the one slot' })
  const second = await call(transport, main, k, 'nap', { ms: 0 })
  await first
  return second
}

/** Fail authentication from 127.0.0.2 until the address is blocked, then send one more request. */
async function blocked(transport: Transport): Promise<Seen> {
  const bogus = `bst_${'0'.repeat(16)}_${'A'.repeat(43)}`
  const shaped = eraBody(transport)
  const attempt = (auth: string): Promise<RawResponse> =>
    nodeRequest(tight.url, { headers: { ...JSON_HEADERS, ...shaped.headers, authorization: `Bearer ${auth}` }, body: JSON.stringify(shaped.body), localAddress: '127.0.0.2' })
  for (let i = 0; i < 3; i++) if ((await attempt(bogus)).status === 429) break
  const since = tight.mark()
  return fromRaw(transport, await attempt(key(tight, ['admin'])), since)
}

interface Driver {
  readonly code: SecurityErrorCode
  readonly transport: Transport
  readonly name: string
  readonly run: () => Promise<Seen>
}

const BOTH: readonly Transport[] = ['http-modern', 'http-legacy']
const both = (code: SecurityErrorCode, name: string, run: (t: Transport) => Promise<Seen>): Driver[] =>
  BOTH.map((transport) => ({ code, transport, name, run: () => run(transport) }))
const modern = (code: SecurityErrorCode, name: string, run: () => Promise<Seen>): Driver => ({ code, transport: 'http-modern', name, run })
const legacy = (code: SecurityErrorCode, name: string, run: () => Promise<Seen>): Driver => ({ code, transport: 'http-legacy', name, run })

/** A refusal raised while the SDK dispatched: it travels in the JSON-RPC answer of a 200. */
const inDispatch = async (seen: Promise<Seen>): Promise<Seen> => ({ ...(await seen), duringDispatch: true })
/** Raised during dispatch only on an open 2025-11-25 stream; before it in 2026-07-28. */
const onLegacyStream =
  (t: Transport) =>
  async (seen: Promise<Seen>): Promise<Seen> =>
    t === 'http-legacy' ? inDispatch(seen) : seen

const DRIVERS: readonly Driver[] = [
  ...both('ERR_AUTH_MISSING', 'no credential', (t) => refused(t, main, {})),
  legacy('ERR_AUTH_MISSING', 'a session id without a credential', async () => {
    const h = await session(main, key(main, ['admin']))
    return send('http-legacy', main, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, { 'mcp-session-id': h['mcp-session-id'] ?? '', 'mcp-protocol-version': '2025-11-25' })
  }),
  ...both('ERR_AUTH_INVALID', 'right key id, wrong secret', (t) => refused(t, main, { 'x-api-key': `${key(main, ['admin']).slice(0, 21)}${'B'.repeat(43)}` })),
  ...both('ERR_AUTH_EXPIRED', 'an expired key', (t) => refused(t, main, bearer(key(main, ['admin'], new Date(Date.now() - 1000))))),
  ...both('ERR_AUTH_REVOKED', 'a revoked key', (t) => {
    const k = key(main, ['admin'])
    main.bastion.keys.revoke(k.slice(4, 20))
    return refused(t, main, bearer(k))
  }),
  ...both('ERR_AUTH_UNAVAILABLE', 'an opaque token while the introspection endpoint is down', (t) => refused(t, main, bearer('opaque-wire-token-0123456789'))),
  ...both('ERR_AUTH_BLOCKED', 'an address blocked after repeated failures', (t) => blocked(t)),
  ...both('ERR_TOKEN_IN_QUERY', 'access_token in the URL', (t) => refused(t, main, bearer(key(main, ['admin'])), undefined, `${main.url}?access_token=abc`)),
  ...both('ERR_FORBIDDEN', 'a role without the permission calls read_file', (t) => call(t, main, key(main, ['nobody']), 'read_file', { path: 'README.md' })),
  ...both('ERR_INSUFFICIENT_SCOPE', 'a token without the tool scope calls read_file', async (t) => {
    const token = await jwt('mcp:other')
    return call(t, main, token, 'read_file', { path: 'README.md' })
  }),
  legacy('ERR_SESSION_FORBIDDEN', "another principal's session id", async () => {
    const h = await session(main, key(main, ['admin']))
    return send('http-legacy', main, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, { ...h, ...bearer(key(main, ['reader'])) })
  }),
  legacy('ERR_SESSION_NOT_FOUND', 'an unknown session id', () =>
    send('http-legacy', main, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, { ...bearer(key(main, ['admin'])), 'mcp-session-id': 'no-such-session' }),
  ),
  legacy('ERR_SESSION_REQUIRED', 'a call without a session id', () => send('http-legacy', main, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, bearer(key(main, ['admin'])))),
  legacy('ERR_SESSION_LIMIT', 'initialize while every session slot is taken', async () => {
    if (tight.bastion.edge().sessions.size === 0) await session(tight, key(tight, ['admin']))
    return refused('http-legacy', tight, bearer(key(tight, ['reader'])))
  }),
  ...both('ERR_ORIGIN_FORBIDDEN', 'a foreign Origin', (t) => refused(t, main, { ...bearer(key(main, ['admin'])), origin: 'https://evil.example' })),
  ...both('ERR_HOST_FORBIDDEN', 'a foreign Host (DNS rebinding)', async (t) => {
    const since = main.mark()
    const shaped = eraBody(t)
    const res = await nodeRequest(main.url, {
      headers: { ...JSON_HEADERS, ...shaped.headers, ...bearer(key(main, ['admin'])), host: `rebound.example:${main.port}` },
      body: JSON.stringify(shaped.body),
    })
    return fromRaw(t, res, since)
  }),
  ...both('ERR_HEADER_INVALID', 'Authorization sent twice', async (t) => {
    const since = main.mark()
    const shaped = eraBody(t)
    const k = key(main, ['admin'])
    const res = await nodeRequest(main.url, { headers: { ...JSON_HEADERS, ...shaped.headers, authorization: [`Bearer ${k}`, `Bearer ${k}`] }, body: JSON.stringify(shaped.body) })
    return fromRaw(t, res, since)
  }),
  legacy('ERR_HEADER_INVALID', 'Mcp-Session-Id sent twice', async () => {
    const h = await session(main, key(main, ['admin']))
    const since = main.mark()
    const sid = h['mcp-session-id'] ?? ''
    const res = await nodeRequest(main.url, {
      headers: { ...JSON_HEADERS, ...h, 'mcp-session-id': [sid, sid] },
      body: JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/list' }),
    })
    return fromRaw('http-legacy', res, since)
  }),
  ...both('ERR_HEADER_INVALID', 'a control character in a header value', async (t) => {
    const since = main.mark()
    const shaped = eraBody(t)
    const body = JSON.stringify(shaped.body)
    const extra = Object.entries(shaped.headers).map(([n, v]) => `${n}: ${v}\r\n`)
    const head = `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:${main.port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n${extra.join('')}authorization: Bearer ${key(main, ['admin'])}\r\nx-note: a\u0001b\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close`
    return fromRaw(t, await rawRequest(main.port, head, body), since)
  }),
  modern('ERR_HEADER_INVALID', 'no Host header at all', async () => {
    const since = main.mark()
    const body = JSON.stringify(modernBody('tools/list'))
    const head = `POST /mcp HTTP/1.0\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: ${Buffer.byteLength(body)}`
    return fromRaw('http-modern', await rawRequest(main.port, head, body), since)
  }),
  ...both('ERR_BODY_TOO_LARGE', 'a body over the byte cap', (t) => {
    const padded = { ...eraBody(t).body, pad: 'x'.repeat(1100 * 1024) }
    return refused(t, main, bearer(key(main, ['admin'])), padded)
  }),
  ...both('ERR_JSON_TOO_DEEP', 'JSON nested past the depth cap', (t) => {
    const shaped = JSON.stringify(eraBody(t).body)
    return refused(t, main, bearer(key(main, ['admin'])), `${shaped.slice(0, -1)},"deep":${'['.repeat(100)}${']'.repeat(100)}}`)
  }),
  ...both('ERR_PARSE', 'a body that is not JSON', (t) => refused(t, main, bearer(key(main, ['admin'])), '{"jsonrpc":"2.0",')),
  legacy('ERR_INVALID_REQUEST', 'a batch', () => refused('http-legacy', main, bearer(key(main, ['admin'])), JSON.stringify([legacyInit(1), legacyInit(2)]))),
  modern('ERR_INVALID_REQUEST', 'jsonrpc "1.0"', () => refused('http-modern', main, bearer(key(main, ['admin'])), { ...modernBody('tools/list'), jsonrpc: '1.0' })),
  ...both('ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type text/plain', (t) => refused(t, main, { ...bearer(key(main, ['admin'])), 'content-type': 'text/plain' })),
  ...both('ERR_NOT_ACCEPTABLE', 'Accept without text/event-stream', (t) => refused(t, main, { ...bearer(key(main, ['admin'])), accept: 'application/json' })),
  ...both('ERR_METHOD_NOT_ALLOWED', 'PUT on the MCP endpoint', async (t) => {
    const since = main.mark()
    const res = await fetch(main.url, {
      method: 'PUT',
      headers: { ...JSON_HEADERS, ...eraBody(t).headers, ...bearer(key(main, ['admin'])) },
      body: JSON.stringify(eraBody(t).body),
    })
    return fromResponse(t, res, since)
  }),
  ...both('ERR_NOT_FOUND', 'a path that is not served', (t) => refused(t, main, bearer(key(main, ['admin'])), undefined, main.url.replace('/mcp', '/mcp-nope'))),
  ...both('ERR_METHOD_NOT_FOUND', 'a method nobody serves', (t) => onLegacyStream(t)(request(t, main, key(main, ['admin']), 'no/such', {}))),
  ...both('ERR_INVALID_PARAMS', 'tools/call whose name is a number', (t) => request(t, main, key(main, ['admin']), 'tools/call', { name: 5 })),
  ...both('ERR_INVALID_PARAMS', 'resources/read whose uri is a number (SDK-validated params)', (t) => request(t, main, key(main, ['admin']), 'resources/read', { uri: 5 })),
  modern('ERR_HEADER_MISMATCH', 'Mcp-Method disagrees with the body', () =>
    send('http-modern', main, modernBody('tools/list'), bearer(key(main, ['admin'])), { method: 'prompts/list' }),
  ),
  modern('ERR_HEADER_MISMATCH', 'Mcp-Param-Region disagrees with the argument', () =>
    send(
      'http-modern',
      main,
      modernBody('tools/call', { name: 'regional', arguments: { region: 'eu' } }, 7),
      { ...bearer(key(main, ['admin'])), 'mcp-param-region': 'us' },
      { method: 'tools/call', name: 'regional' },
    ),
  ),
  ...both('ERR_CAPABILITY_MISSING', 'a tool asks for input the client cannot give', (t) => onLegacyStream(t)(call(t, main, key(main, ['admin']), 'ask', {}))),
  modern('ERR_UNSUPPORTED_VERSION', 'an envelope claiming protocol 1999-01-01', () => {
    const meta = { ...MODERN_META, 'io.modelcontextprotocol/protocolVersion': '1999-01-01' }
    return send('http-modern', main, modernBody('tools/list', { _meta: meta }), {
      ...bearer(key(main, ['admin'])),
      ...modernHeaders('tools/list'),
      'mcp-protocol-version': '1999-01-01',
    })
  }),
  legacy('ERR_UNSUPPORTED_VERSION', 'a session request with MCP-Protocol-Version 1999-01-01', async () => {
    const h = await session(main, key(main, ['admin']))
    return send('http-legacy', main, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, { ...h, 'mcp-protocol-version': '1999-01-01' })
  }),
  ...both('ERR_TOOL_NOT_FOUND', 'an unregistered tool', (t) => call(t, main, key(main, ['admin']), 'drop_database', {})),
  ...both('ERR_RESOURCE_NOT_FOUND', 'a resource the caller may not see', (t) =>
    request(t, main, key(main, ['reader']), 'resources/read', { uri: 'wire://hidden' }, 'wire://hidden'),
  ),
  ...both('ERR_RESOURCE_NOT_FOUND', 'a resource that does not exist', (t) => request(t, main, key(main, ['reader']), 'resources/read', { uri: 'wire://absent' }, 'wire://absent')),
  modern('ERR_CANCELLED', 'the client closes the response stream', async () => {
    const requestId = 'wire-cancel-modern'
    const since = main.mark()
    const controller = new AbortController()
    const pending = fetch(main.url, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', 'nap'), ...bearer(key(main, ['admin'])), 'x-request-id': requestId },
      body: JSON.stringify(modernCall('nap', { ms: 3000 })),
      signal: controller.signal,
    }).catch(() => undefined)
    await waitFor(() => main.bastion.caps.total === 1, { what: 'the nap to run' })
    controller.abort()
    await pending
    await expect.poll(() => since().some((l) => l.requestId === requestId), { timeout: 3000 }).toBe(true)
    return { transport: 'http-modern', text: '', message: undefined, requestId, audit: since() }
  }),
  legacy('ERR_CANCELLED', 'notifications/cancelled for a running call', async () => {
    const h = await session(main, key(main, ['admin']))
    const requestId = 'wire-cancel-legacy'
    const since = main.mark()
    const controller = new AbortController()
    // The session's SSE answer starts with its first event: the response is not awaited here.
    const answer = fetch(main.url, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...h, 'x-request-id': requestId },
      body: JSON.stringify({ jsonrpc: '2.0', id: 41, method: 'tools/call', params: { name: 'nap', arguments: { ms: 3000 } } }),
      signal: controller.signal,
    }).catch(() => undefined)
    await waitFor(() => main.bastion.caps.total === 1, { what: 'the nap to run' })
    await (await post(main.url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 41, reason: 'wire test' } }, h)).text()
    await expect.poll(() => since().some((l) => l.requestId === requestId), { timeout: 3000 }).toBe(true)
    // Whatever arrives within a moment: no answer to the cancelled request.
    const raw = { text: '' }
    let message: RpcMessage | undefined
    const res = await Promise.race([answer, sleep(300)])
    if (res !== undefined) {
      const reading = (async () => {
        for await (const m of messagesOf(res, raw)) if (m.id === 41 && m.method === undefined) message = m
      })().catch(() => undefined)
      await Promise.race([reading, sleep(300)])
    }
    controller.abort()
    const seen = { transport: 'http-legacy' as const, text: raw.text, message, requestId, audit: since() }
    return res === undefined ? seen : { ...seen, status: res.status, headers: res.headers }
  }),
  ...both('ERR_VALIDATION', 'read_file with a number for a path', (t) => call(t, main, key(main, ['admin']), 'read_file', { path: 42 })),
  ...both('ERR_PATH_FORBIDDEN', 'read_file ../../etc/passwd', (t) => call(t, main, key(main, ['admin']), 'read_file', { path: '../../../../etc/passwd' })),
  ...both('ERR_FILE_NOT_FOUND', 'read_file of a missing file', (t) => call(t, main, key(main, ['admin']), 'read_file', { path: 'no-such-file.txt' })),
  ...both('ERR_FILE_TOO_LARGE', 'read_file over maxFileBytes', (t) => call(t, main, key(main, ['admin']), 'read_file', { path: 'big.txt' })),
  ...both('ERR_TOOL_FAILED', 'a tool that throws', (t) => call(t, main, key(main, ['admin']), 'explode', {})),
  ...both('ERR_TOOL_TIMEOUT', 'a tool past its timeout', (t) => call(t, main, key(main, ['admin']), 'sleep', { ms: 5000 })),
  ...both('ERR_OUTPUT_TOO_LARGE', 'read_file over the tool output cap', (t) => call(t, main, key(main, ['admin']), 'read_file', { path: 'mid.txt' })),
  ...both('ERR_TOOL_RESOURCE_LIMIT', 'an isolated tool past its CPU cap', (t) => call(t, main, key(main, ['admin']), 'spin', {})),
  ...both('ERR_PII_BLOCKED', 'read_file of personal data with pii: block', (t) => call(t, main, key(main, ['admin']), 'read_file', { path: 'contact.txt' })),
  ...both('ERR_DATABASE', 'a named query over a missing table', (t) => call(t, main, key(main, ['admin']), 'run_query', { name: 'broken', params: {} })),
  ...both('ERR_UPSTREAM_UNAVAILABLE', 'a pinned tool whose upstream cannot start', async (t) => {
    await waitFor(() => upstream('gone')?.state === 'failed', { what: 'upstream gone to fail' })
    return call(t, main, key(main, ['admin']), upstreams.unavailable, { text: 'hi' })
  }),
  ...both('ERR_TOOL_BLOCKED', 'a tool whose upstream definition drifted from its pin', async (t) => {
    await waitFor(() => upstream('drift')?.blocked[upstreams.blocked] !== undefined, { what: 'upstream drift to list its drifted tool' })
    return call(t, main, key(main, ['admin']), upstreams.blocked, { text: 'hi' })
  }),
  ...both('ERR_CONFIRMATION_REQUIRED', 'write_file from a client without elicitation', (t) => call(t, main, key(main, ['admin']), 'write_file', { path: 'w.txt', content: 'x' })),
  modern('ERR_CONFIRMATION_INVALID', 'a requestState bastion never minted', () =>
    modernRound2(main, key(main, ['admin']), 'write_file', { path: 'w.txt', content: 'x' }, 'bastion-confirm.bse1.forged', {
      confirm: { action: 'accept', content: { confirm: true } },
    }),
  ),
  legacy('ERR_CONFIRMATION_INVALID', 'the file changes while the user is asked', () => {
    const path = join(main.dir, '.bastion', 'workspace', 'race.txt')
    writeFileSync(path, 'v1\n')
    return legacyElicited(main, key(main, ['admin']), 'write_file', { path: 'race.txt', content: 'v3\n' }, () => {
      writeFileSync(path, 'v2 by someone else\n')
      return { action: 'accept', content: { confirm: true } }
    })
  }),
  modern('ERR_DECLINED', 'the user declines (second round)', async () => {
    const k = key(main, ['admin'])
    const args = { path: 'd.txt', content: 'x' }
    const state = await firstRound(main, k, 'write_file', args)
    return modernRound2(main, k, 'write_file', args, state, { confirm: { action: 'decline' } })
  }),
  legacy('ERR_DECLINED', 'the user declines the elicitation', () =>
    legacyElicited(main, key(main, ['admin']), 'write_file', { path: 'd.txt', content: 'x' }, () => ({ action: 'decline' })),
  ),
  ...both('ERR_RATE_LIMITED', "the tool's own bucket is empty", async (t) => {
    const k = key(main, ['reader'])
    await call(t, main, k, 'list_files', {})
    return call(t, main, k, 'list_files', {})
  }),
  ...both('ERR_CONCURRENCY_LIMIT', 'a second call while the principal runs its one allowed', (t) => inDispatch(overCap(t))),
  ...both('ERR_LIMITS_UNAVAILABLE', 'the rate-limit backend is down', async (t) => {
    const k = key(main, ['admin'])
    main.limiter.down = true
    try {
      return await refused(t, main, bearer(k))
    } finally {
      main.limiter.down = false
    }
  }),
  ...both('ERR_AUDIT_UNAVAILABLE', 'the audit sink fails', async (t) => {
    const k = key(main, ['admin'])
    const h = t === 'http-legacy' ? await session(main, k) : bearer(k)
    const from = main.sink.refused.length
    main.sink.failing = true
    try {
      const s =
        t === 'http-modern'
          ? await send(t, main, modernBody('tools/list', {}, 5), h, { method: 'tools/list' })
          : await send(t, main, { jsonrpc: '2.0', id: 5, method: 'tools/list' }, h)
      // Over a 2025-11-25 stream the answer has started before its line can fail: a 200 whose JSON-RPC answer is the refusal.
      return { ...s, duringDispatch: t === 'http-legacy', refused: main.sink.refused.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>) }
    } finally {
      main.sink.failing = false
    }
  }),
  ...both('ERR_INTERNAL', 'a resource whose handler throws', (t) => inDispatch(request(t, main, key(main, ['admin']), 'resources/read', { uri: 'wire://boom' }, 'wire://boom'))),
]

beforeAll(async () => {
  const deadPort = await freePort()
  process.env.WIRE_JWT_SECRET = JWT_SECRET
  process.env.WIRE_RS_SECRET = 'wire-rs-secret-0123456789abcdef'
  process.env.WIRE_PG = PG_ADMIN_URL
  upstreams = wireUpstreams('upstreams:call')
  Object.assign(process.env, upstreams.env)
  const [a, b] = await Promise.all([
    startWireServer(
      {
        roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] } },
        auth: {
          resource: RESOURCE,
          scopes: { supported: ['mcp:files', 'mcp:other'] },
          issuers: [{ name: 'wire', issuer: ISSUER, algorithms: ['HS256'], secret: { env: 'WIRE_JWT_SECRET' } }],
          introspection: [{ endpoint: `http://127.0.0.1:${deadPort}/introspect`, clientId: 'rs', clientSecret: { env: 'WIRE_RS_SECRET' }, timeoutMs: 500 }],
          bruteForce: { slowAfter: 1000, blockAfter: 10_000 },
        },
        tools: { read_file: { permissions: ['files:read'], scopes: ['mcp:files'] } },
        limits: {
          anonymous: { rate: '100000/min' },
          principal: { rate: '100000/min' },
          concurrency: { perPrincipal: 1, global: 64 },
          tools: { list_files: { rate: { rate: '1/hour' } }, read_file: { maxOutputBytes: 2000 }, spin: { cpuMs: 200 } },
        },
        // Its own tools beside the built-in ones.
        workspace: { enabled: true, maxFileBytes: 4096 },
        vault: { enabled: true },
        pii: { tools: { read_file: 'block' } },
        sql: {
          enabled: true,
          url: { env: 'WIRE_PG' },
          tables: { wire_nothing: { columns: ['id'] } },
          queries: { broken: { description: 'reads a missing table', sql: 'SELECT * FROM wire_no_such_table' } },
        },
        // A gateway too: one upstream that cannot start, one whose tool drifted from its pin.
        upstreams: upstreams.config,
      },
      (bastion) => {
        const ms = z.object({ ms: z.number().int().min(0).max(10_000).default(0) })
        const wait = (n: number, signal: AbortSignal): Promise<void> =>
          new Promise((resolve) => {
            const timer = setTimeout(resolve, n)
            signal.addEventListener('abort', () => {
              clearTimeout(timer)
              resolve()
            })
          })
        bastion
          .tool({ name: 'sleep', description: 'waits past its timeout', input: ms, timeoutMs: 150, run: (a, ctx) => wait(a.ms, ctx.signal).then(() => ({ content: [] })) })
          .tool({
            name: 'nap',
            description: 'waits',
            input: ms,
            timeoutMs: 10_000,
            run: (a, ctx) => wait(a.ms, ctx.signal).then(() => ({ content: [{ type: 'text', text: 'rested' }] })),
          })
          .tool({
            name: 'explode',
            description: 'throws',
            input: z.object({}),
            run: async () => {
              throw new TypeError(`cannot read secret of undefined at ${process.cwd()}/x.ts:1:2`)
            },
          })
          .tool({ name: 'spin', description: 'loops forever', input: z.object({}), isolate: { module: FIXTURES, export: 'spin' } })
          .tool({
            name: 'regional',
            description: 'mirrors its region in a header',
            input: z.object({ region: z.string().meta({ 'x-mcp-header': 'Region' }) }),
            run: async () => ({ content: [] }),
          })
          .tool({
            name: 'ask',
            description: 'asks the client, whatever it declared',
            input: z.object({}),
            run: async (_a, ctx) =>
              ctx.input.required({
                inputRequests: {
                  colour: ctx.input.required.elicit({ message: 'Favourite colour?', requestedSchema: { type: 'object', properties: { colour: { type: 'string' } } } }),
                },
              }),
          })
          .resource({ name: 'hidden', uri: 'wire://hidden', permissions: ['secret:read'], read: async (uri) => ({ contents: [{ uri: uri.href, text: 'hidden' }] }) })
          .resource({
            name: 'boom',
            uri: 'wire://boom',
            read: async () => {
              throw new Error(`ENOENT: open ${process.cwd()}/secret.db`)
            },
          })
      },
      (dir) => upstreams.pin(dir),
    ),
    startWireServer({
      roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] } },
      auth: { bruteForce: { slowAfter: 1000, blockAfter: 2, blockSeconds: 600 } },
      limits: { anonymous: { rate: '100000/min' } },
      server: { sessions: { maxTotal: 1 } },
      sql: { enabled: false },
    }),
  ])
  main = a
  tight = b
  const workspace = join(main.dir, '.bastion', 'workspace')
  writeFileSync(join(workspace, 'big.txt'), 'b'.repeat(5000))
  writeFileSync(join(workspace, 'mid.txt'), 'm'.repeat(3000))
  writeFileSync(join(workspace, 'contact.txt'), 'write to bob.smith@example.com\n')
})

afterAll(async () => {
  await Promise.all([main?.close(), tight?.close()])
})

describe('the WIRE table over HTTP', () => {
  it('every row is driven in each era it can occur in, or listed with the reason it cannot', () => {
    expect(coverageGaps(BOTH, DRIVERS)).toStrictEqual([])
    for (const n of NOT_REACHABLE) expect(n.reason.length, n.code).toBeGreaterThan(10)
  })

  for (const code of Object.keys(WIRE) as SecurityErrorCode[]) {
    const drivers = DRIVERS.filter((d) => d.code === code)
    if (drivers.length === 0) continue
    describe(code, () => {
      for (const d of drivers) it(`${d.transport}: ${d.name}`, async () => expectRow(code, await d.run(), forbidden()))
    })
  }
})
