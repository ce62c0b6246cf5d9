import type { AuditLog } from '../../audit/audit-log.js'
import { parseApiKey } from '../../auth/api-key.js'
import type { ApiKeyAuthenticator } from '../../auth/authenticate.js'
import { type AuthorizationRequest, type AuthorizationServer, AuthorizeError, type FlowState, type SignedInUser } from '../../auth/authorization-server.js'
import type { BruteForce } from '../../auth/brute-force.js'
import { OAuthError, readForm } from '../../auth/client-auth.js'
import { addressSubject, countFailure, refuseIfBlocked } from '../../auth/http-auth.js'
import type { OAuthClient } from '../../auth/oauth-clients.js'
import type { OidcLogin } from '../../auth/oidc-login.js'
import { isNativeRedirect, redirectHost } from '../../auth/redirect-uri.js'
import { SecurityError, toSecurityError } from '../../errors.js'
import type { Exchange } from '../../pipeline/exchange.js'
import { html, page, readCookie, type SafeHtml, setCookie } from './pages.js'

export interface AuthorizePagesOptions {
  readonly as: AuthorizationServer
  readonly apiKeys: ApiKeyAuthenticator
  readonly bruteForce: BruteForce
  readonly audit: AuditLog
  /** Sign-in with an API key offered. */
  readonly apiKeyLogin: boolean
  readonly oidc: OidcLogin | undefined
  readonly issuer: () => string
  readonly flowSeconds: number
}

/** The cookie that binds one flow to the browser it started in: one per flow. */
const flowCookie = (flowId: string): string => `bastion_flow_${flowId.replace(/[^0-9a-f]/g, '').slice(0, 16)}`

