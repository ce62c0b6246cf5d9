import { SecurityError } from '../errors.js'
import type { Principal } from '../principal.js'
import { isScopeToken } from './claims.js'

/** What this server says about itself as an OAuth 2.1 resource server (MCP authorization spec). */
export interface ResourceServer {
  /** Canonical URI of the MCP endpoint (RFC 8707): the audience tokens must name. */
  readonly resource: () => string
  readonly authorizationServers: () => readonly string[]
  readonly scopesSupported: readonly string[]
  /** scope → the narrower scopes it implies. */
  readonly implies: ReadonlyMap<string, readonly string[]>
}

/** The Protected Resource Metadata URL for a resource (RFC 9728 §3.1: the well-known path, then the resource path). */
export function metadataUrl(resource: string): string {
  const url = new URL(resource)
  const path = url.pathname === '/' ? '' : url.pathname
  return `${url.origin}/.well-known/oauth-protected-resource${path}`
}

/** The RFC 9728 §2 document. */
export function protectedResourceMetadata(rs: ResourceServer): Record<string, unknown> {
  return {
    resource: rs.resource(),
    authorization_servers: [...rs.authorizationServers()],
    scopes_supported: [...rs.scopesSupported],
    bearer_methods_supported: ['header'],
    resource_name: 'mcp-bastion',
  }
}

// RFC 9110 §5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text, and quoted-pair
// carries `"` and `\`; nothing else (controls, DEL, characters above U+00FF) fits in a quoted-string.
const QUOTABLE = /^[\t\x20-\x7E\x80-\xFF]*$/

/**
 * `value` as an RFC 9110 §5.6.4 quoted-string, `"` and `\` escaped; undefined when a character
 * cannot be carried at all (the parameter is then left out, never mangled into another value).
 * Does not check: the parameter's own grammar (callers pass scope-tokens, a URL, an error code).
 */
function quotedString(value: string): string | undefined {
  return QUOTABLE.test(value) ? `"${value.replace(/["\\]/g, '\\$&')}"` : undefined
}

/** The metadata URL to point at, or undefined when the resource is unknown or not a URL. */
function resourceMetadata(rs: ResourceServer): string | undefined {
  try {
    const resource = rs.resource()
    // Unknown only when the edge is embedded without auth.resource and never listened: no URL to point at.
    return resource === '' ? undefined : metadataUrl(resource)
  } catch {
    return undefined
  }
}

/** RFC 6750 §3 `error_description`s: what the person reading a client's error should do. */
export const DESCRIPTIONS = {
  invalid_token: 'the API key or token was not accepted (wrong, expired or revoked)',
  insufficient_scope: 'the token lacks a scope this needs',
} as const

/**
 * `WWW-Authenticate: Bearer …` (RFC 6750 §3, RFC 9728 §5.1): `error` and its `error_description`
 * when a token was presented
 * and refused, `resource_metadata`, and `scope` with what is needed. Every value is a quoted-string
 * (RFC 9110 §5.6.4); scopes that are not RFC 6749 §3.3 scope-tokens are left out (a token's cannot
 * be one after the claim checks; configured and registered ones are filtered here too), so the
 * result is always a valid header value. Never throws: it is built while refusing a request.
 * Does not check: that the scopes exist (callers pass what they need or support).
 */
export function bearerChallenge(rs: ResourceServer, error: 'invalid_token' | 'insufficient_scope' | undefined, scopes: readonly string[]): string {
  const tokens = scopes.filter(isScopeToken)
  const params: [string, string | undefined][] = [
    ['error', error],
    ['error_description', error === undefined ? undefined : DESCRIPTIONS[error]],
    ['resource_metadata', resourceMetadata(rs)],
    ['scope', tokens.length === 0 ? undefined : tokens.join(' ')],
  ]
  const parts: string[] = []
  for (const [name, value] of params) {
    const quoted = value === undefined ? undefined : quotedString(value)
    if (quoted !== undefined) parts.push(`${name}=${quoted}`)
  }
  return parts.length === 0 ? 'Bearer realm="mcp-bastion"' : `Bearer ${parts.join(', ')}`
}

/** Granted scopes plus everything they imply, transitively. */
export function expandScopes(granted: readonly string[], implies: ReadonlyMap<string, readonly string[]>): Set<string> {
  const all = new Set<string>()
  const queue = [...granted]
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    if (all.has(next)) continue
    all.add(next)
    for (const implied of implies.get(next) ?? []) queue.push(implied)
  }
  return all
}

/**
 * A token principal must hold every required scope (after expanding the hierarchy). API keys have
 * no scopes: roles govern them, so scope requirements do not apply to them.
 * @throws SecurityError ERR_INSUFFICIENT_SCOPE carrying every scope the call needs
 */
export function requireScopes(principal: Principal, required: readonly string[], implies: ReadonlyMap<string, readonly string[]>, what: string): void {
  if (principal.kind === 'api-key' || required.length === 0) return
  const held = expandScopes(principal.scopes ?? [], implies)
  const missing = required.filter((s) => !held.has(s))
  if (missing.length === 0) return
  const needed = [...new Set([...(principal.scopes ?? []), ...required])]
  throw new ScopeError(`${principal.id} lacks ${missing.join(' ')} for ${what}`, needed)
}

export class ScopeError extends SecurityError {
  constructor(
    message: string,
    readonly needed: readonly string[],
  ) {
    super('ERR_INSUFFICIENT_SCOPE', message, { expose: `needs ${needed.join(' ')}` })
  }
}

/** Scopes each target requires of token principals, and the scope hierarchy. */
export interface ScopeRules {
  required(kind: 'tool' | 'resource' | 'prompt', name: string): readonly string[]
  readonly implies: ReadonlyMap<string, readonly string[]>
}
