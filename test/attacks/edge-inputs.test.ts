import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { type SecurityErrorCode, WIRE } from '../../src/errors.js'
import { commonStrings, expectOneDenyLine, pool, refusalOf, UUID } from '../helpers/edge-cases.js'
import { type LocalIssuer, startLocalIssuer } from '../helpers/local-issuer.js'
import { AuditTail, header, messagesOf, type RawHeader, type RawRequest, type RawResponse, rawRequest, requestBytes } from '../helpers/raw-http.js'
import { MODERN_META, startServer, type TestServer } from '../helpers/server.js'

const RESOURCE = 'https://mcp.test/mcp'

let issuer: LocalIssuer
let server: TestServer
let tail: AuditTail
let port = 0
/** Tokens minted in this file: none may appear on the wire. */
const minted: string[] = []

beforeAll(async () => {
  issuer = await startLocalIssuer()
  server = await startServer(
    {
      // Its own echo tool beside the built-in file tools.
      workspace: { enabled: true },
      auth: {
        resource: RESOURCE,
        issuers: [{ name: 'idp', issuer: issuer.issuer, algorithms: ['ES256'], jwksUri: issuer.jwksUri, claims: { roles: 'roles' } }],
        bruteForce: { slowAfter: 1000, delayMs: 0, blockAfter: 10_000 },
      },
      limits: { anonymous: { rate: '1000000/min' }, principal: { rate: '1000000/min' } },
    },
    (b) => {
      b.tool({
        name: 'echo',
        description: 'Echo a text',
        input: z.object({ text: z.string() }),
        permissions: ['echo:use'],
        run: async ({ text }) => ({ content: [{ type: 'text', text }] }),
      })
      const read = async (uri: URL) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'doc' }] })
      b.resource({ name: 'public-doc', uri: 'test://public-doc', permissions: ['files:read'], read })
      b.resource({ name: 'secret-doc', uri: 'test://secret-doc', permissions: ['docs:secret'], read })
      const get = async () => ({ messages: [{ role: 'user' as const, content: { type: 'text' as const, text: 'hi' } }] })
      b.prompt({ name: 'public-prompt', permissions: ['files:read'], get })
      b.prompt({ name: 'secret-prompt', args: z.object({ topic: z.string() }), permissions: ['docs:secret'], get })
    },
  )
  port = Number(new URL(server.url).port)
  tail = new AuditTail(server.auditPath)
})
afterAll(async () => {
  await server?.close()
  await issuer?.close()
})

