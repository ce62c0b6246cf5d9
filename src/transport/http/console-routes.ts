import { randomBytes } from 'node:crypto'
import { parseApiKey } from '../../auth/api-key.js'
import { addressSubject, countFailure, refuseIfBlocked } from '../../auth/http-auth.js'
import { type ConsoleSession, type ConsoleUser, sameSecret } from '../../console/sessions.js'
import { SecurityError, toSecurityError, WIRE } from '../../errors.js'
import { readBytes } from '../../limits/body-guard.js'
import { parseJsonBody } from '../../limits/json-body.js'
import type { Guard } from '../../pipeline/compose.js'
import type { Exchange } from '../../pipeline/exchange.js'
import { hasPermission } from '../../policy/rbac.js'
import type { Principal } from '../../principal.js'
import { consoleApi } from './console-api.js'
import { consolePages } from './console-page-routes.js'
import { signInBody } from './console-pages.js'
import { CONSOLE_SCRIPT } from './console-script.js'
import { CONSOLE_ADMIN, CONSOLE_READ, type ConsoleRequest, type ConsoleRouteOptions } from './console-types.js'
import { pageRefusals } from './page-refusals.js'
import { html, page, readCookie, setCookie } from './pages.js'

export { CONSOLE_ADMIN, CONSOLE_READ, type ConsoleRequest, type ConsoleRouteOptions } from './console-types.js'

const COOKIE = 'bastion_console'
const PRE_COOKIE = 'bastion_console_pre'
const MAX_BODY = 256 * 1024

const secureOf = (x: Exchange): boolean => x.http?.url.protocol === 'https:'

/** The body's bytes, read no further than {@link MAX_BODY} (a larger declared length is refused unread). */
async function bodyBytes(request: Request): Promise<Uint8Array> {
  const declared = Number(request.headers.get('content-length') ?? '0')
  if (!(declared <= MAX_BODY)) throw new SecurityError('ERR_BODY_TOO_LARGE', 'console body over 256 KiB')
  return readBytes(request.body, MAX_BODY)
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })

/** A form body (strict UTF-8). */
async function formBody(request: Request): Promise<URLSearchParams> {
  try {
    return new URLSearchParams(UTF8.decode(await bodyBytes(request)))
  } catch (error) {
    if (error instanceof SecurityError) throw error
    throw new SecurityError('ERR_INVALID_REQUEST', 'console form is not UTF-8')
  }
}

/** The principal a console user acts as, on its audit lines. */
export const principalOf = (u: ConsoleUser): Principal => ({ id: u.principal, kind: 'api-key', name: u.name, roles: u.roles })

/**
 * The operator console under its path: the sign-in page, the pages and the JSON API, each request
 * one audited exchange (as `console.*` events; `method` is `console/<page>`). A browser signs in
 * with an API key holding `console:read` or `console:admin` and gets a server-side session
 * (HttpOnly, SameSite=Strict cookie; `__Host-` and Secure over HTTPS); every POST from a session
 * must carry the session's CSRF token and come from this origin. Scripts call the API with their
 * own credential (no cookie, no CSRF token). Sign-in failures count toward the brute-force blocks.
 * Does not check: what the pages show (the service decides), the Host and Origin allowlists (the
 * stages before it do).
 */
