import type { AuditRecord } from '../../audit/audit-log.js'
import type { Bucket, Count, RangeVerification, TrailStats } from '../../console/trail.js'
import { html, type SafeHtml } from './pages.js'

/**
 * The console's shared page parts, server-rendered: the navigation bar, charts as inline SVG
 * (no script, no style attribute: colours are SVG presentation attributes), tables and the audit
 * line view. Every value passes through {@link html}, which escapes it: caller input in the trail
 * (tool names, arguments, request ids, user agents) is shown as text, never as markup.
 */

export type Section = 'overview' | 'audit' | 'explain' | 'keys' | 'limits' | 'upstreams'

export interface Chrome {
  readonly base: string
  readonly user: { readonly name: string; readonly principal: string; readonly admin: boolean }
  readonly csrf: string
  readonly upstreams: boolean
}

const COLOURS = { allow: '#2da44e', deny: '#cf222e', error: '#bf8700' } as const

/** The bar across the top of every signed-in page. */
export function navBar(c: Chrome, active: Section): SafeHtml {
  const link = (section: Section, path: string, label: string): SafeHtml =>
    section === active ? html`<a href="${c.base}${path}" aria-current="page">${label}</a>` : html`<a href="${c.base}${path}">${label}</a>`
  return html`<nav class="bar" aria-label="Console"><strong>mcp-bastion</strong>${link('overview', '', 'Overview')}${link('audit', '/audit', 'Audit')}${link('explain', '/explain', 'Explain')}${c.user.admin ? link('keys', '/keys', 'Keys') : html``}${link('limits', '/limits', 'Limits')}${c.upstreams ? link('upstreams', '/upstreams', 'Upstreams') : html``}<span class="who">${c.user.name} (${c.user.admin ? 'admin' : 'read'})</span><form method="post" action="${c.base}/signout"><input type="hidden" name="csrf" value="${c.csrf}"><button id="signout" type="submit">Sign out</button></form></nav>`
}

const label = (t: string, per: 'minute' | 'hour'): string => (per === 'minute' ? t.slice(11, 16) : `${t.slice(5, 10)} ${t.slice(11, 13)}h`)

/** Stacked bars (allow, deny, error) per minute or hour, with a text table for screen readers. */
export function barChart(id: string, title: string, buckets: readonly Bucket[], per: 'minute' | 'hour'): SafeHtml {
  const width = 720
  const height = 160
  const top = Math.max(1, ...buckets.map((b) => b.allow + b.deny + b.error))
  const slot = width / Math.max(1, buckets.length)
  const bars = buckets.map((b, i) => {
    let y = height
    const parts = (['allow', 'deny', 'error'] as const).map((k) => {
      const h = (b[k] / top) * (height - 10)
      y -= h
      return b[k] === 0
        ? html``
        : html`<rect x="${(i * slot + 1).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, slot - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLOURS[k]}"></rect>`
    })
    return html`<g><title>${label(b.t, per)}: ${b.allow} allowed, ${b.deny} denied, ${b.error} errors</title>${parts}</g>`
  })
  const rows = buckets.filter((b) => b.allow + b.deny + b.error > 0).map((b) => html`<tr><td>${label(b.t, per)}</td><td>${b.allow}</td><td>${b.deny}</td><td>${b.error}</td></tr>`)
  return html`<figure id="${id}"><figcaption><strong>${title}</strong> <span class="legend muted"><span class="allow">■ allow</span><span class="deny">■ deny</span><span class="error">■ error</span> (peak ${top})</span></figcaption><svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${title}"><line x1="0" y1="${height - 0.5}" x2="${width}" y2="${height - 0.5}" stroke="#8c959f"></line>${bars}</svg><details><summary>As a table</summary><table><thead><tr><th>${per}</th><th>allow</th><th>deny</th><th>error</th></tr></thead><tbody>${rows}</tbody></table></details></figure>`
}

export function countTable(id: string, title: string, counts: readonly Count[], what: string, link?: (name: string) => string): SafeHtml {
  const rows =
    counts.length === 0
      ? html`<tr><td colspan="2" class="muted">none</td></tr>`
      : counts.map(
          (c) => html`<tr><td>${link === undefined ? html`<code>${c.name}</code>` : html`<a href="${link(c.name)}"><code>${c.name}</code></a>`}</td><td>${c.count}</td></tr>`,
        )
  return html`<section id="${id}"><h2>${title}</h2><table><thead><tr><th>${what}</th><th>lines</th></tr></thead><tbody>${rows}</tbody></table></section>`
}

