import { createHash } from 'node:crypto'

/**
 * The page layer for bastion's own HTML (sign-in, consent, the operator console): one layout,
 * one stylesheet whose hash is the only style the CSP admits, no inline script (a page may name
 * scripts bastion serves, each admitted by its hash), no external asset, and the headers every page carries. Values go in through {@link html} only, which
 * escapes everything it interpolates.
 */

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#f6f8fa;--card:#fff;--line:#d0d7de;--accent:#0b5cad;--warn:#9a6700;--bad:#b42318}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9da7b3;--bg:#0d1117;--card:#161b22;--line:#30363d;--accent:#4493f8;--warn:#d29922;--bad:#f85149}}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
main{max-width:30rem;margin:6vh auto;padding:2rem;background:var(--card);border:1px solid var(--line);border-radius:12px}
h1{font-size:1.25rem;margin:0 0 1rem}p{margin:.5rem 0}.muted{color:var(--muted);font-size:.9rem}
.host{font:600 1.05rem ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.warn{border-left:4px solid var(--warn);padding:.5rem .75rem;margin:1rem 0;background:color-mix(in srgb,var(--warn) 10%,transparent)}
.bad{border-left:4px solid var(--bad);padding:.5rem .75rem;margin:1rem 0}
label{display:block;margin:1rem 0 .25rem;font-weight:600}input[type=password],input[type=text]{width:100%;padding:.6rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg);font:inherit}
ul{padding-left:1.25rem}code{font:.9em ui-monospace,SFMono-Regular,Menlo,monospace}
.row{display:flex;gap:.75rem;margin-top:1.5rem}button{flex:1;padding:.65rem 1rem;border-radius:6px;border:1px solid var(--line);font:inherit;cursor:pointer;background:var(--card);color:var(--fg)}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}hr{border:0;border-top:1px solid var(--line);margin:1.5rem 0}
main.wide{max-width:80rem;margin:0 auto 2rem;border-radius:0 0 12px 12px}
.bar{display:flex;flex-wrap:wrap;align-items:center;gap:.25rem 1rem;max-width:80rem;margin:0 auto;padding:.5rem 2rem;background:var(--card);border-bottom:1px solid var(--line)}
.bar a{color:var(--fg);text-decoration:none;padding:.25rem .5rem;border-radius:6px}.bar a[aria-current=page]{background:var(--bg);font-weight:600}.bar .who{margin-left:auto;color:var(--muted);font-size:.9rem}
.bar form{display:inline}.bar button,.inline button,td button{flex:none;padding:.25rem .75rem}a{color:var(--accent)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:1rem;margin:1rem 0}.card{border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem}
.card .n{font-size:1.6rem;font-weight:700}.allow{color:#1a7f37}.deny{color:var(--bad)}.error{color:var(--warn)}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem;font-size:.9rem}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
td code,td{word-break:break-word}pre{white-space:pre-wrap;word-break:break-all;font:.8rem ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);padding:.5rem;border-radius:6px;margin:.25rem 0}
.filters{display:grid;grid-template-columns:repeat(auto-fit,minmax(12rem,1fr));gap:.25rem 1rem;align-items:end}.filters label{margin:.5rem 0 .15rem;font-size:.85rem}
select,textarea,input[type=number],input[type=datetime-local]{width:100%;padding:.5rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg);font:inherit}textarea{font:.85rem ui-monospace,SFMono-Regular,Menlo,monospace;min-height:10rem}
.ok{border-left:4px solid #1a7f37;padding:.5rem .75rem;margin:1rem 0}.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1.5rem}
svg.chart{width:100%;height:auto;max-height:14rem;display:block}.legend span{margin-right:1rem}.sr{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}
meter{width:10rem}summary{cursor:pointer}figure{margin:1rem 0}fieldset{border:1px solid var(--line);border-radius:6px;margin:1rem 0}fieldset label{display:inline-block;margin:.25rem 1.25rem .25rem 0;font-weight:400}.key{font:600 1rem ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all;user-select:all}
@media (max-width:40rem){main,main.wide{padding:1rem;margin:0}.bar{padding:.5rem 1rem}th.opt,td.opt{display:none}main.wide table thead{display:none}main.wide table tr{display:block;padding:.4rem 0;border-bottom:1px solid var(--line)}main.wide table td{display:inline-block;border:0;padding:.1rem .6rem .1rem 0;max-width:100%}main.wide table td details{display:block}}
`
const STYLE_HASH = `'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`

/** Text made safe for HTML text and attribute values (quotes included). */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** A fragment of HTML that is already safe: only {@link html} makes one. */
export class SafeHtml {
  constructor(readonly value: string) {}
}

type Interpolated = string | number | SafeHtml | readonly SafeHtml[] | undefined | null | false

/** Tagged template: every interpolated string is escaped; SafeHtml (and arrays of it) is kept. */
export function html(strings: TemplateStringsArray, ...values: Interpolated[]): SafeHtml {
  let out = strings[0] ?? ''
  values.forEach((v, i) => {
    if (v instanceof SafeHtml) out += v.value
    else if (Array.isArray(v)) out += v.map((h: SafeHtml) => h.value).join('')
    else if (v !== undefined && v !== null && v !== false) out += escapeHtml(String(v))
    out += strings[i + 1] ?? ''
  })
  return new SafeHtml(out)
}

export interface PageScript {
  /** An absolute path on this origin (`/console/assets/console.js`). */
  readonly src: string
  /** Base64 SHA-256 of the script's text ({@link scriptHash}). */
  readonly sha256: string
}

/** The base64 SHA-256 of a script's text, for {@link PageScript}. */
export const scriptHash = (text: string): string => createHash('sha256').update(text).digest('base64')

export interface PageOptions {
  readonly title: string
  readonly body: SafeHtml
  readonly status?: number
  /**
   * Where the page's forms may lead, besides this origin (CSP `form-action` also governs the
   * redirect that answers a form: the client's redirect URI, the sign-in provider).
   */
  readonly formTargets?: readonly string[]
  readonly headers?: Readonly<Record<string, string>>
  /**
   * Scripts served by bastion itself, by path on this origin, with the SHA-256 of their text: each
   * admitted by the CSP by that hash, which the browser checks against the script it fetched
   * (Subresource Integrity). None inline.
   */
  readonly scripts?: readonly PageScript[]
}

/** The CSP source for a URL a form may end at: its origin, or the bare scheme of a private-use URI. */
function formSource(target: string): string | undefined {
  try {
    const url = new URL(target)
    if (url.protocol === 'http:' || url.protocol === 'https:') return url.origin
    return /^[a-z][a-z0-9+.-]*:$/.test(url.protocol) ? url.protocol : undefined
  } catch {
    return undefined
  }
}

/**
 * A page: strict CSP (`default-src 'none'`, the one stylesheet by hash, no script, forms to this
 * origin and the named targets only, `frame-ancestors 'none'`), no caching, no referrer to other sites, no
 * framing (also `X-Frame-Options` for older browsers), no MIME sniffing.
 */
export function page(options: PageOptions): Response {
  const targets = [...new Set((options.formTargets ?? []).map(formSource).filter((s): s is string => s !== undefined))]
  const scripts = (options.scripts ?? []).filter((s) => /^\/[A-Za-z0-9/._-]*$/.test(s.src) && /^[A-Za-z0-9+/]{43}=$/.test(s.sha256))
  const csp = [
    "default-src 'none'",
    ...(scripts.length === 0 ? [] : [`script-src ${scripts.map((s) => `'sha256-${s.sha256}'`).join(' ')}`, "connect-src 'self'"]),
    `style-src ${STYLE_HASH}`,
    "img-src 'self' data:",
    `form-action 'self'${targets.map((t) => ` ${t}`).join('')}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ')
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" content="same-origin"><link rel="icon" href="data:,"><title>${escapeHtml(options.title)}</title><style>${STYLE}</style>${scripts.map((s) => `<script src="${escapeHtml(s.src)}" integrity="sha256-${s.sha256}" defer></script>`).join('')}</head><body>${options.body.value}</body></html>`
  return new Response(body, {
    status: options.status ?? 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': csp,
      'x-frame-options': 'DENY',
      'x-content-type-options': 'nosniff',
      // Not no-referrer: under it browsers send `Origin: null` on the page's own forms (Fetch), which the Origin check refuses.
      'referrer-policy': 'same-origin',
      'cache-control': 'no-store',
      pragma: 'no-cache',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      ...options.headers,
    },
  })
}

export interface CookieOptions {
  /** HTTPS: `Secure` and the `__Host-` prefix (RFC 6265bis §4.1.3.2). */
  readonly secure: boolean
  readonly maxAgeSeconds: number
  /** `Lax` where the cookie must survive a top-level redirect back from another site. */
  readonly sameSite: 'Strict' | 'Lax'
}

/** A cookie's name as sent: `__Host-` prefixed over HTTPS. */
export function cookieName(base: string, secure: boolean): string {
  return secure ? `__Host-${base}` : base
}

/** `Set-Cookie` for a host-only, HttpOnly cookie on path `/`. */
export function setCookie(base: string, value: string, o: CookieOptions): string {
  return `${cookieName(base, o.secure)}=${value}; Path=/; HttpOnly; SameSite=${o.sameSite}; Max-Age=${o.maxAgeSeconds}${o.secure ? '; Secure' : ''}`
}

/** A cookie's value from the request, if present exactly once (two copies: none, never a guess). */
export function readCookie(request: Request, base: string, secure: boolean): string | undefined {
  const name = cookieName(base, secure)
  const found: string[] = []
  for (const part of (request.headers.get('cookie') ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) found.push(part.slice(eq + 1).trim())
  }
  return found.length === 1 ? found[0] : undefined
}