export function consoleRouter(o: ConsoleRouteOptions): (x: Exchange) => Promise<Response> {
  const pages = consolePages(o)
  const api = consoleApi(o)
  const done = async (x: Exchange, response: Response): Promise<Response> => {
    await x.audit.commit({ status: response.status })
    return response
  }

  /** The user a key stands for now: its roles re-read, undefined when it no longer opens the console. */
  const userOfKey = (keyId: string): ConsoleUser | undefined => {
    const key = o.keys.get(keyId)
    if (key === undefined || key.revokedAt !== null || (key.expiresAt !== null && Date.parse(key.expiresAt) <= Date.now())) return undefined
    return userOf({ id: `key:${key.id}`, kind: 'api-key', name: key.name, roles: key.roles }, key.id)
  }
  const userOf = (p: Principal, keyId: string): ConsoleUser | undefined => {
    const admin = hasPermission(o.grants, p, CONSOLE_ADMIN)
    if (!admin && !hasPermission(o.grants, p, CONSOLE_READ)) return undefined
    return { principal: p.id, keyId, name: p.name, roles: p.roles, admin }
  }

  const signInPage = (x: Exchange, status: number, notice?: string): Response => {
    const pre = randomBytes(24).toString('base64url')
    const response = page({ status, title: 'Sign in — mcp-bastion console', body: signInBody(o.path, pre, notice) })
    response.headers.append('set-cookie', setCookie(PRE_COOKIE, pre, { secure: secureOf(x), maxAgeSeconds: 600, sameSite: 'Strict' }))
    return response
  }

  const signIn = async (x: Exchange, request: Request): Promise<Response> => {
    x.method = 'console/signin'
    if (request.method === 'GET' || request.method === 'HEAD') {
      x.audit.allow('console.signin_page')
      return done(x, signInPage(x, 200))
    }
    if (request.method !== 'POST') throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `${request.method.slice(0, 16)} ${o.path}/signin`)
    sameOrigin(x)
    const form = await formBody(request)
    // Login CSRF: the form's token must equal the cookie set with the form (a page of another site cannot read it).
    const pre = readCookie(request, PRE_COOKIE, secureOf(x))
    // The server sets 32 characters; an empty or short cookie was not set by it.
    if (pre === undefined || pre.length < 32 || !sameSecret(form.get('csrf') ?? '', pre))
      throw new SecurityError('ERR_FORBIDDEN', 'console sign-in without the form token (CSRF, or cookies off)')
    const key = (form.get('api_key') ?? '').trim()
    const keyId = parseApiKey(key)?.id
    const subjects = [addressSubject(x), ...(keyId === undefined ? [] : [`key:${keyId}`])]
    for (const subject of subjects) refuseIfBlocked(o.bruteForce, subject)
    let principal: Principal
    try {
      principal = o.apiKeys.verify(key)
    } catch (error) {
      const failure = toSecurityError(error)
      if (!failure.code.startsWith('ERR_AUTH_')) throw error
      countFailure(o.bruteForce, o.audit, x, subjects)
      x.audit.fail(failure, 'console.signin')
      return done(x, signInPage(x, 401, 'That key was not accepted (wrong, expired or revoked).'))
    }
    x.principal = principal
    const user = keyId === undefined ? undefined : userOf(principal, keyId)
    if (user === undefined) {
      x.audit.fail(new SecurityError('ERR_FORBIDDEN', `no role of ${principal.id} grants ${CONSOLE_READ}`), 'console.signin')
      return done(x, signInPage(x, 403, `This key's roles do not hold ${CONSOLE_READ} or ${CONSOLE_ADMIN}.`))
    }
    // Always a new session: a cookie planted before sign-in is never the signed-in one (fixation).
    o.sessions.end(readCookie(request, COOKIE, secureOf(x)))
    const { token } = o.sessions.create(user)
    x.audit.allow('console.signin')
    x.audit.note({ admin: user.admin })
    const response = new Response(null, { status: 303, headers: { location: o.path, 'cache-control': 'no-store' } })
    response.headers.append('set-cookie', setCookie(COOKIE, token, { secure: secureOf(x), maxAgeSeconds: o.sessionSeconds, sameSite: 'Strict' }))
    response.headers.append('set-cookie', setCookie(PRE_COOKIE, '', { secure: secureOf(x), maxAgeSeconds: 0, sameSite: 'Strict' }))
    return done(x, response)
  }

  /** A POST riding on a cookie must come from this very origin (not merely an allowed one). */
  const sameOrigin = (x: Exchange): void => {
    const url = x.http?.url
    const origin = x.http?.request.headers.get('origin')
    if (url === undefined) throw new SecurityError('ERR_INTERNAL', 'no request')
    if (origin !== null && origin !== undefined && origin.toLowerCase() !== url.origin.toLowerCase())
      throw new SecurityError('ERR_ORIGIN_FORBIDDEN', `console POST from ${origin.slice(0, 200)}`)
    const site = x.http?.request.headers.get('sec-fetch-site')
    if (site !== null && site !== undefined && site !== 'same-origin' && site !== 'none')
      throw new SecurityError('ERR_FORBIDDEN', `console POST with Sec-Fetch-Site ${site.slice(0, 40)}`)
  }

  const signOut = async (x: Exchange, request: Request, session: ConsoleSession | undefined, form: URLSearchParams | undefined): Promise<Response> => {
    x.method = 'console/signout'
    if (request.method !== 'POST' || session === undefined || form === undefined) throw new SecurityError('ERR_METHOD_NOT_ALLOWED', 'sign-out is a POST from a session')
    o.sessions.end(readCookie(request, COOKIE, secureOf(x)))
    x.audit.allow('console.signout')
    const response = new Response(null, { status: 303, headers: { location: `${o.path}/signin`, 'cache-control': 'no-store' } })
    response.headers.append('set-cookie', setCookie(COOKIE, '', { secure: secureOf(x), maxAgeSeconds: 0, sameSite: 'Strict' }))
    return done(x, response)
  }

  return async function consoleRoute(x) {
    const http = x.http
    if (http === undefined) throw new SecurityError('ERR_INTERNAL', 'console over HTTP only')
    const { request, url } = http
    const sub = url.pathname.slice(o.path.length)
    x.method = consoleMethod(sub)
    if (sub === '/assets/console.js') {
      if (request.method !== 'GET' && request.method !== 'HEAD') throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `${request.method.slice(0, 16)} console asset`)
      x.audit.allow('console.asset')
      return done(
        x,
        new Response(CONSOLE_SCRIPT, {
          headers: {
            'content-type': 'text/javascript; charset=utf-8',
            'cache-control': 'no-cache',
            'x-content-type-options': 'nosniff',
            'cross-origin-resource-policy': 'same-origin',
          },
        }),
      )
    }
    if (sub === '/signin') return signIn(x, request)
    const isApi = sub === '/api' || sub.startsWith('/api/')
    const token = readCookie(request, COOKIE, secureOf(x))
    const session = o.sessions.get(token)
    let user: ConsoleUser | undefined
    if (session !== undefined) {
      user = userOfKey(session.user.keyId)
      // The key was revoked, expired or lost its console role: the session ends with it.
      if (user === undefined) o.sessions.end(token)
    }
    if (user === undefined && isApi && token === undefined) {
      // A script with its own credential: authenticated like any client (brute-force blocks included).
      let principal: Principal | undefined
      await o.authenticate(x, async () => {
        principal = x.principal
      })
      if (principal === undefined) throw new SecurityError('ERR_AUTH_MISSING', 'console API without a credential')
      user = userOf(principal, principal.id.replace(/^key:/, ''))
      if (user === undefined) throw new SecurityError('ERR_FORBIDDEN', `no role of ${principal.id} grants ${CONSOLE_READ}`)
      await o.rateLimit(x, async () => undefined)
      return api(x, {
        x,
        url,
        sub: sub.slice(4),
        method: request.method,
        user,
        session: undefined,
        form: undefined,
        json: request.method === 'POST' ? await jsonBody(request, o.maxJsonDepth) : undefined,
        origin: url.origin,
      })
    }
    if (user === undefined || session === undefined) {
      if (isApi) throw new SecurityError('ERR_AUTH_MISSING', token === undefined ? 'console API without a session or credential' : 'console session ended')
      x.audit.allow('console.signin_redirect')
      return done(x, new Response(null, { status: 303, headers: { location: `${o.path}/signin`, 'cache-control': 'no-store' } }))
    }
    x.principal = principalOf(user)
    await o.rateLimit(x, async () => undefined)
    let form: URLSearchParams | undefined
    let json: unknown
    if (request.method === 'POST') {
      sameOrigin(x)
      let presented: string
      if ((request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/json')) {
        json = await jsonBody(request, o.maxJsonDepth)
        presented = request.headers.get('x-csrf-token') ?? ''
      } else {
        form = await formBody(request)
        presented = form.get('csrf') ?? request.headers.get('x-csrf-token') ?? ''
      }
      if (!sameSecret(presented, session.csrf)) throw new SecurityError('ERR_FORBIDDEN', 'console POST without the session CSRF token')
    }
    if (sub === '/signout') return signOut(x, request, session, form)
    const req: ConsoleRequest = { x, url, sub: isApi ? sub.slice(4) : sub, method: request.method, user, session, form, json, origin: url.origin }
    return isApi ? api(x, req) : pages(x, req)
  }
}

