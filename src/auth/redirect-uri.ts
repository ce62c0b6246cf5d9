/** Host names a native client's loopback redirect may use, with any port (RFC 8252 §7.3). */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost'])

// RFC 8252 §7.1: a private-use scheme is a reverse domain name (it has a dot), e.g. com.example.app.
const PRIVATE_USE_SCHEME = /^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+:$/

export type RedirectKind = 'https' | 'loopback' | 'private-use'

/**
 * What kind of redirect URI a client may register, or a reason it may not: `https:` anywhere,
 * `http:` on a loopback host (RFC 8252 §7.3), or a private-use scheme (RFC 8252 §7.1). Never
 * a fragment (RFC 6749 §3.1.2) or user information, never a relative or malformed URI.
 * Does not check: that the client owns the host (nobody can; consent shows it to the user).
 */
export function redirectKind(uri: string): RedirectKind | { refused: string } {
  if (uri.length > 2048) return { refused: 'longer than 2048 characters' }
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return { refused: 'not an absolute URI' }
  }
  if (uri.includes('#')) return { refused: 'has a fragment' }
  if (url.username !== '' || url.password !== '') return { refused: 'has user information' }
  if (url.protocol === 'https:') return url.hostname === '' ? { refused: 'has no host' } : 'https'
  if (url.protocol === 'http:') return LOOPBACK_HOSTS.has(url.hostname) ? 'loopback' : { refused: 'plain http is allowed for loopback hosts only' }
  if (PRIVATE_USE_SCHEME.test(url.protocol)) return 'private-use'
  return { refused: `scheme ${url.protocol.slice(0, 32)} is not https, loopback http or a private-use scheme` }
}

/** Is this redirect on the user's own machine (loopback or a private-use scheme)? */
export function isNativeRedirect(uri: string): boolean {
  const kind = redirectKind(uri)
  return kind === 'loopback' || kind === 'private-use'
}

/**
 * Does a presented redirect URI match a registered one? Exact string comparison (OAuth 2.1
 * §2.3.1, as the MCP authorization spec requires), except that for a loopback `http:` redirect
 * the port is ignored (RFC 8252 §7.3: native clients take an ephemeral port).
 * Does not check: that the registered URI is acceptable (see {@link redirectKind} at registration).
 */
export function redirectMatches(registered: string, presented: string): boolean {
  if (registered === presented) return true
  if (redirectKind(registered) !== 'loopback' || redirectKind(presented) !== 'loopback') return false
  const a = new URL(registered)
  const b = new URL(presented)
  // Whole-string comparison of everything but the port: the raw text, with the port cut out.
  return a.hostname === b.hostname && withoutPort(registered) === withoutPort(presented)
}

function withoutPort(uri: string): string {
  return uri.replace(/^(http:\/\/(?:127\.0\.0\.1|\[::1\]|localhost))(?::\d{1,5})?(?=[/?]|$)/, '$1')
}

/** What a person and the audit line are shown of a redirect URI: its host and port, or its private-use scheme. */
export function redirectHost(uri: string): string {
  try {
    const url = new URL(uri)
    return url.host === '' ? url.protocol : url.host
  } catch {
    return 'an invalid address'
  }
}