/** The overview's figures: totals, latency, the charts and the top lists. */
export function overviewBody(base: string, s: TrailStats, source: string): SafeHtml {
  const card = (id: string, name: string, value: string | number, cls = ''): SafeHtml =>
    html`<div class="card" id="${id}"><div class="muted">${name}</div><div class="n ${cls}">${value}</div></div>`
  const ms = (v: number | undefined): string => (v === undefined ? '–' : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`)
  const filter = (field: string) => (name: string) => `${base}/audit?${new URLSearchParams({ [field]: name, from: new Date(Date.now() - 86_400_000).toISOString() }).toString()}`
  return html`<h1>Overview</h1><p class="muted">From the audit trail (${source}). Requests are lines with a request id, console pages excluded.</p>
<div class="cards">${card('hour-allow', 'Allowed, last hour', s.lastHour.allow, 'allow')}${card('hour-deny', 'Denied, last hour', s.lastHour.deny, 'deny')}${card('hour-error', 'Errors, last hour', s.lastHour.error, 'error')}${card('day-allow', 'Allowed, last day', s.lastDay.allow, 'allow')}${card('day-deny', 'Denied, last day', s.lastDay.deny, 'deny')}${card('day-error', 'Errors, last day', s.lastDay.error, 'error')}${card('p50', 'p50 latency, last hour', ms(s.p50Ms))}${card('p99', 'p99 latency, last hour', ms(s.p99Ms))}</div>
${barChart('per-minute', 'Requests per minute, last hour', s.perMinute, 'minute')}${barChart('per-hour', 'Requests per hour, last day', s.perHour, 'hour')}
<div class="grid2">${countTable('top-principals', 'Top principals (day)', s.topPrincipals, 'principal', filter('principal'))}${countTable('top-tools', 'Top tools (day)', s.topTools, 'tool', filter('tool'))}${countTable('top-denials', 'Top denial reasons (day)', s.topDenials, 'reason', filter('reason'))}</div>`
}

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v))

/** One audit line as a table row; the whole record (as stored, redacted) in a disclosure. */
export function auditRow(base: string, where: string, r: AuditRecord): SafeHtml {
  const decision = str(r.decision)
  const rid = str(r.requestId)
  const explainable = r.authz === 'allow' || r.authz === 'deny' || (r.method === 'tools/call' && r.reason === 'ERR_FORBIDDEN' && typeof r.tool === 'string')
  return html`<tr class="line" data-request-id="${rid}"><td><time>${str(r.ts)}</time></td><td><code>${str(r.event)}</code></td><td><code>${str(r.principal)}</code></td><td><code>${str(r.tool)}</code></td><td class="${decision === 'allow' || decision === 'deny' || decision === 'error' ? decision : ''}">${decision}</td><td><code>${str(r.reason)}</code></td><td class="opt"><code class="rid">${rid}</code>${explainable && rid !== '' ? html` <a href="${base}/explain?${new URLSearchParams({ requestId: rid }).toString()}">explain</a>` : html``}</td><td><details><summary>${where}</summary><pre>${JSON.stringify(r, null, 2)}</pre></details></td></tr>`
}

/** Rows for entries, or one row saying there are none. */
export function auditRows(base: string, entries: readonly { readonly where: string; readonly record: AuditRecord }[], none: string): SafeHtml | SafeHtml[] {
  return entries.length === 0 ? html`<tr class="none"><td colspan="8" class="muted">${none}</td></tr>` : entries.map((e) => auditRow(base, e.where, e.record))
}

export const AUDIT_HEAD = html`<thead><tr><th>time</th><th>event</th><th>principal</th><th>tool</th><th>decision</th><th>reason</th><th class="opt">request id</th><th>line</th></tr></thead>`

/** The chain's verdict on the lines shown. */
export function verificationBanner(v: RangeVerification | undefined): SafeHtml {
  if (v === undefined) return html`<p class="muted" id="verification">No lines match.</p>`
  if (v.status === 'verified')
    return html`<p class="ok" id="verification" data-status="verified">Chain verified for the ${v.lines} line(s) in this range: each line's MAC and its links check out.</p>`
  if (v.status === 'pending') return html`<p class="warn" id="verification" data-status="pending">Not verified yet: the verifier has not read this far; reload in a moment.</p>`
  const items = [
    ...v.problems.map((p) => html`<li><code>${p.where}</code> — ${p.kind}: ${p.reason}</li>`),
    ...v.gaps.map((g) => html`<li><code>${g.where}</code> — gap: ${g.detail}</li>`),
  ]
  return v.status === 'gap'
    ? html`<div class="warn" id="verification" data-status="gap"><strong>Gap</strong>: the lines verify, but the trail records lines that were never stored or bytes that were cut.<ul>${items}</ul></div>`
    : html`<div class="bad" id="verification" data-status="forged"><strong>Forged or damaged</strong>: some lines in this range do not verify (${v.lines} do).<ul>${items}</ul></div>`
}

/** A sign-in page's body. */
export function signInBody(base: string, csrf: string, notice: string | undefined): SafeHtml {
  return html`<main><h1>mcp-bastion console</h1><p>Sign in with an API key whose role holds <code>console:read</code> or <code>console:admin</code>.</p>${notice === undefined ? html`` : html`<p class="bad" id="notice">${notice}</p>`}<form id="signin" method="post" action="${base}/signin"><input type="hidden" name="csrf" value="${csrf}"><label for="api_key">API key</label><input id="api_key" name="api_key" type="password" autocomplete="off" spellcheck="false" placeholder="bst_…" required maxlength="512"><div class="row"><button id="signin-key" class="primary" type="submit">Sign in</button></div></form><p class="muted">The key is checked once and never kept; the session ends after inactivity, at a fixed time after sign-in, on sign-out, and when the key is revoked.</p></main>`
}