const SEE_OTHER = (location: string, extra: Record<string, string> = {}): Response =>
  new Response(null, { status: 303, headers: { location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', ...extra } })

/**
 * The authorization endpoint's pages (RFC 6749 §4.1, OAuth 2.1, MCP authorization): the request
 * is validated, then the user signs in (API key, or the OpenID provider), then consents, and the
 * browser is sent back to the client with a code. Every step is one audited request; the flow
 * travels sealed in the page and is bound to an HttpOnly cookie (CSRF: a flow from another
 * browser does not open). Errors that cannot be trusted to a redirect are shown, never sent.
 * Does not check: the client's later token request (the token endpoint does).
 */
export function authorizePages(o: AuthorizePagesOptions): { authorize(x: Exchange): Promise<Response>; callback(x: Exchange): Promise<Response> } {
  const secure = (x: Exchange): boolean => x.http?.url.protocol === 'https:'

  const errorPage = async (x: Exchange, error: AuthorizeError | SecurityError): Promise<Response> => {
    const failure = error instanceof SecurityError ? error : new SecurityError('ERR_INVALID_REQUEST', `${error.error}: ${error.detail}`)
    x.audit.fail(failure, 'oauth.authorize')
    const shown =
      error instanceof AuthorizeError
        ? error.error === 'unauthorized_client'
          ? 'this application could not be identified'
          : error.detail
        : failure.code === 'ERR_AUTH_UNAVAILABLE'
          ? 'the sign-in service is unavailable; try again later'
          : 'the request could not be completed'
    const status = failure.code === 'ERR_AUTH_UNAVAILABLE' ? 503 : 400
    await x.audit.commit({ status })
    return page({
      status,
      title: 'Sign-in failed',
      body: html`<main id="error"><h1>This sign-in cannot continue</h1><p class="bad">${shown}.</p><p class="muted">Return to the application and start again. Request id <code>${x.requestId}</code>.</p></main>`,
    })
  }

  /** Send an error to the client: only once client and redirect URI are known good. */
  const redirectError = async (x: Exchange, error: AuthorizeError, to: { redirectUri: string; state: string | null }): Promise<Response> => {
    x.audit.fail(new SecurityError(error.error === 'access_denied' ? 'ERR_FORBIDDEN' : 'ERR_INVALID_REQUEST', `${error.error}: ${error.detail}`), 'oauth.authorize')
    x.audit.note({ redirectHost: redirectHost(to.redirectUri), oauthError: error.error })
    await x.audit.commit({ status: 303 })
    return SEE_OTHER(o.as.responseUrl(to.redirectUri, to.state, { error: error.error, error_description: error.detail.slice(0, 200) }))
  }

  const describe = (x: Exchange, request: AuthorizationRequest): void => {
    x.audit.note({ client: request.clientId.slice(0, 300), redirectHost: redirectHost(request.redirectUri), scope: request.scopes.join(' ') })
  }

  const clientLine = (request: AuthorizationRequest, client: OAuthClient | undefined): SafeHtml =>
    html`<p><strong>${request.clientName}</strong></p><p class="muted">${client?.source === 'metadata-document' ? 'identified by ' : 'client id '}<code>${request.clientId}</code>${client?.source === 'registered' ? ' — registered itself; its name is not verified' : ''}</p>`

  const signInPage = (flow: FlowState, client: OAuthClient | undefined, notice?: string): Response => {
    const sealed = o.as.seal(flow)
    const key = o.apiKeyLogin
      ? html`<label for="api_key">API key</label><input id="api_key" name="api_key" type="password" autocomplete="off" spellcheck="false" placeholder="bst_…" required maxlength="512"><div class="row"><button id="signin-key" class="primary" name="action" value="key" type="submit">Sign in</button></div>`
      : html``
    const sso =
      o.oidc === undefined
        ? html``
        : html`${o.apiKeyLogin ? html`<hr>` : html``}<div class="row"><button id="signin-oidc" name="action" value="oidc" type="submit" formnovalidate>${o.oidc.label}</button></div>`
    return page({
      title: 'Sign in — mcp-bastion',
      // A remembered consent answers the sign-in form with the redirect itself.
      formTargets: [flow.request.redirectUri, ...(o.oidc === undefined ? [] : [o.oidc.issuer])],
      body: html`<main><h1>Sign in to mcp-bastion</h1><p>An application asks to use this MCP server on your behalf:</p>${clientLine(flow.request, client)}${notice === undefined ? html`` : html`<p class="bad" id="notice">${notice}</p>`}<form id="signin" method="post" action="/oauth/authorize"><input type="hidden" name="flow" value="${sealed}">${key}${sso}</form></main>`,
    })
  }

  const consentPage = (flow: FlowState & { user: SignedInUser }, client: OAuthClient | undefined): Response => {
    const r = flow.request
    const native = isNativeRedirect(r.redirectUri)
    const warning = native
      ? html`<div class="warn" id="local-warning">The code goes to <strong>this computer</strong> (${redirectHost(r.redirectUri)}). Any program on it could receive it: allow only if you started this sign-in yourself, just now.</div>`
      : html``
    const scopes = r.scopes.length === 0 ? html`<li class="muted">no OAuth scopes</li>` : r.scopes.map((s) => html`<li><code>${s}</code></li>`)
    const roles = flow.user.roles.length === 0 ? html`<li class="muted">no roles</li>` : flow.user.roles.map((s) => html`<li><code>${s}</code></li>`)
    return page({
      title: 'Allow access? — mcp-bastion',
      formTargets: [r.redirectUri],
      body: html`<main><h1>Allow access?</h1>${clientLine(r, client)}<p>will be sent back to</p><p class="host" id="redirect-host">${redirectHost(r.redirectUri)}</p>${warning}<p>It will act as <strong>${flow.user.name}</strong> with:</p><ul id="scopes">${scopes}</ul><p>Roles:</p><ul id="roles">${roles}</ul><p class="muted">Until revoked (<code>mcp-bastion grants revoke</code>) or the sign-in ends.</p><form id="consent" method="post" action="/oauth/authorize"><input type="hidden" name="flow" value="${o.as.seal(flow)}"><div class="row"><button id="deny" name="action" value="deny" type="submit">Deny</button><button id="allow" class="primary" name="action" value="allow" type="submit">Allow</button></div></form></main>`,
    })
  }

  /** Signed in: straight back with a code if consent stands, else the consent page. */
  const signedIn = async (x: Exchange, flow: FlowState, user: SignedInUser): Promise<Response> => {
    x.principal = { id: user.via === 'api-key' ? `key:${user.sub}` : user.sub, kind: user.via === 'api-key' ? 'api-key' : 'jwt', name: user.name, roles: user.roles }
    if (await o.as.consented(user, flow.request)) return grant(x, flow, user, 'remembered')
    x.audit.allow('oauth.signin')
    x.audit.note({ via: user.via })
    await x.audit.commit({ status: 200 })
    return consentPage({ ...flow, user }, await o.as.clients.resolve(flow.request.clientId).catch(() => undefined))
  }

  const grant = async (x: Exchange, flow: FlowState, user: SignedInUser, consent: 'given' | 'remembered'): Promise<Response> => {
    const request = flow.request
    await o.as.spend(flow)
    const code = await o.as.issueCode(user, request)
    x.audit.allow('oauth.authorized')
    x.audit.note({ consent, via: user.via })
    await x.audit.commit({ status: 303 })
    return SEE_OTHER(o.as.responseUrl(request.redirectUri, request.state, { code }), {
      'set-cookie': setCookie(flowCookie(flow.id), '', { secure: secure(x), maxAgeSeconds: 0, sameSite: 'Lax' }),
    })
  }

  const start = async (x: Exchange, params: URLSearchParams): Promise<Response> => {
    const { request, client } = await o.as.validate(params)
    describe(x, request)
    const binding = o.as.newBinding()
    const flow = o.as.startFlow(request, binding.hash)
    x.audit.allow('oauth.authorize')
    await x.audit.commit({ status: 200 })
    const response = signInPage(flow, client)
    response.headers.append('set-cookie', setCookie(flowCookie(flow.id), binding.cookie, { secure: secure(x), maxAgeSeconds: o.flowSeconds, sameSite: 'Lax' }))
    return response
  }

  const signInWithKey = async (x: Exchange, flow: FlowState, form: URLSearchParams): Promise<Response> => {
    if (!o.apiKeyLogin) throw new AuthorizeError('invalid_request', 'sign-in with an API key is off')
    const key = (form.get('api_key') ?? '').trim()
    const keyId = parseApiKey(key)?.id
    const subjects = [addressSubject(x), ...(keyId === undefined ? [] : [`key:${keyId}`])]
    for (const subject of subjects) refuseIfBlocked(o.bruteForce, subject)
    try {
      const principal = o.apiKeys.verify(key)
      return await signedIn(x, flow, { sub: principal.id.replace(/^key:/, ''), via: 'api-key', name: principal.name, roles: principal.roles })
    } catch (error) {
      const failure = toSecurityError(error)
      if (!failure.code.startsWith('ERR_AUTH_')) throw error
      countFailure(o.bruteForce, o.audit, x, subjects)
      x.audit.fail(failure, 'oauth.signin')
      await x.audit.commit({ status: 401 })
      const client = await o.as.clients.resolve(flow.request.clientId).catch(() => undefined)
      const response = signInPage(flow, client, 'That key was not accepted (wrong, expired or revoked).')
      return new Response(response.body, { status: 401, headers: response.headers })
    }
  }

  const continueFlow = async (x: Exchange, form: URLSearchParams): Promise<Response> => {
    const request = x.http?.request
    if (request === undefined) throw new SecurityError('ERR_INTERNAL', 'no request')
    const flow = o.as.open(form.get('flow'), (id) => readCookie(request, flowCookie(id), secure(x)))
    describe(x, flow.request)
    const action = form.get('action')
    if (action === 'key') return signInWithKey(x, flow, form)
    if (action === 'oidc') {
      if (o.oidc === undefined) throw new AuthorizeError('invalid_request', 'no OpenID provider is configured')
      // The provider's state is the flow itself (sealed, bound to this browser's cookie).
      const check = o.oidc.newCheck()
      const url = await o.oidc.authorizationUrl(`${o.issuer()}/oauth/callback`, o.as.seal({ ...flow, upstream: check }), check)
      x.audit.allow('oauth.signin_redirect')
      await x.audit.commit({ status: 303 })
      return SEE_OTHER(url)
    }
    const user = flow.user
    if (user === undefined) throw new AuthorizeError('invalid_request', 'not signed in')
    x.principal = { id: user.via === 'api-key' ? `key:${user.sub}` : user.sub, kind: user.via === 'api-key' ? 'api-key' : 'jwt', name: user.name, roles: user.roles }
    if (action === 'allow') return grant(x, flow, user, 'given')
    if (action === 'deny') throw new AuthorizeError('access_denied', 'the user denied access', { redirectUri: flow.request.redirectUri, state: flow.request.state })
    throw new AuthorizeError('invalid_request', 'unknown action')
  }

  const handle = async (x: Exchange, run: () => Promise<Response>): Promise<Response> => {
    try {
      return await run()
    } catch (error) {
      if (error instanceof AuthorizeError) return error.to === undefined ? errorPage(x, error) : redirectError(x, error, error.to)
      if (error instanceof OAuthError) return errorPage(x, new AuthorizeError('invalid_request', error.detail))
      const failure = toSecurityError(error)
      if (failure.code === 'ERR_AUTH_BLOCKED' || failure.code === 'ERR_AUDIT_UNAVAILABLE') throw failure
      return errorPage(x, failure)
    }
  }

  return {
    async authorize(x) {
      x.method = 'oauth/authorize'
      const request = x.http?.request
      return handle(x, async () => {
        if (request === undefined) throw new SecurityError('ERR_INTERNAL', 'no request')
        if (request.method === 'GET' || request.method === 'HEAD') return start(x, x.http?.url.searchParams ?? new URLSearchParams())
        if (request.method !== 'POST') throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `${request.method.slice(0, 16)} /oauth/authorize`)
        const form = await readForm(x)
        // RFC 6749 §3.1: the authorization request may be POSTed too; a continuation carries its flow.
        return form.has('flow') ? continueFlow(x, form) : start(x, form)
      })
    },
    async callback(x) {
      x.method = 'oauth/callback'
      return handle(x, async () => {
        const url = x.http?.url
        const request = x.http?.request
        if (url === undefined || request === undefined || o.oidc === undefined) throw new SecurityError('ERR_NOT_FOUND', 'no OpenID provider is configured')
        const state = url.searchParams.get('state')
        const flow = o.as.open(state, (id) => readCookie(request, flowCookie(id), secure(x)))
        describe(x, flow.request)
        if (flow.upstream === undefined || state === null) throw new AuthorizeError('invalid_request', 'no sign-in with the provider was started')
        if (url.searchParams.has('error'))
          throw new AuthorizeError('access_denied', `the provider refused the sign-in`, { redirectUri: flow.request.redirectUri, state: flow.request.state })
        const user = await o.oidc.finish(url, state, flow.upstream)
        const { upstream: _done, ...rest } = flow
        return signedIn(x, rest, user)
      })
    },
  }
}
