import type { StoredGrant } from '../../auth/grants.js'
import type { ExplainResult, KeyView, UpstreamView } from '../../console/service.js'
import type { RangeVerification, TrailPage, TrailQuery } from '../../console/trail.js'
import type { BucketLevel } from '../../limits/memory-limiter.js'
import type { ReplayReport } from '../../policy/replay.js'
import { AUDIT_HEAD, auditRows, verificationBanner } from './console-pages.js'
import { html, type SafeHtml } from './pages.js'

/** The bodies of the console's pages other than the overview (console-pages.ts has the shared parts). */

type Filters = Omit<TrailQuery, 'limit'>
const FILTER_FIELDS = ['from', 'to', 'principal', 'tool', 'decision', 'reason', 'requestId', 'event', 'text'] as const

/** The filter as a query string (for paging, export and the live tail). */
export function filterQuery(q: Filters, extra: Record<string, string> = {}): string {
  const p = new URLSearchParams()
  for (const f of FILTER_FIELDS) {
    const v = q[f]
    if (v !== undefined && v !== '') p.set(f, v)
  }
  for (const [k, v] of Object.entries(extra)) p.set(k, v)
  return p.toString()
}

export function auditBody(base: string, q: Filters, page: TrailPage, verification: RangeVerification | undefined, source: string): SafeHtml {
  const input = (name: (typeof FILTER_FIELDS)[number], text: string, placeholder = ''): SafeHtml =>
    html`<div><label for="f-${name}">${text}</label><input type="text" id="f-${name}" name="${name}" value="${q[name] ?? ''}" placeholder="${placeholder}" maxlength="500"></div>`
  const decision = (['', 'allow', 'deny', 'error'] as const).map((d) =>
    q.decision === d || (d === '' && q.decision === undefined)
      ? html`<option value="${d}" selected>${d === '' ? 'any' : d}</option>`
      : html`<option value="${d}">${d === '' ? 'any' : d}</option>`,
  )
  const older = page.next === undefined ? html`` : html`<a id="older" href="${base}/audit?${filterQuery(q, { before: page.next })}">Older lines →</a>`
  const searched =
    page.searchedBackTo === undefined
      ? html``
      : html`<p class="warn" id="searched">Searched back to ${page.searchedBackTo} (a bounded scan per page); older lines were not searched yet: <a href="${base}/audit?${filterQuery(q, { before: page.next ?? '' })}">search further</a>.</p>`
  return html`<h1>Audit trail</h1><p class="muted">${source}. Times are UTC (ISO 8601); text matches the stored, redacted line.</p>
<form id="filters" method="get" action="${base}/audit"><div class="filters">${input('from', 'From', '2026-12-01T00:00:00Z')}${input('to', 'To', '2026-12-02T00:00:00Z')}${input('principal', 'Principal', 'key:…')}${input('tool', 'Tool')}<div><label for="f-decision">Decision</label><select id="f-decision" name="decision">${decision}</select></div>${input('reason', 'Reason code', 'ERR_FORBIDDEN')}${input('requestId', 'Request id')}${input('event', 'Event', 'authz.denied')}${input('text', 'Text')}</div><div class="row"><button class="primary" id="apply" type="submit">Filter</button><a id="export" href="${base}/api/audit/export?${filterQuery(q)}">Export as JSON Lines</a></div></form>
${verificationBanner(verification)}${searched}
<p><button type="button" id="live" aria-pressed="false" data-query="${filterQuery(q)}" data-newest="${page.newest ?? ''}" data-api="${base}/api/audit">Live tail</button> <span id="live-status" class="muted" aria-live="polite"></span></p>
<table id="lines">${AUDIT_HEAD}<tbody>${auditRows(base, page.entries, 'no lines match')}</tbody></table>${older}`
}

const traceRows = (r: ExplainResult): SafeHtml[] | SafeHtml =>
  r.trace.length === 0
    ? html`<tr><td colspan="4" class="muted">no rule covers this target: denied by default</td></tr>`
    : r.trace.map((t) => html`<tr><td><code>${t.rule}</code></td><td class="${t.effect}">${t.effect}</td><td>${t.result}</td><td>${t.detail ?? ''}</td></tr>`)