/** The page (or API call) as an audit line's `method`: ids in the path are noted by the action, not kept here. */
export function consoleMethod(sub: string): string {
  return `console/${
    sub
      .replace(/^\//, '')
      .replace(/\/[0-9a-f]{16,32}\//, '/:id/')
      .slice(0, 48) || 'overview'
  }`
}

/** A JSON body: the project's one parse (strict UTF-8, the server's depth cap, then JSON.parse once). */
async function jsonBody(request: Request, maxDepth: number): Promise<unknown> {
  if (!(request.headers.get('content-type') ?? '').toLowerCase().startsWith('application/json'))
    throw new SecurityError('ERR_UNSUPPORTED_MEDIA_TYPE', 'console API POST body must be JSON')
  return parseJsonBody(await bodyBytes(request), { maxBytes: MAX_BODY, maxDepth })
}

/**
 * Outermost on the console: a refusal the shared stages rendered as JSON is shown to the person as a
 * page (the API's answers stay JSON). Does not check: anything.
 */
export function consolePageRefusals(path: string): Guard<Exchange, Response> {
  return pageRefusals({
    title: 'Refused — mcp-bastion console',
    heading: 'Refused',
    text: (code) => (code === 'ERR_FORBIDDEN' ? 'this needs a role your key does not hold, or the form was stale (reload the page and try again)' : WIRE[code].text),
    footer: html`<p><a href="${path}">Back to the console</a></p>`,
    keepHeaders: ['retry-after', 'x-request-id', 'www-authenticate'],
    keepJson: (x) => (x.http?.url.pathname ?? '').startsWith(`${path}/api`),
  })
}
