import type { SecurityError } from '../errors.js'

/** Longest identifier claim accepted: `sub`, `client_id`, `jti`, the tenant and each role. */
export const MAX_CLAIM_LENGTH = 255

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/
// No controls (C0, DEL, C1), format characters (bidi overrides, zero-width), lone surrogates
// (they all become U+FFFD once encoded, so two of them would be one principal in a database), or
// line and paragraph separators: these values reach audit lines, bucket keys and SQL columns.
const PRINTABLE = /^[^\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]+$/u

/** How a caller turns a claim problem into its refusal (the introspector also remembers it). */
export type Refuse = (why: string) => SecurityError

/** Where the mapping reads roles and the tenant: dot-separated claim paths from config. */
export interface ClaimPaths {
  readonly roles: string
  readonly tenant?: string | undefined
}

/** The claims a principal is built from, each checked by type. */
export interface MappedClaims {
  readonly sub: string
  readonly scopes: readonly string[]
  readonly roles: readonly string[]
  readonly tenant: string | undefined
  readonly jti: string | undefined
}

/**
 * Is this an RFC 6749 §3.3 scope-token (printable ASCII without space, `"` or `\`)?
 * Does not check: that the scope is one this server knows (the scope stage compares).
 */
export function isScopeToken(value: string): boolean {
  return typeof value === 'string' && SCOPE_TOKEN.test(value)
}

/** Read a dot-separated claim path from a payload (own properties only). */
export function claimAt(payload: Readonly<Record<string, unknown>>, path: string): unknown {
  let value: unknown = payload
  for (const part of path.split('.')) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, part)) return undefined
    value = (value as Record<string, unknown>)[part]
  }
  return value
}

/** The JSON type of a value, for a message that must never quote the value itself. */
function kindOf(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}

/**
 * An identifier claim: a string of 1 to {@link MAX_CLAIM_LENGTH} UTF-16 units, printable (see
 * PRINTABLE above).
 * Does not check: Unicode normalisation or confusables (`alice` and Cyrillic `аlice` are two
 * principals, never one), URI syntax of a StringOrURI (RFC 7519 §2).
 */
function identifier(name: string, value: unknown, refuse: Refuse): string {
  if (typeof value !== 'string') throw refuse(`claim ${name} is ${kindOf(value)}, not a string`)
  if (value.length === 0) throw refuse(`claim ${name} is empty`)
  if (value.length > MAX_CLAIM_LENGTH) throw refuse(`claim ${name} is ${value.length} characters, over ${MAX_CLAIM_LENGTH}`)
  if (!PRINTABLE.test(value)) throw refuse(`claim ${name} holds a control, format, separator or lone surrogate character`)
  return value
}

const optionalIdentifier = (name: string, value: unknown, refuse: Refuse): string | undefined => (value === undefined ? undefined : identifier(name, value, refuse))

/**
 * `scope` (RFC 6749 §3.3, RFC 9068 §2.2.3, RFC 7662 §2.2): one string of scope-tokens separated by
 * spaces; absent or empty is no scope. Repeated spaces are tolerated: the split is unambiguous.
 * Does not check: how many scopes there are (the token's size bounds it).
 */
function scopeString(name: string, value: unknown, refuse: Refuse): string[] {
  if (value === undefined) return []
  if (typeof value !== 'string') throw refuse(`claim ${name} is ${kindOf(value)}, not a string of scope-tokens`)
  const scopes = value.split(' ').filter((s) => s.length > 0)
  if (!scopes.every(isScopeToken)) throw refuse(`claim ${name} holds a character outside the RFC 6749 §3.3 scope-token set`)
  return scopes
}

/**
 * `scp` as issuers send it: an array of scope-tokens, or one space-separated string like `scope`.
 * Does not check: how many scopes there are (the token's size bounds it).
 */
function scopeList(name: string, value: unknown, refuse: Refuse): string[] {
  if (!Array.isArray(value)) return scopeString(name, value, refuse)
  value.forEach((s: unknown, i) => {
    if (typeof s !== 'string') throw refuse(`claim ${name}[${i}] is ${kindOf(s)}, not a string`)
    if (!isScopeToken(s)) throw refuse(`claim ${name}[${i}] is not an RFC 6749 §3.3 scope-token`)
  })
  return value as string[]
}

