import { SecurityError } from '../../errors.js'
import type { Exchange, Stage } from '../../pipeline/exchange.js'

/**
 * Headers that decide who is calling, where, and in which session and protocol version: a second
 * copy is refused, because a proxy that reads the last one would disagree with bastion, which would
 * read the first (RFC 9110 §5.3: only list-valued fields may repeat; RFC 9112 §3.2: one Host).
 */
export const SINGLE_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'x-api-key',
  'host',
  'mcp-session-id',
  'mcp-protocol-version',
  'mcp-method',
  'mcp-name',
  'content-type',
  'x-request-id',
  'origin',
])

/** RFC 9110 §5.5: field-value = *field-content of VCHAR, SP, HTAB and obs-text; no other control character. */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true
  }
  return false
}

const controlIn = (name: string): SecurityError =>
  new SecurityError('ERR_HEADER_INVALID', `header ${name.slice(0, 64)} holds a control character`, { expose: 'a header value holds a control character' })

/**
 * Refuse repeated security headers and header values with control characters (400), before any
 * other stage reads a header. The listener reads the raw header list once (`headerFault`); an
 * embedder's web Request, whose repeats are already merged, has its values checked here.
 * Does not check: what the values mean (each later stage parses the header it owns).
 */
export function checkHeaders(): Stage {
  return async function checkHeadersStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const http = x.http
    if (http === undefined) return next()
    if (http.headerFault !== undefined && http.headerFault !== null) throw http.headerFault
    if (http.headerFault === undefined) for (const [name, value] of http.request.headers) if (hasControl(value)) throw controlIn(name)
    return next()
  }
}

/**
 * One pass over a raw header list (name, value, name, value…): the first single-valued security
 * header present twice, or the first value with a control character; `null` when there is none.
 */
export function headerFault(raw: readonly string[]): SecurityError | null {
  let seen: Set<string> | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase()
    if (hasControl(raw[i + 1] ?? '')) return controlIn(name)
    if (!SINGLE_HEADERS.has(name)) continue
    seen ??= new Set()
    if (seen.has(name)) return new SecurityError('ERR_HEADER_INVALID', `header ${name} sent more than once`, { expose: `${name} sent more than once` })
    seen.add(name)
  }
  return null
}

// RFC 9110 §7.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ]; a reg-name of unreserved
// characters (no percent-encoding or sub-delims: no legitimate client sends them), an IPv4
// address, or an IPv6 literal in brackets.
const HOST = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?)(?::\d{1,5})?$/
// RFC 9112 §3.2.1 origin-form: absolute-path [ "?" query ], printable ASCII only, no fragment.
const ORIGIN_FORM = /^\/[\u0021-\u007e]*$/
// RFC 9110 §9.1: method = token.
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/
// Methods a web Request cannot carry (Fetch: forbidden methods).
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK'])

/**
 * The request line and Host of a raw request, checked before anything builds a URL from them.
 * @returns the refusal, or undefined when the request can be served.
 * Does not check: whether the host is allowed (the host stage does).
 */
export function requestLineError(method: string | undefined, target: string | undefined, hosts: readonly string[]): SecurityError | undefined {
  if (method === undefined || !METHOD.test(method)) return new SecurityError('ERR_METHOD_NOT_ALLOWED', 'malformed request method')
  if (FORBIDDEN_METHODS.has(method.toUpperCase())) return new SecurityError('ERR_METHOD_NOT_ALLOWED', `method ${method} is never served`)
  if (target === undefined || !ORIGIN_FORM.test(target) || target.includes('#')) return new SecurityError('ERR_INVALID_REQUEST', 'request target is not in origin-form')
  if (hosts.length !== 1)
    return new SecurityError('ERR_HEADER_INVALID', hosts.length === 0 ? 'no Host header' : 'more than one Host header', { expose: 'exactly one Host header is required' })
  const host = hosts[0] ?? ''
  if (!HOST.test(host)) return new SecurityError('ERR_HEADER_INVALID', `malformed Host header ${JSON.stringify(host.slice(0, 100))}`, { expose: 'malformed Host header' })
  // The grammar admits reg-names the WHATWG URL parser refuses (numeric labels read as IPv4, bad
  // punycode, ports past 65535): a Host no URL can be built from is malformed too.
  if (!URL.canParse(`http://${host}/`))
    return new SecurityError('ERR_HEADER_INVALID', `Host header ${JSON.stringify(host.slice(0, 100))} is not a URL authority`, { expose: 'malformed Host header' })
  return undefined
}