export function explainResult(r: ExplainResult): SafeHtml {
  const recorded =
    r.recorded === undefined
      ? html``
      : html`<p id="recorded">Recorded: <strong>${r.recorded.authz}</strong> by <code>${r.recorded.rule ?? '?'}</code> (policy ${r.recorded.policy ?? '?'}).${r.recorded.policy !== undefined && r.recorded.policy !== r.decision.version ? ' The policy has changed since.' : ''}</p>`
  const stage =
    r.stage === 'reachability'
      ? html`<p class="muted" id="stage">Refused before its arguments were read: decided on principal and tool (rules whose condition reads the arguments are not evaluated).</p>`
      : html``
  const unknown = r.unknown.length === 0 ? html`` : html`<p class="warn" id="unknown">The line does not vouch for: ${r.unknown.join(', ')}; decided as recorded.</p>`
  return html`<section id="explanation"><h2>Decision</h2><p id="verdict" class="${r.decision.allow ? 'ok' : 'bad'}"><strong>${r.decision.allow ? 'allow' : 'deny'}</strong> by <code>${r.decision.rule}</code> (policy ${r.decision.version})${r.decision.error === undefined ? '' : `: ${r.decision.error}`}</p>${recorded}${stage}${unknown}<p><code>${r.principal.id}</code> (roles ${r.principal.roles.join(', ') || 'none'}) → ${r.target}</p>${r.args === undefined ? html`` : html`<details id="decided-args"><summary>Arguments decided on</summary><pre>${JSON.stringify(r.args, null, 2)}</pre></details>`}<h3>Rules evaluated, denies first</h3><table id="trace"><thead><tr><th>rule</th><th>effect</th><th>result</th><th>why</th></tr></thead><tbody>${traceRows(r)}</tbody></table></section>`
}

export interface ExplainForm {
  readonly requestId?: string
  readonly principal?: string
  readonly roles?: string
  readonly tool?: string
  readonly args?: string
  readonly policy?: string
  readonly from?: string
  readonly to?: string
}

export function explainBody(base: string, csrf: string, f: ExplainForm, result: SafeHtml | undefined, replayed: SafeHtml | undefined, tools: readonly string[]): SafeHtml {
  const options = tools.map((t) => (t === f.tool ? html`<option selected>${t}</option>` : html`<option>${t}</option>`))
  return html`<h1>Decision explainer</h1>${result ?? html``}<div class="grid2"><form id="explain-line" method="get" action="${base}/explain"><h2>A recorded line</h2><label for="requestId">Request id</label><input type="text" id="requestId" name="requestId" value="${f.requestId ?? ''}" maxlength="200"><div class="row"><button class="primary" type="submit">Explain</button></div></form>
<form id="explain-call" method="get" action="${base}/explain"><h2>A call</h2><label for="principal">Principal</label><input type="text" id="principal" name="principal" value="${f.principal ?? ''}" placeholder="key:0123456789abcdef" maxlength="200"><label for="roles">Roles (comma-separated)</label><input type="text" id="roles" name="roles" value="${f.roles ?? ''}" maxlength="1000"><label for="tool">Tool</label><select id="tool" name="tool">${options}</select><label for="args">Arguments (JSON)</label><textarea id="args" name="args">${f.args ?? '{}'}</textarea><div class="row"><button class="primary" type="submit">Explain</button></div></form></div>
<form id="replay" method="post" action="${base}/explain/replay"><h2>Replay under a candidate policy</h2><p class="muted">Paste policy YAML (the rules of a policy file); every recorded decision in the range is decided again under it with the role rules, and the ones that change are listed.</p><input type="hidden" name="csrf" value="${csrf}"><label for="policy">Candidate policy</label><textarea id="policy" name="policy" required>${f.policy ?? "rules:\n  - id: no-writes\n    effect: deny\n    subjects: '*'\n    targets: { tools: [write_file] }\n"}</textarea><div class="filters"><div><label for="r-from">From</label><input type="text" id="r-from" name="from" value="${f.from ?? ''}"></div><div><label for="r-to">To</label><input type="text" id="r-to" name="to" value="${f.to ?? ''}"></div></div><div class="row"><button class="primary" id="replay-run" type="submit">Replay</button></div></form>${replayed ?? html``}`
}

