import { createHash, timingSafeEqual } from 'node:crypto'
import { ClientError, type ClientRegistry } from '../../auth/oauth-clients.js'
import { redirectHost } from '../../auth/redirect-uri.js'
import { SecurityError } from '../../errors.js'
import { addressKey } from '../../limits/rate-plan.js'
import type { Exchange } from '../../pipeline/exchange.js'

export interface RegistrationOptions {
  readonly clients: ClientRegistry
  /** RFC 7591 §3: registrations need `Authorization: Bearer <this>`. */
  readonly initialAccessToken: string | undefined
  readonly perMinute: number
}

const MAX_BODY = 16 * 1024
/** Addresses whose registrations this minute are counted. */
const MAX_WINDOWS = 10_000
const JSON_NO_STORE = { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' }

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/**
 * `POST /oauth/register` (RFC 7591): JSON client metadata in, the registration out (201), errors
 * as RFC 7591 §3.2.2 JSON. At most `perMinute` registrations per client address a minute (this
 * process's count); with an initial access token configured, only its holders register.
 * Does not check: the metadata (ClientRegistry.register does).
 */
export function registerTerminal(o: RegistrationOptions): (x: Exchange) => Promise<Response> {
  const windows = new Map<string, { start: number; count: number }>()
  const refuse = async (x: Exchange, status: number, error: string, description: string): Promise<Response> => {
    x.audit.note({ oauthError: error })
    const code = status === 401 ? 'ERR_AUTH_INVALID' : status === 429 ? 'ERR_RATE_LIMITED' : 'ERR_INVALID_REQUEST'
    x.audit.fail(new SecurityError(code, `${error}: ${description}`), 'oauth.register')
    await x.audit.commit({ status })
    const headers: Record<string, string> = { ...JSON_NO_STORE }
    if (status === 401) headers['www-authenticate'] = 'Bearer realm="mcp-bastion", error="invalid_token"'
    if (status === 429) headers['retry-after'] = '60'
    return new Response(JSON.stringify({ error, error_description: description }), { status, headers })
  }
  return async function registerClient(x) {
    x.method = 'oauth/register'
    const request = x.http?.request
    if (request === undefined || request.method !== 'POST') return refuse(x, 405, 'invalid_request', 'POST only')
    if (o.initialAccessToken !== undefined) {
      const presented = /^Bearer ([\x21-\x7E]{1,1024})$/i.exec(request.headers.get('authorization') ?? '')?.[1] ?? ''
      if (!timingSafeEqual(digest(presented), digest(o.initialAccessToken))) return refuse(x, 401, 'invalid_token', 'an initial access token is required')
    }
    const now = Date.now()
    const subject = addressKey(x.remoteAddress)
    const window = windows.get(subject)
    if (window === undefined || now - window.start >= 60_000) {
      // Bounded: expired windows go first; if it is still full of live ones (a flood from many
      // addresses), registration is refused rather than every address's count forgotten.
      if (windows.size >= MAX_WINDOWS) for (const [k, w] of windows) if (now - w.start >= 60_000) windows.delete(k)
      if (windows.size >= MAX_WINDOWS && window === undefined) return refuse(x, 429, 'invalid_request', 'too many registrations; wait a minute')
      windows.set(subject, { start: now, count: 1 })
    } else if (++window.count > o.perMinute) return refuse(x, 429, 'invalid_request', 'too many registrations from this address; wait a minute')
    if (!(request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/json')) return refuse(x, 400, 'invalid_client_metadata', 'send application/json')
    const declared = Number(request.headers.get('content-length') ?? '0')
    if (!(declared <= MAX_BODY)) return refuse(x, 413, 'invalid_client_metadata', 'metadata too large')
    const buffer = Buffer.from(await request.arrayBuffer())
    if (buffer.length > MAX_BODY) return refuse(x, 413, 'invalid_client_metadata', 'metadata too large')
    let metadata: unknown
    try {
      metadata = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buffer))
    } catch {
      return refuse(x, 400, 'invalid_client_metadata', 'not JSON')
    }
    try {
      const registered = await o.clients.register(metadata)
      x.audit.allow('oauth.registered')
      x.audit.note({ client: registered.client_id, clientName: registered.client_name, redirectHosts: (registered.redirect_uris as string[]).map((u) => redirectHost(u)) })
      await x.audit.commit({ status: 201 })
      return new Response(JSON.stringify(registered), { status: 201, headers: JSON_NO_STORE })
    } catch (error) {
      if (!(error instanceof ClientError)) throw error
      const [code = 'invalid_client_metadata', ...rest] = error.message.split(': ')
      return refuse(x, 400, code, rest.join(': '))
    }
  }
}
