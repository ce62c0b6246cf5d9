import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { type SecureVersion, connect as tlsConnect } from 'node:tls'
import { isLoopback } from '../config/urls.js'
import { type Finding, fail, pass, warn } from './findings.js'

/** How long a live probe may take. */
const PROBE_MS = 5000
const FOREIGN = 'doctor.invalid'

interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/** One request with exactly these headers (Host included: fetch would not send a foreign one). */
function probe(url: URL, method: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const req = send(url, { method, headers: { ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) }, timeout: PROBE_MS }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        if (text.length < 65_536) text += c
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${PROBE_MS / 1000} s`)))
    req.on('error', reject)
    req.end(body)
  })
}

const LIST = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/list',
  params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'mcp-bastion-doctor', version: '1' } } },
})
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' }

/**
 * Checks of a running server at its MCP URL, without a credential: it refuses anonymous calls with
 * an OAuth challenge, a foreign Host and a foreign Origin (DNS rebinding), publishes sound
 * Protected Resource Metadata, sends no-store JSON without server banners, and offers TLS 1.2 or
 * later only. Sends a handful of requests; each is a refusal, audited by the server.
 * Does not check: anything that needs a credential (what a key may call, limits under load).
 */
export async function liveChecks(target: URL): Promise<Finding[]> {
  const out: Finding[] = []
  const host = target.host
  try {
    const health = await probe(new URL('/healthz', target), 'GET', { host })
    out.push(
      health.status === 200
        ? pass('live.reachable', `${target.origin} answers /healthz`)
        : warn('live.reachable', `/healthz answered ${health.status}`, 'check that the URL is a bastion'),
    )
  } catch (error) {
    return [fail('live.reachable', `${target.href} does not answer (${error instanceof Error ? error.message : 'error'})`, 'start the server, or fix --url')]
  }

  const anonymous = await probe(target, 'POST', { host, ...MCP_HEADERS }, LIST)
  const challenge = anonymous.headers['www-authenticate'] ?? ''
  if (anonymous.status !== 401) out.push(fail('live.auth', `a call without a credential got ${anonymous.status}, not 401`, 'require authentication on the MCP endpoint'))
  else if (!/^Bearer\b/.test(challenge)) out.push(fail('live.auth', 'the 401 has no Bearer challenge (RFC 6750 §3)', 'answer 401 with WWW-Authenticate: Bearer'))
  else
    out.push(
      pass(
        'live.auth',
        `a call without a credential is refused: 401, ${challenge.includes('resource_metadata=') ? 'challenge with resource_metadata (RFC 9728)' : 'Bearer challenge'}`,
      ),
    )

  const type = String(anonymous.headers['content-type'] ?? '')
  const banners = ['x-powered-by', 'server'].filter((h) => anonymous.headers[h] !== undefined)
  if (anonymous.headers['cache-control'] !== 'no-store' || !type.startsWith('application/json') || banners.length > 0)
    out.push(
      fail(
        'live.headers',
        `the refusal ${anonymous.headers['cache-control'] === 'no-store' ? '' : 'is cacheable (no Cache-Control: no-store) '}${type.startsWith('application/json') ? '' : `has content type ${type || 'none'} `}${banners.length > 0 ? `names the server software (${banners.join(', ')})` : ''}`.trim(),
        'answer with Cache-Control: no-store and JSON, without server banners',
      ),
    )
  else out.push(pass('live.headers', 'refusals are JSON with Cache-Control: no-store and no server banner'))

  const foreignHost = await probe(target, 'POST', { host: FOREIGN, ...MCP_HEADERS }, LIST)
  out.push(
    foreignHost.status >= 400 && foreignHost.status !== 401 && foreignHost.status < 500
      ? pass('live.host', `a foreign Host header is refused (${foreignHost.status}) before authentication`)
      : fail('live.host', `a foreign Host header got ${foreignHost.status}: DNS rebinding is not stopped`, 'keep server.allowedHosts to the names clients use'),
  )
  const foreignOrigin = await probe(target, 'POST', { host, origin: `https://${FOREIGN}`, ...MCP_HEADERS }, LIST)
  out.push(
    foreignOrigin.status === 403
      ? pass('live.origin', 'a foreign Origin is refused (403)')
      : fail('live.origin', `a foreign Origin got ${foreignOrigin.status}, not 403`, 'keep server.allowedOrigins to the sites that may call'),
  )

  out.push(await metadataCheck(target, host))
  out.push(...(await tlsCheckLive(target)))
  return out
}

/** RFC 9728: the metadata names this resource (or there is none: API keys only). */
async function metadataCheck(target: URL, host: string): Promise<Finding> {
  const at = new URL(`/.well-known/oauth-protected-resource${target.pathname === '/' ? '' : target.pathname}`, target)
  const res = await probe(at, 'GET', { host, accept: 'application/json' })
  if (res.status === 404) return pass('live.metadata', 'no Protected Resource Metadata: the server accepts API keys only')
  if (res.status !== 200) return fail('live.metadata', `${at.pathname} answered ${res.status}`, 'serve RFC 9728 metadata or none')
  try {
    const doc = JSON.parse(res.body) as { resource?: unknown; authorization_servers?: unknown }
    if (doc.resource !== target.href)
      return fail('live.metadata', `the metadata names resource ${JSON.stringify(doc.resource)}, not ${target.href}`, 'set auth.resource to the URL clients use')
    if (!Array.isArray(doc.authorization_servers) || doc.authorization_servers.length === 0)
      return warn('live.metadata', 'the metadata lists no authorization server: interactive clients cannot sign in', 'configure an issuer or the token service')
    return pass('live.metadata', `Protected Resource Metadata names ${target.href} and ${doc.authorization_servers.length} authorization server(s)`)
  } catch {
    return fail('live.metadata', 'the metadata is not JSON', 'serve RFC 9728 metadata as JSON')
  }
}

/** Plain HTTP only on loopback; over TLS, 1.0 and 1.1 refused and 1.2 accepted. */
async function tlsCheckLive(target: URL): Promise<Finding[]> {
  if (target.protocol === 'http:')
    return [
      isLoopback(target.hostname)
        ? pass('live.tls', 'plain HTTP on a loopback address')
        : fail('live.tls', `plain HTTP to ${target.hostname}: credentials cross the network in clear`, 'serve HTTPS (server.tls)'),
    ]
  const handshake = (version: SecureVersion): Promise<string | undefined> =>
    new Promise((resolve) => {
      const socket = tlsConnect({
        host: target.hostname,
        port: Number(target.port || 443),
        servername: target.hostname,
        minVersion: version,
        maxVersion: version,
        rejectUnauthorized: false,
      })
      const done = (v: string | undefined) => {
        socket.destroy()
        resolve(v)
      }
      socket.setTimeout(PROBE_MS, () => done(undefined))
      socket.once('secureConnect', () => done(socket.getProtocol() ?? version))
      socket.once('error', () => done(undefined))
    })
  const old = (await handshake('TLSv1')) ?? (await handshake('TLSv1.1'))
  const current = await handshake('TLSv1.2')
  const out: Finding[] = []
  out.push(old === undefined ? pass('live.tls', 'TLS 1.0 and 1.1 are refused') : fail('live.tls', `${old} is accepted`, 'allow TLS 1.2 and later only'))
  if (current === undefined) out.push(warn('live.tls', 'TLS 1.2 is not accepted (TLS 1.3 only?): older clients cannot connect', 'accept TLS 1.2 unless every client speaks 1.3'))
  return out
}