/**
 * The roles claim at its configured path: an array of identifier strings, or one space-separated
 * string of them; absent is no role.
 * Does not check: that a role exists in the policy (an unknown role grants nothing), how many roles
 * there are (the token's size bounds it); a path through a non-object reads as absent.
 */
function roleList(path: string, value: unknown, refuse: Refuse): string[] {
  if (value === undefined) return []
  const name = `${path} (roles)`
  const list: unknown = typeof value === 'string' ? value.split(' ').filter((r) => r.length > 0) : value
  if (!Array.isArray(list)) throw refuse(`claim ${name} is ${kindOf(value)}, not an array of strings`)
  return list.map((r: unknown, i) => identifier(`${name}[${i}]`, r, refuse))
}

/**
 * `aud` (RFC 7519 §4.1.3): a string or an array of strings. jose already requires a match with the
 * accepted audiences but lets other members be of any type; here every member must be a string.
 * Does not check: which audiences are accepted (the verifier and the introspector compare).
 */
export function audienceClaim(value: unknown, refuse: Refuse): string[] {
  if (value === undefined) return []
  if (typeof value === 'string') return [value]
  if (!Array.isArray(value)) throw refuse(`claim aud is ${kindOf(value)}, not a string or an array of strings`)
  value.forEach((a: unknown, i) => {
    if (typeof a !== 'string') throw refuse(`claim aud[${i}] is ${kindOf(a)}, not a string`)
  })
  return value as string[]
}

function common(payload: Readonly<Record<string, unknown>>, paths: ClaimPaths, refuse: Refuse): Pick<MappedClaims, 'roles' | 'tenant' | 'jti'> {
  return {
    roles: roleList(paths.roles, claimAt(payload, paths.roles), refuse),
    tenant: paths.tenant === undefined ? undefined : optionalIdentifier(`${paths.tenant} (tenant)`, claimAt(payload, paths.tenant), refuse),
    jti: optionalIdentifier('jti', payload.jti, refuse),
  }
}

/**
 * The claims of a verified JWT access token (RFC 9068 §2.2), by type, before any becomes part of a
 * principal: `sub` an identifier (RFC 7519 §4.1.2: a StringOrURI; required), `scope` a string of
 * scope-tokens, `scp` an array or string of them, `aud` strings, `client_id` and `jti` identifiers
 * when present, the roles and tenant claims at their paths.
 * @throws what `refuse` builds (ERR_AUTH_INVALID), naming the claim and never its value
 * Does not check: `iss`, `aud` membership, `exp`, `nbf`, `iat` (jose compares `iss` and `aud` and
 *   requires the dates to be numbers; the verifier bounds `iat` and the lifetime); claims nothing
 *   reads (they stay in `principal.claims` for policy conditions, untyped).
 */
export function jwtClaims(payload: Readonly<Record<string, unknown>>, paths: ClaimPaths, refuse: Refuse): MappedClaims {
  audienceClaim(payload.aud, refuse)
  const sub = identifier('sub', payload.sub, refuse)
  optionalIdentifier('client_id', payload.client_id, refuse)
  const scopes = [...new Set([...scopeString('scope', payload.scope, refuse), ...scopeList('scp', payload.scp, refuse)])]
  return { sub, scopes, ...common(payload, paths, refuse) }
}

/**
 * The claims of an active introspection answer (RFC 7662 §2.2), by type: `sub` and `client_id`
 * identifiers when present (the principal is `sub`, else `client_id`; one of them is required),
 * `scope` a string of scope-tokens, `jti`, the roles and tenant claims as for JWTs.
 * @throws what `refuse` builds (ERR_AUTH_INVALID), naming the claim and never its value
 * Does not check: `active`, `exp`, `aud` (the introspector does), `nbf` and `iat` (the server's
 *   `active` covers the validity window), `username`, `token_type`, `iss`.
 */
export function introspectionClaims(body: Readonly<Record<string, unknown>>, paths: ClaimPaths, refuse: Refuse): MappedClaims {
  const subject = optionalIdentifier('sub', body.sub, refuse)
  const clientId = optionalIdentifier('client_id', body.client_id, refuse)
  const sub = subject ?? clientId
  if (sub === undefined) throw refuse('no sub or client_id')
  return { sub, scopes: [...new Set(scopeString('scope', body.scope, refuse))], ...common(body, paths, refuse) }
}