export function replayResult(r: ReplayReport & { read: number; truncated: boolean }): SafeHtml {
  const changes =
    r.changes.length === 0
      ? html`<tr><td colspan="5" class="muted">no decision would change</td></tr>`
      : r.changes.map(
          (c) =>
            html`<tr><td><code>${c.requestId ?? c.where}</code></td><td><code>${c.principal}</code></td><td>${c.target}</td><td class="${c.before.allow ? 'allow' : 'deny'}">${c.before.allow ? 'allow' : 'deny'} (${c.before.rule})</td><td class="${c.after.allow ? 'allow' : 'deny'}">${c.after.allow ? 'allow' : 'deny'} (${c.after.rule})</td></tr>`,
        )
  const incomplete =
    r.incomplete.length === 0
      ? html``
      : html`<h3>Not decided again (${r.incomplete.length})</h3><table id="replay-incomplete"><thead><tr><th>request</th><th>principal</th><th>target</th><th>missing</th></tr></thead><tbody>${r.incomplete.slice(0, 200).map((i) => html`<tr><td><code>${i.requestId ?? i.where}</code></td><td><code>${i.principal}</code></td><td>${i.target}</td><td>${i.missing.join(', ')}</td></tr>`)}</tbody></table>`
  return html`<section id="replay-result"><h2>Replay</h2><p id="replay-summary">${r.replayed} decision(s) replayed, <strong>${r.changes.length} would change</strong>, ${r.skipped} skipped, ${r.incomplete.length} incomplete${r.truncated ? ` (stopped after ${r.read} lines: narrow the range)` : ''}.</p><table id="replay-changes"><thead><tr><th>request</th><th>principal</th><th>target</th><th>recorded</th><th>candidate</th></tr></thead><tbody>${changes}</tbody></table>${incomplete}</section>`
}

const hidden = (csrf: string): SafeHtml => html`<input type="hidden" name="csrf" value="${csrf}">`

export function keysBody(
  base: string,
  csrf: string,
  keys: readonly KeyView[],
  roles: readonly string[],
  grants: readonly StoredGrant[] | undefined,
  created: { key: string; id: string } | undefined,
): SafeHtml {
  const shown =
    created === undefined
      ? html``
      : html`<div class="ok" id="created" role="status"><p>Key <code>${created.id}</code> created. Copy it now: it is shown only this once and stored only as a hash.</p><p class="key" id="new-key">${created.key}</p></div>`
  const rows = keys.map(
    (k) =>
      html`<tr data-key-id="${k.id}"><td><code>${k.id}</code></td><td>${k.name}</td><td>${k.roles.join(', ')}</td><td class="${k.state === 'active' ? 'allow' : k.state === 'expiring' ? 'error' : 'deny'}">${k.state === 'expiring' ? 'expires within 7 days' : k.state}</td><td class="opt">${k.createdAt.startsWith('1970') ? 'bastion.yaml' : k.createdAt}</td><td class="opt">${k.expiresAt ?? 'never'}</td><td>${k.lastUsedAt ?? html`<span class="muted">never</span>`}</td><td>${
        k.state === 'revoked' || k.source === 'config'
          ? html`<span class="muted">${k.source === 'config' ? 'in bastion.yaml' : ''}</span>`
          : html`<form class="inline" method="post" action="${base}/keys/revoke">${hidden(csrf)}<input type="hidden" name="id" value="${k.id}"><button type="submit" class="revoke" aria-label="Revoke key ${k.id}">Revoke</button></form>`
      }</td></tr>`,
  )
  const roleBoxes = roles.map((r) => html`<label><input type="checkbox" name="roles" value="${r}"> ${r}</label>`)
  const grantRows =
    grants === undefined
      ? html`<tr><td colspan="6" class="muted">The token service is off: no OAuth grants.</td></tr>`
      : grants.length === 0
        ? html`<tr><td colspan="6" class="muted">none</td></tr>`
        : grants.map(
            (g) =>
              html`<tr><td><code>${g.id}</code></td><td>${g.user.name} <code>${g.user.sub}</code></td><td>${g.clientName} <code>${g.clientId}</code></td><td>${g.scopes.join(' ')}</td><td>${g.families.length}</td><td><form class="inline" method="post" action="${base}/grants/revoke">${hidden(csrf)}<input type="hidden" name="id" value="${g.id}"><button type="submit">Revoke</button></form></td></tr>`,
          )
  return html`<h1>Keys and grants</h1>${shown}<table id="keys"><thead><tr><th>id</th><th>name</th><th>roles</th><th>state</th><th class="opt">created</th><th class="opt">expires</th><th>last used</th><th></th></tr></thead><tbody>${rows}</tbody></table>
<form id="create-key" method="post" action="${base}/keys"><h2>Create a key</h2>${hidden(csrf)}<label for="key-name">Name</label><input type="text" id="key-name" name="name" required maxlength="200"><fieldset><legend>Roles</legend>${roleBoxes}</fieldset><label for="key-days">Expires after (days, empty: never)</label><input type="number" id="key-days" name="expiresDays" min="1" max="3650"><div class="row"><button class="primary" type="submit" id="create">Create key</button></div></form>
<h2>OAuth grants</h2><p class="muted">Users' standing consents to clients; revoking one revokes its refresh-token families and access tokens.</p><table id="grants"><thead><tr><th>grant</th><th>user</th><th>client</th><th>scopes</th><th>families</th><th></th></tr></thead><tbody>${grantRows}</tbody></table>`
}

