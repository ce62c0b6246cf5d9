import { SecurityError } from '../../errors.js'
import type { Exchange } from '../../pipeline/exchange.js'
import { navBar, overviewBody, type Section } from './console-pages.js'
import { argumentsOf, listOf, rangeOf, ShownError, trailQueryOf } from './console-query.js'
import { CONSOLE_SCRIPT } from './console-script.js'
import type { ConsoleRequest, ConsoleRouteOptions } from './console-types.js'
import { auditBody, type ExplainForm, explainBody, explainResult, keysBody, limitsBody, replayResult, upstreamsBody } from './console-views.js'
import { html, type PageScript, page, type SafeHtml, scriptHash } from './pages.js'

const SCRIPT_SHA256 = scriptHash(CONSOLE_SCRIPT)

/**
 * The console's HTML pages: each GET renders one page; each POST (from a page's form) acts and
 * renders the page again with the outcome. Every one is audited by the caller's exchange as
 * `console.<page>` (actions as `console.key.created`, `console.key.revoked`, `console.grant.revoked`).
 * Does not check: the session or CSRF (console-routes.ts did), who may act (checked here per action).
 */
export function consolePages(o: ConsoleRouteOptions): (x: Exchange, r: ConsoleRequest) => Promise<Response> {
  const { service, path: base } = o
  const source = (): string => (service.trailKind === 'postgres' ? 'PostgreSQL audit table' : service.trailKind === 'file' ? 'audit file' : 'no readable trail (stdout sink)')

  const render = async (x: Exchange, r: ConsoleRequest, section: Section, title: string, body: SafeHtml, status = 200, scripts: readonly PageScript[] = []): Promise<Response> => {
    const chrome = { base, user: r.user, csrf: r.session?.csrf ?? '', upstreams: o.upstreams }
    const response = page({ status, title: `${title} — mcp-bastion console`, body: html`${navBar(chrome, section)}<main class="wide" id="content">${body}</main>`, scripts })
    await x.audit.commit({ status })
    return response
  }
  /**
   * The operator's own input refused (our words: a filter, arguments, a candidate policy): shown on
   * the page it came from, and the line records the refusal. Anything else is thrown on.
   */
  const problem = (x: Exchange, error: unknown): SafeHtml => {
    const shown = error instanceof ShownError ? error : error instanceof SecurityError && error.code === 'ERR_INVALID_REQUEST' ? new ShownError(error.message) : undefined
    if (shown === undefined) throw error
    x.audit.fail(shown)
    return html`<p class="bad" id="problem" role="alert">${shown.message}</p>`
  }
  const admin = (r: ConsoleRequest, what: string): void => {
    if (!r.user.admin) throw new SecurityError('ERR_FORBIDDEN', `${r.user.principal} holds console:read only: cannot ${what}`)
  }
  const only = (r: ConsoleRequest, method: 'GET' | 'POST'): void => {
    if (r.method === method || (method === 'GET' && r.method === 'HEAD')) return
    throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `${r.method.slice(0, 16)} ${base}${r.sub}`)
  }

  const overview = async (x: Exchange, r: ConsoleRequest): Promise<Response> => {
    only(r, 'GET')
    x.audit.allow('console.overview')
    if (service.trailKind === undefined)
      return render(
        x,
        r,
        'overview',
        'Overview',
        html`<h1>Overview</h1><p class="warn">The audit sink is stdout: the console cannot read the trail. Keys and limits still work.</p>`,
      )
    return render(x, r, 'overview', 'Overview', overviewBody(base, await service.overview(), source()))
  }

  const audit = async (x: Exchange, r: ConsoleRequest): Promise<Response> => {
    only(r, 'GET')
    x.audit.allow('console.audit')
    let q: ReturnType<typeof trailQueryOf>
    try {
      q = trailQueryOf(r.url.searchParams)
    } catch (error) {
      return render(x, r, 'audit', 'Audit', html`<h1>Audit trail</h1>${problem(x, error)}<p><a href="${base}/audit">Clear the filter</a></p>`, 400)
    }
    const { after: _after, ...shownQuery } = q
    const { page: found, verification } = await service.audit(shownQuery)
    return render(x, r, 'audit', 'Audit', auditBody(base, shownQuery, found, verification, source()), 200, [{ src: `${base}/assets/console.js`, sha256: SCRIPT_SHA256 }])
  }

  const explain = async (x: Exchange, r: ConsoleRequest, replayed?: SafeHtml, form: ExplainForm = {}, replayStatus = 200): Promise<Response> => {
    if (replayed === undefined) x.audit.allow('console.explain')
    let status = replayStatus
    const p = r.url.searchParams
    const f: ExplainForm = { ...form }
    const set = (k: keyof ExplainForm, v: string | null): void => {
      if (v !== null && v !== '') (f as Record<string, string>)[k] = v.slice(0, 100_000)
    }
    for (const k of ['requestId', 'principal', 'roles', 'tool', 'args'] as const) set(k, p.get(k))
    let result: SafeHtml | undefined
    try {
      if (f.requestId !== undefined && replayed === undefined) {
        x.audit.note({ explained: f.requestId.slice(0, 200) })
        const record = await service.line(f.requestId)
        result = record === undefined ? html`<p class="bad" id="problem">No line with request id <code>${f.requestId}</code>.</p>` : explainResult(service.explainRecord(record))
      } else if (f.tool !== undefined && replayed === undefined) {
        result = explainResult(service.explainInput({ principal: f.principal ?? 'explain', roles: listOf(f.roles), tool: f.tool, args: argumentsOf(f.args) }))
      }
    } catch (error) {
      result = problem(x, error)
      status = 400
    }
    return render(x, r, 'explain', 'Explain', explainBody(base, r.session?.csrf ?? '', f, result, replayed, o.tools()), status)
  }

  const replay = async (x: Exchange, r: ConsoleRequest): Promise<Response> => {
    only(r, 'POST')
    const form = r.form ?? new URLSearchParams()
    const f: ExplainForm = { policy: (form.get('policy') ?? '').slice(0, 200_000), from: form.get('from') ?? '', to: form.get('to') ?? '' }
    x.audit.allow('console.replay')
    let out: SafeHtml
    let status = 200
    try {
      const report = await service.replay(f.policy ?? '', rangeOf(f.from, f.to))
      x.audit.note({ replayed: report.replayed, changed: report.changes.length })
      out = replayResult(report)
    } catch (error) {
      out = problem(x, error)
      status = 400
    }
    return explain(x, r, out, f, status)
  }

  const keys = async (x: Exchange, r: ConsoleRequest, created?: { key: string; id: string }, notice?: SafeHtml): Promise<Response> => {
    admin(r, 'manage keys')
    const body = keysBody(base, r.session?.csrf ?? '', await service.keys(), o.roles, await service.oauthGrants(), created)
    return render(x, r, 'keys', 'Keys', html`${notice ?? html``}${body}`, notice === undefined ? 200 : 400)
  }

  const createKey = async (x: Exchange, r: ConsoleRequest): Promise<Response> => {
    admin(r, 'create keys')
    const form = r.form ?? new URLSearchParams()
    const days = form.get('expiresDays')
    try {
      const created = service.createKey({ name: form.get('name') ?? '', roles: form.getAll('roles'), expiresDays: days === null || days === '' ? undefined : Number(days) })
      x.audit.allow('console.key.created')
      x.audit.note({ key: created.id, keyRoles: form.getAll('roles').slice(0, 64) })
      return keys(x, r, created)
    } catch (error) {
      return keys(x, r, undefined, problem(x, error))
    }
  }

  const revoke = async (x: Exchange, r: ConsoleRequest, what: 'key' | 'grant'): Promise<Response> => {
    admin(r, `revoke ${what}s`)
    const id = r.form?.get('id') ?? ''
    if (!(what === 'key' ? /^[0-9a-f]{16}$/ : /^[0-9a-f]{32}$/).test(id)) throw new SecurityError('ERR_INVALID_REQUEST', `not a ${what} id`)
    if (what === 'key') {
      service.revokeKey(id)
      o.sessions.endKey(id)
    } else await service.revokeGrant(id)
    x.audit.allow(`console.${what}.revoked`)
    x.audit.note({ [what]: id })
    return keys(x, r, undefined)
  }

  const limits = async (x: Exchange, r: ConsoleRequest): Promise<Response> => {
    only(r, 'GET')
    x.audit.allow('console.limits')
    const data = await service.limits()
    return render(x, r, 'limits', 'Limits', limitsBody(base, { ...data, rules: service.alertRules }))
  }

  const upstreams = async (x: Exchange, r: ConsoleRequest): Promise<Response> => {
    only(r, 'GET')
    x.audit.allow('console.upstreams')
    return render(x, r, 'upstreams', 'Upstreams', upstreamsBody(service.upstreams()))
  }

  return async (x, r) => {
    switch (r.sub) {
      case '':
      case '/':
        return overview(x, r)
      case '/audit':
        return audit(x, r)
      case '/explain':
        only(r, 'GET')
        return explain(x, r)
      case '/explain/replay':
        return replay(x, r)
      case '/keys':
        if (r.method === 'POST') return createKey(x, r)
        only(r, 'GET')
        x.audit.allow('console.keys')
        return keys(x, r)
      case '/keys/revoke':
        only(r, 'POST')
        return revoke(x, r, 'key')
      case '/grants/revoke':
        only(r, 'POST')
        return revoke(x, r, 'grant')
      case '/limits':
        return limits(x, r)
      case '/upstreams':
        if (!o.upstreams) break
        return upstreams(x, r)
    }
    throw new SecurityError('ERR_NOT_FOUND', `no console page ${r.sub.slice(0, 100)}`)
  }
}