const secrets = (): string[] => [server.keys.admin, server.keys.reader, server.keys.nobody, ...minted].map((k) => k.slice(-24)).concat(server.dir)
const send = (r: RawRequest): Promise<RawResponse> => rawRequest(port, requestBytes(r))
const host = (): RawHeader => ['host', `127.0.0.1:${port}`]
const JSON_HEADERS: RawHeader[] = [
  ['content-type', 'application/json'],
  ['accept', 'application/json, text/event-stream'],
]
const bearer = (token: string): RawHeader => ['authorization', `Bearer ${token}`]
const modernHeaders = (method: string, name?: string): RawHeader[] => [
  ['mcp-protocol-version', '2026-07-28'],
  ['mcp-method', method],
  ...(name === undefined ? [] : [['mcp-name', name] as RawHeader]),
]
const rpc = (method: string, params?: unknown, id: unknown = 1): string => JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })
const modernRpc = (method: string, params: Record<string, unknown> = {}, id: unknown = 1): string => rpc(method, { ...params, _meta: MODERN_META }, id)
/** A 2026-07-28 call a `nobody` key may not make: every header mutation of it ends in a refusal. */
const refusedCall = (): RawRequest => ({
  headers: [host(), ...JSON_HEADERS, bearer(server.keys.nobody), ...modernHeaders('tools/call', 'echo')],
  body: modernRpc('tools/call', { name: 'echo', arguments: { text: 'hi' } }),
})
const mint = async (claims: Record<string, unknown>): Promise<string> => {
  const token = await issuer.sign(RESOURCE, claims)
  minted.push(token)
  return token
}
const INITIALIZE = rpc('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } })

/** A 2025-11-25 session opened with this credential. */
async function openSession(credential: RawHeader): Promise<string> {
  const res = await send({ headers: [host(), ...JSON_HEADERS, credential], body: INITIALIZE })
  expect(res.status).toBe(200)
  const session = header(res, 'mcp-session-id') ?? ''
  expect(session).not.toBe('')
  const initialized = await send({
    headers: [host(), ...JSON_HEADERS, credential, ['mcp-session-id', session], ['mcp-protocol-version', '2025-11-25']],
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  })
  expect(initialized.status).toBe(202)
  return session
}

/** Send, then check the refusal and its one audit line. */
async function expectRefused(r: RawRequest, codes: readonly SecurityErrorCode[]): Promise<Record<string, unknown>> {
  const since = tail.mark()
  const res = await send(r)
  const refusal = refusalOf(res, codes, secrets())
  return expectOneDenyLine(since(), refusal)
}

interface Row {
  readonly name: string
  readonly request: () => RawRequest
  readonly codes: readonly SecurityErrorCode[]
}

const withHost =
  (...values: string[]): (() => RawRequest) =>
  () => ({ ...refusedCall(), headers: [...values.map((v): RawHeader => ['host', v]), ...refusedCall().headers.slice(1)] })
const line =
  (method: string, target: string, body?: string): (() => RawRequest) =>
  () => ({ method, target, headers: refusedCall().headers, ...(body === undefined ? {} : { body }) })

const REQUEST_LINE_AND_HOST: Row[] = [
  { name: 'Host a price $1.00', request: withHost('$1.00'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host -0.0', request: withHost('-0.0'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host @ (userinfo with no host)', request: withHost('@'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host a@b (userinfo smuggling)', request: withHost('a@b'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host [::1 (unclosed IPv6 literal)', request: withHost('[::1'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host ::1 (IPv6 without brackets)', request: withHost('::1'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host port 99999', request: withHost('host:99999'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host with an empty port', request: withHost('host:'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host percent-encoded %41', request: withHost('%41'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host with a space', request: withHost('exa mple'), codes: ['ERR_HEADER_INVALID'] },
  { name: 'Host empty', request: withHost(''), codes: ['ERR_HEADER_INVALID'] },
  // Names the Host pattern admits but no URL can hold (WHATWG URL: a last label that is a number is an IPv4 address).
  ...['9007199254740993', '4294967296', '256.0.0.1', '1.2.3.4.5', 'example.123', '09', 'xn--a'].map(
    (h): Row => ({ name: `Host ${h} (no URL parser accepts it)`, request: withHost(h), codes: ['ERR_HEADER_INVALID', 'ERR_HOST_FORBIDDEN'] }),
  ),
  { name: 'two Host headers (RFC 9112 §3.2)', request: () => ({ ...refusedCall(), headers: [host(), ...refusedCall().headers] }), codes: ['ERR_HEADER_INVALID'] },
  { name: 'two Host headers, the second foreign', request: () => withHost(`127.0.0.1:${port}`, 'evil.example')(), codes: ['ERR_HEADER_INVALID'] },
  { name: 'no Host header (RFC 9112 §3.2: 400)', request: () => ({ ...refusedCall(), headers: refusedCall().headers.slice(1) }), codes: ['ERR_HEADER_INVALID'] },
  { name: 'a well-formed foreign Host (DNS rebinding)', request: withHost('rebound.example'), codes: ['ERR_HOST_FORBIDDEN'] },
  { name: 'absolute-form target POST http://evil/mcp', request: () => ({ ...refusedCall(), target: 'http://evil/mcp' }), codes: ['ERR_INVALID_REQUEST'] },
  { name: 'asterisk-form target OPTIONS *', request: line('OPTIONS', '*'), codes: ['ERR_INVALID_REQUEST'] },
  { name: 'a target with a fragment', request: () => ({ ...refusedCall(), target: '/mcp#frag' }), codes: ['ERR_INVALID_REQUEST'] },
  { name: 'non-ASCII bytes in the target', request: () => ({ ...refusedCall(), target: '/mcp\u00ff' }), codes: ['ERR_INVALID_REQUEST'] },
  { name: 'method TRACE', request: line('TRACE', '/mcp'), codes: ['ERR_METHOD_NOT_ALLOWED'] },
  { name: 'method CONNECT (authority-form)', request: line('CONNECT', 'example.com:443'), codes: ['ERR_METHOD_NOT_ALLOWED'] },
  // Node's parser knows no TRACK and refuses it before bastion sees the method: still our shape, audited.
  { name: 'method TRACK', request: line('TRACK', '/mcp'), codes: ['ERR_METHOD_NOT_ALLOWED', 'ERR_INVALID_REQUEST'] },
  { name: 'lowercase method post', request: line('post', '/mcp', modernRpc('tools/list')), codes: ['ERR_METHOD_NOT_ALLOWED', 'ERR_INVALID_REQUEST'] },
  { name: 'odd token method M-SEARCH', request: line('M-SEARCH', '/mcp'), codes: ['ERR_METHOD_NOT_ALLOWED'] },
  { name: 'method PATCH', request: line('PATCH', '/mcp', modernRpc('tools/list')), codes: ['ERR_METHOD_NOT_ALLOWED'] },
  { name: 'an invalid token method PO(ST', request: line('PO(ST', '/mcp'), codes: ['ERR_METHOD_NOT_ALLOWED', 'ERR_INVALID_REQUEST'] },
]

describe('request line and Host, over raw sockets', () => {
  it.each(REQUEST_LINE_AND_HOST)('$name → $codes', async ({ request, codes }) => {
    await expectRefused(request(), codes)
  })
})

/** Each generated value through one header of a refused call. */
const FUZZED_HEADERS: { name: string; apply: (r: RawRequest, value: string) => RawRequest }[] = [
  ...['host', 'authorization', 'mcp-protocol-version', 'mcp-method', 'content-type', 'accept'].map((name) => ({
    name,
    apply: (r: RawRequest, value: string): RawRequest => ({ ...r, headers: r.headers.map(([n, v]): RawHeader => [n, n === name ? value : v]) }),
  })),
  { name: 'x-api-key', apply: (r, value) => ({ ...r, headers: [...r.headers.filter(([n]) => n !== 'authorization'), ['x-api-key', value]] }) },
  ...['mcp-session-id', 'x-request-id', 'origin'].map((name) => ({
    name,
    apply: (r: RawRequest, value: string): RawRequest => ({ ...r, headers: [...r.headers, [name, value]] }),
  })),
]

describe('generated header values: never 5xx, always data.code, always one audit line', () => {
  it(`${commonStrings().length} strings × ${FUZZED_HEADERS.length} headers`, async () => {
    const cases = FUZZED_HEADERS.flatMap((h) => commonStrings().map((value) => ({ header: h, value })))
    const since = tail.mark()
    const answered: { label: string; res: RawResponse }[] = []
    const failures: string[] = []
    await pool(cases, 8, async ({ header: h, value }) => {
      const label = `${h.name}: ${JSON.stringify(value).slice(0, 40)}`
      try {
        answered.push({ label, res: await send(h.apply(refusedCall(), value)) })
      } catch (error) {
        failures.push(`${label} → ${String(error).slice(0, 200)}`)
      }
    })
    const byId = new Map<string, Record<string, unknown>[]>()
    for (const l of since()) if (typeof l.requestId === 'string') byId.set(l.requestId, [...(byId.get(l.requestId) ?? []), l])
    for (const { label, res } of answered) {
      try {
        const refusal = refusalOf(res, Object.keys(WIRE) as SecurityErrorCode[], secrets())
        expectOneDenyLine(byId.get(refusal.requestId) ?? [], refusal)
      } catch (error) {
        failures.push(`${label} → ${res.status} ${res.body.slice(0, 160)} :: ${String(error).split('\n')[0]}`)
      }
    }
    expect(failures).toEqual([])
  })
})

describe('repeated security headers → 400 ERR_HEADER_INVALID', () => {
  let session = ''
  beforeAll(async () => {
    session = await openSession(bearer(server.keys.admin))
  })
  const FORGED = `bst_0123456789abcdef_${'F'.repeat(43)}`
  // A call the admin key may make: a repeated header that were ignored would show as a 200.
  const allowedCall = (): RawRequest => ({
    ...refusedCall(),
    headers: refusedCall().headers.map(([n, v]): RawHeader => [n, n === 'authorization' ? `Bearer ${server.keys.admin}` : v]),
  })
  const legacyList = (extra: RawHeader[]): RawRequest => ({ headers: [host(), ...JSON_HEADERS, ...extra], body: rpc('tools/list', {}, 2) })
  const DUPLICATES: { name: string; request: () => RawRequest }[] = [
    { name: 'Authorization: valid, then forged', request: () => ({ ...allowedCall(), headers: [...allowedCall().headers, bearer(FORGED)] }) },
    { name: 'Authorization: forged, then valid', request: () => ({ ...allowedCall(), headers: [bearer(FORGED), ...allowedCall().headers] }) },
    { name: 'Authorization and authorization (case differs)', request: () => ({ ...allowedCall(), headers: [...allowedCall().headers, ['Authorization', `Bearer ${FORGED}`]] }) },
    {
      name: 'X-API-Key: valid, then forged',
      request: () => ({ ...allowedCall(), headers: [...allowedCall().headers.filter(([n]) => n !== 'authorization'), ['x-api-key', server.keys.admin], ['x-api-key', FORGED]] }),
    },
    { name: 'Host twice', request: () => ({ ...allowedCall(), headers: [host(), ...allowedCall().headers] }) },
    {
      name: 'Mcp-Session-Id: own session, then another',
      request: () => legacyList([bearer(server.keys.admin), ['mcp-session-id', session], ['mcp-session-id', 'other-session'], ['mcp-protocol-version', '2025-11-25']]),
    },
    {
      name: 'MCP-Protocol-Version twice (2025-11-25, 2026-07-28)',
      request: () => legacyList([bearer(server.keys.admin), ['mcp-session-id', session], ['mcp-protocol-version', '2025-11-25'], ['mcp-protocol-version', '2026-07-28']]),
    },
    { name: 'Mcp-Method twice', request: () => ({ ...allowedCall(), headers: [...allowedCall().headers, ['mcp-method', 'tools/list']] }) },
    { name: 'Content-Type twice', request: () => ({ ...allowedCall(), headers: [...allowedCall().headers, ['content-type', 'text/plain']] }) },
    { name: 'X-Request-Id twice', request: () => ({ ...allowedCall(), headers: [...allowedCall().headers, ['x-request-id', 'edge-dup-one'], ['x-request-id', 'edge-dup-two']] }) },
    {
      name: 'Origin twice',
      request: () => ({ ...allowedCall(), headers: [...allowedCall().headers, ['origin', `http://127.0.0.1:${port}`], ['origin', 'https://evil.example']] }),
    },
  ]
  it.each(DUPLICATES)('$name', async ({ request }) => {
    const lineOf = await expectRefused(request(), ['ERR_HEADER_INVALID'])
    expect(lineOf.principal).toBeUndefined()
  })
})

describe('control characters', () => {
  // Node's own parser refuses most of these before bastion reads a header: the listener's
  // clientError handler must still answer with the one error shape and audit the request.
  const RAW: { name: string; extra: RawHeader }[] = [
    { name: 'U+0001 in a header value', extra: ['x-note', 'a\u0001b'] },
    { name: 'DEL in a header value', extra: ['x-note', 'a\u007fb'] },
    { name: 'NUL in a header value', extra: ['x-note', 'a\u0000b'] },
    { name: 'bare CR in a header value', extra: ['x-note', 'a\rb'] },
    { name: 'U+0001 in X-Request-Id', extra: ['x-request-id', 'edge\u0001id'] },
    { name: 'DEL in Mcp-Session-Id', extra: ['mcp-session-id', '\u007f'] },
    { name: 'U+0001 in a header name', extra: ['x-\u0001', 'v'] },
    { name: 'obs-fold continuation line (RFC 9112 §5.2)', extra: ['x-note', 'a\r\n folded'] },
  ]
  it.each(RAW)('$name → 400, our JSON error, one audit line', async ({ extra }) => {
    await expectRefused({ ...refusedCall(), headers: [...refusedCall().headers, extra] }, ['ERR_INVALID_REQUEST', 'ERR_HEADER_INVALID'])
  })

  it('U+0001 at the end of the Authorization value', async () => {
    await expectRefused({ ...refusedCall(), headers: [host(), ...JSON_HEADERS, ['authorization', `Bearer ${server.keys.admin}\u0001`], ...modernHeaders('tools/list')] }, [
      'ERR_INVALID_REQUEST',
      'ERR_HEADER_INVALID',
    ])
  })

  const SCOPES: { name: string; scope: string }[] = [
    { name: 'NUL', scope: 'mcp:tools\u0000' },
    { name: 'CR', scope: 'mcp:tools\r' },
    { name: 'LF', scope: 'mcp:tools\nx' },
    { name: 'U+0001', scope: 'mcp:tools \u0001' },
    { name: "'ā' (above U+00FF)", scope: 'mcp:tools ā' },
  ]
  it.each(SCOPES)('a JWT whose scope claim holds $name → 401 ERR_AUTH_INVALID, never 500', async ({ scope }) => {
    const token = await mint({ sub: 'carol', roles: ['admin'], scope })
    const lineOf = await expectRefused(
      { headers: [host(), ...JSON_HEADERS, bearer(token), ...modernHeaders('tools/call', 'echo')], body: modernRpc('tools/call', { name: 'echo', arguments: { text: 'x' } }) },
      ['ERR_AUTH_INVALID'],
    )
    expect(String(lineOf.detail)).toMatch(/claim scope/)
    expect(JSON.stringify(lineOf)).not.toContain(token)
  })
})

describe('request ids: echoed only when safe, and always the key to exactly one audit line', () => {
  const tools = (id: string): RawRequest => ({
    headers: [host(), ...JSON_HEADERS, bearer(server.keys.admin), ...modernHeaders('tools/list'), ['x-request-id', id]],
    body: modernRpc('tools/list'),
  })
  const IDS: { name: string; id: string; echo: boolean }[] = [
    { name: 'a card number', id: '4111111111111111', echo: false },
    { name: 'a card number in dashed groups', id: '4111-1111-1111-1111', echo: false },
    { name: 'a JWT', id: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl', echo: false },
    { name: 'a JWT after a prefix', id: 'trace.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln', echo: false },
    { name: 'an AWS access key', id: 'AKIAIOSFODNN7EXAMPLE', echo: false },
    { name: 'an AWS role id (AROA)', id: 'AROAIOSFODNN7EXAMPLE', echo: false },
    { name: 'an AWS key after a prefix', id: 'req-AKIAIOSFODNN7EXAMPLE', echo: false },
    { name: 'a bastion key', id: `bst_0123456789abcdef_${'K'.repeat(43)}`, echo: false },
    { name: 'a bastion refresh token', id: `bstr_${'R'.repeat(43)}`, echo: false },
    { name: 'a GitHub app token (ghs_)', id: `ghs_${'G'.repeat(36)}`, echo: false },
    { name: 'a Slack token (xoxo-)', id: 'xoxo-abcdefghijkl', echo: false },
    { name: 'a Google key after a prefix', id: `k-AIza${'g'.repeat(35)}`, echo: false },
    { name: 'too short (3)', id: 'abc', echo: false },
    { name: 'too short (7)', id: 'abcdefg', echo: false },
    { name: 'too long (129)', id: 'l'.repeat(129), echo: false },
    { name: 'with spaces', id: 'req id 12345', echo: false },
    { name: 'with colons', id: 'req:id:12345', echo: false },
    { name: 'with unicode', id: 'réq-12345678', echo: false },
    { name: 'with a slash', id: 'req/12345678', echo: false },
    { name: 'empty', id: '', echo: false },
    { name: 'exactly 8 safe characters', id: 'edge8chr', echo: true },
    { name: 'exactly 128 safe characters', id: `${'m'.repeat(120)}edge-128`, echo: true },
    { name: 'a UUID', id: '6e8bc430-9c3a-11d9-9669-0800200c9a66', echo: true },
    // A v4 UUID as randomUUID() makes about once in 10⁴: its leading groups are all digits and pass the Luhn check.
    { name: 'a UUID whose leading digit groups look like a card number', id: '76049132-4838-4736-a2bd-bd86fd58317a', echo: true },
    { name: 'an opaque proxy id', id: 'edge-req.01_AbC', echo: true },
  ]
  it.each(IDS)('$name', async ({ id, echo }) => {
    const since = tail.mark()
    const res = await send(tools(id))
    expect(res.status).toBe(200)
    const returned = header(res, 'x-request-id') ?? ''
    // The invariant first: the id the client holds finds its line (the redactor left it alone).
    const mine = since().filter((l) => l.requestId === returned)
    expect(mine).toHaveLength(1)
    expect(mine[0]).toMatchObject({ decision: 'allow', method: 'tools/list' })
    if (echo) expect(returned).toBe(id)
    else expect(returned).toMatch(UUID)
  })

  it('property: for any X-Request-Id, the id the client got back finds exactly one audit line', async () => {
    const unit = fc.oneof(
      fc.constantFrom('-', '_', '.', ':', ' ', '\t', '\u0001', '\u007f', 'é', '😀', '\u0000', '4', '1', 'eyJ', 'bst_', 'AKIA', '\r', '\n'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
    )
    await fc.assert(
      fc.asyncProperty(fc.string({ unit, maxLength: 140 }), async (id) => {
        const since = tail.mark()
        const res = await send(tools(id))
        expect(res.status).toBeLessThan(500)
        const returned = header(res, 'x-request-id') ?? ''
        expect(returned === id || UUID.test(returned)).toBe(true)
        expect(since().filter((l) => l.requestId === returned)).toHaveLength(1)
      }),
      { numRuns: 150 },
    )
  })
})

describe('a 2025-11-25 session after a role downgrade: lists and calls follow the credential of each request', () => {
  const names = (res: RawResponse, key: string): string[] => {
    const result = messagesOf(res).find((m) => m.result !== undefined)?.result as Record<string, { name: string }[]> | undefined
    return (result?.[key] ?? []).map((t) => t.name).sort()
  }
  it('same sub, admin token opens the session, reader token uses it', async () => {
    const broad = await mint({ sub: 'dana', roles: ['admin'] })
    const narrow = await mint({ sub: 'dana', roles: ['reader'] })
    const session = await openSession(bearer(broad))
    const on = (token: string, body: string, sid = session): RawRequest => ({
      headers: [host(), ...JSON_HEADERS, bearer(token), ['mcp-session-id', sid], ['mcp-protocol-version', '2025-11-25']],
      body,
    })
    // Control: what the reader token sees in a session of its own.
    const readerTools = names(await send(on(narrow, rpc('tools/list', {}, 2), await openSession(bearer(narrow)))), 'tools')
    expect(readerTools).not.toContain('echo')
    expect(readerTools.length).toBeGreaterThan(0)

    expect(names(await send(on(broad, rpc('tools/list', {}, 3))), 'tools')).toContain('echo')
    expect(names(await send(on(narrow, rpc('tools/list', {}, 4))), 'tools')).toEqual(readerTools)
    expect(names(await send(on(broad, rpc('resources/list', {}, 5))), 'resources')).toEqual(['public-doc', 'secret-doc'])
    expect(names(await send(on(narrow, rpc('resources/list', {}, 6))), 'resources')).toEqual(['public-doc'])
    expect(names(await send(on(broad, rpc('prompts/list', {}, 7))), 'prompts')).toEqual(['public-prompt', 'secret-prompt'])
    expect(names(await send(on(narrow, rpc('prompts/list', {}, 8))), 'prompts')).toEqual(['public-prompt'])

    const call = await expectRefused(on(narrow, rpc('tools/call', { name: 'echo', arguments: { text: 'x' } }, 9)), ['ERR_FORBIDDEN'])
    expect(call).toMatchObject({ principal: 'idp:dana', roles: ['reader'], tool: 'echo', session })
    await expectRefused(on(narrow, rpc('resources/read', { uri: 'test://secret-doc' }, 10)), ['ERR_RESOURCE_NOT_FOUND'])
    await expectRefused(on(narrow, rpc('prompts/get', { name: 'secret-prompt', arguments: { topic: 'x' } }, 11)), ['ERR_INVALID_PARAMS'])
    // The broader token still gets its own answers on the same session.
    const allowed = await send(on(broad, rpc('tools/call', { name: 'echo', arguments: { text: 'ok' } }, 12)))
    expect(JSON.stringify(messagesOf(allowed))).toContain('"text":"ok"')
  })
})

describe('errors the SDK would raise: table code and text, one deny line, both eras', () => {
  let session = ''
  beforeAll(async () => {
    session = await openSession(bearer(server.keys.admin))
  })
  type Body = string | Buffer
  interface BadRow {
    readonly name: string
    readonly method: string
    /** The body in each era (the 2026-07-28 one carries the per-request `_meta`). */
    readonly body: (era: 'modern' | 'legacy') => Body
    readonly code: SecurityErrorCode
    readonly eras?: readonly ('modern' | 'legacy')[]
    /** 2026-07-28: the `Mcp-Name` header, when the body names something a header can mirror. */
    readonly mcpName?: string
  }
  const call = (era: 'modern' | 'legacy', method: string, params: Record<string, unknown> = {}, id: unknown = 1): string =>
    era === 'modern' ? modernRpc(method, params, id) : rpc(method, params, id)
  const invalidUtf8 = (era: 'modern' | 'legacy'): Buffer => {
    const text = call(era, 'tools/list', { cursor: 'PLACEHOLDER' })
    const [before = '', after = ''] = text.split('PLACEHOLDER')
    return Buffer.concat([Buffer.from(before), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(after)])
  }
  const BAD: BadRow[] = [
    { name: 'initialize with params missing', method: 'initialize', body: () => rpc('initialize'), code: 'ERR_SESSION_REQUIRED', eras: ['legacy'] },
    { name: 'tools/list with cursor 5', method: 'tools/list', body: (e) => call(e, 'tools/list', { cursor: 5 }), code: 'ERR_INVALID_PARAMS' },
    { name: 'tools/call with name 5', method: 'tools/call', body: (e) => call(e, 'tools/call', { name: 5 }), code: 'ERR_INVALID_PARAMS' },
    {
      name: 'tools/call with arguments []',
      method: 'tools/call',
      body: (e) => call(e, 'tools/call', { name: 'echo', arguments: [] }),
      code: 'ERR_INVALID_PARAMS',
      mcpName: 'echo',
    },
    {
      name: 'tools/call with arguments "x"',
      method: 'tools/call',
      body: (e) => call(e, 'tools/call', { name: 'echo', arguments: 'x' }),
      code: 'ERR_INVALID_PARAMS',
      mcpName: 'echo',
    },
    { name: 'resources/read with uri 5', method: 'resources/read', body: (e) => call(e, 'resources/read', { uri: 5 }), code: 'ERR_INVALID_PARAMS' },
    { name: 'prompts/get with name {}', method: 'prompts/get', body: (e) => call(e, 'prompts/get', { name: {} }), code: 'ERR_INVALID_PARAMS' },
    {
      name: 'prompts/get with arguments 5',
      method: 'prompts/get',
      body: (e) => call(e, 'prompts/get', { name: 'public-prompt', arguments: 5 }),
      code: 'ERR_INVALID_PARAMS',
      mcpName: 'public-prompt',
    },
    // No completions or logging capability is declared here: the SDK does not serve these methods.
    {
      name: 'completion/complete with garbage',
      method: 'completion/complete',
      body: (e) => call(e, 'completion/complete', { ref: 7, argument: [] }),
      code: 'ERR_METHOD_NOT_FOUND',
    },
    { name: "logging/setLevel with level 'nope'", method: 'logging/setLevel', body: (e) => call(e, 'logging/setLevel', { level: 'nope' }), code: 'ERR_METHOD_NOT_FOUND' },
    { name: 'ping with params []', method: 'ping', body: () => rpc('ping', []), code: 'ERR_INVALID_REQUEST' },
    { name: 'an unknown method', method: 'edge/unknown', body: (e) => call(e, 'edge/unknown'), code: 'ERR_METHOD_NOT_FOUND' },
    {
      name: 'a notification with an object id',
      method: 'notifications/initialized',
      body: () => JSON.stringify({ jsonrpc: '2.0', id: {}, method: 'notifications/initialized' }),
      code: 'ERR_INVALID_REQUEST',
    },
    { name: 'id null', method: 'tools/list', body: (e) => call(e, 'tools/list', {}, null), code: 'ERR_INVALID_REQUEST' },
    { name: 'id 1.5', method: 'tools/list', body: (e) => call(e, 'tools/list', {}, 1.5), code: 'ERR_INVALID_REQUEST' },
    { name: 'id true', method: 'tools/list', body: (e) => call(e, 'tools/list', {}, true), code: 'ERR_INVALID_REQUEST' },
    { name: 'a batch', method: 'tools/list', body: (e) => `[${call(e, 'tools/list', {}, 1)},${call(e, 'tools/list', {}, 2)}]`, code: 'ERR_INVALID_REQUEST' },
    { name: 'a JSON string body', method: 'tools/list', body: () => '"tools/list"', code: 'ERR_INVALID_REQUEST' },
    { name: 'a JSON number body', method: 'tools/list', body: () => '5', code: 'ERR_INVALID_REQUEST' },
    { name: 'a JSON null body', method: 'tools/list', body: () => 'null', code: 'ERR_INVALID_REQUEST' },
    {
      name: 'a UTF-8 BOM before the JSON (RFC 8259 §8.1)',
      method: 'tools/list',
      body: (e) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(call(e, 'tools/list'))]),
      code: 'ERR_PARSE',
    },
    { name: 'invalid UTF-8 bytes in a string', method: 'tools/list', body: invalidUtf8, code: 'ERR_PARSE' },
    { name: 'a lone surrogate \\ud800 in a key', method: 'tools/list', body: (e) => call(e, 'tools/list', { KEY: 1 }).replace('"KEY"', '"\\ud800"'), code: 'ERR_INVALID_REQUEST' },
    {
      name: 'a lone surrogate \\ud800 in a value',
      method: 'tools/list',
      body: (e) => call(e, 'tools/list', { cursor: 'CURSOR' }).replace('CURSOR', '\\ud800'),
      code: 'ERR_INVALID_REQUEST',
    },
  ]
  const rows = BAD.flatMap((row) => (row.eras ?? ['modern', 'legacy']).map((era) => ({ ...row, era, label: `${era}: ${row.name}` })))
  it.each(rows)('$label → $code', async ({ era, method, body, code, mcpName }) => {
    const headers: RawHeader[] =
      era === 'modern'
        ? [host(), ...JSON_HEADERS, bearer(server.keys.admin), ...modernHeaders(method, mcpName)]
        : method === 'initialize'
          ? [host(), ...JSON_HEADERS, bearer(server.keys.admin)]
          : [host(), ...JSON_HEADERS, bearer(server.keys.admin), ['mcp-session-id', session], ['mcp-protocol-version', '2025-11-25']]
    const lineOf = await expectRefused({ headers, body: body(era) }, [code])
    expect(JSON.stringify(lineOf)).not.toContain(server.keys.admin)
  })
})