export interface LimitsData {
  readonly busiest: readonly { readonly principal: string; readonly requests: number; readonly buckets: readonly BucketLevel[] }[]
  readonly refused: TrailPage
  readonly alerts: TrailPage
  readonly rules: readonly { readonly id: string; readonly event: string; readonly reason?: string | undefined; readonly threshold: number; readonly windowSeconds: number }[]
}

export function limitsBody(base: string, d: LimitsData): SafeHtml {
  const busiest =
    d.busiest.length === 0
      ? html`<tr><td colspan="3" class="muted">no requests in the last day</td></tr>`
      : d.busiest.map(
          (b) =>
            html`<tr><td><code>${b.principal}</code></td><td>${b.requests}</td><td>${b.buckets.map((l) => html`<div><code>${l.bucket}</code> <meter min="0" max="${l.capacity}" value="${l.tokens}" aria-label="${l.bucket}">${Math.floor(l.tokens)}</meter> ${Math.floor(l.tokens)} / ${l.capacity}</div>`)}</td></tr>`,
        )
  const rules =
    d.rules.length === 0
      ? html`<li class="muted">no alert rules configured</li>`
      : d.rules.map(
          (r) => html`<li><code>${r.id}</code>: ${r.threshold} × <code>${r.event}</code>${r.reason === undefined ? '' : ` (${r.reason})`} within ${r.windowSeconds} s</li>`,
        )
  return html`<h1>Limits and alerts</h1><h2>Busiest principals (day) and their buckets now</h2><table id="buckets"><thead><tr><th>principal</th><th>lines</th><th>buckets (tokens left / capacity)</th></tr></thead><tbody>${busiest}</tbody></table>
<h2>Recent rate-limit refusals</h2><table id="refused">${AUDIT_HEAD}<tbody>${auditRows(base, d.refused.entries, 'no rate-limit refusals recorded')}</tbody></table>
<h2>Alerts fired</h2><table id="alerts">${AUDIT_HEAD}<tbody>${auditRows(base, d.alerts.entries, 'no alerts fired')}</tbody></table><h3>Rules</h3><ul id="alert-rules">${rules}</ul>`
}

export function upstreamsBody(upstreams: readonly UpstreamView[]): SafeHtml {
  const rows = upstreams.map((u) => {
    const blocked = Object.entries(u.blocked)
    return html`<tr><td><code>${u.name}</code></td><td class="${u.state === 'up' ? 'allow' : 'deny'}">${u.state}</td><td>${u.since}</td><td>${u.restarts}</td><td>${u.pin}</td><td>${u.tools.length}</td><td>${blocked.length === 0 ? html`<span class="muted">none</span>` : html`<ul>${blocked.map(([name, d]) => html`<li><code>${name}</code>: ${d.change} (${d.fields.join(', ')})</li>`)}</ul>`}</td><td>${u.unpinned.length === 0 ? html`<span class="muted">none</span>` : u.unpinned.join(', ')}</td></tr>`
  })
  return html`<h1>Upstreams</h1><p class="muted">Pinned definitions are in bastion.lock.json; a tool whose upstream definition drifted from its pin is blocked until re-pinned (<code>mcp-bastion upstreams pin</code>).</p><table id="upstreams"><thead><tr><th>upstream</th><th>state</th><th>since</th><th>restarts</th><th>pin</th><th>tools</th><th>drifted (blocked)</th><th>unpinned</th></tr></thead><tbody>${rows}</tbody></table>`
}
