import { SecurityError } from '../errors.js'
import type { Principal } from '../principal.js'

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

const quoted = (value: string): string => `"${value.replace(/["\\]/g, '')}"`

/**
 * `WWW-Authenticate: Bearer …` (RFC 6750 §3, RFC 9728 §5.1): always `resource_metadata`; `scope`
 * with what is needed; `error` when a token was presented and refused.
 */
export function bearerChallenge(rs: ResourceServer, error: 'invalid_token' | 'insufficient_scope' | undefined, scopes: readonly string[]): string {
  const resource = rs.resource()
  // Unknown only when the edge is embedded without auth.resource and never listened: no URL to point at.
  const parts = resource === '' ? [] : [`resource_metadata=${quoted(metadataUrl(resource))}`]
  if (error !== undefined) parts.unshift(`error=${quoted(error)}`)
  if (scopes.length > 0) parts.push(`scope=${quoted(scopes.join(' '))}`)
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
