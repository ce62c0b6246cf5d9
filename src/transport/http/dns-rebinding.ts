import { SecurityError } from '../../errors.js'
import type { Exchange, Stage } from '../../pipeline/exchange.js'

export interface OriginPolicy {
  /** Hostnames (no port) the `Host` header may name, lowercase; IPv6 in brackets. */
  readonly allowedHosts: readonly string[]
  /** Full origins (`scheme://host[:port]`) a browser page may call from, besides the server's own. */
  readonly allowedOrigins: readonly string[]
}

/** Hostname of a `Host` header value (RFC 9110 §7.2), lowercase, port removed; undefined if malformed. */
export function hostnameOf(host: string): string | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(host)
  return m?.[1]?.toLowerCase()
}

/**
 * DNS-rebinding defence (MCP transports: servers MUST validate `Origin`):
 * - `Host` must name an allowed hostname, so a rebound DNS name pointing at this server is refused;
 * - a present `Origin` must be the server's own origin or an allowed one; `Origin: null` is refused.
 * An absent `Origin` passes: non-browser clients do not send one.
 * Does not check: the credential (authentication does); `Referer`.
 */
export function checkHostAndOrigin(policy: OriginPolicy): Stage {
  const refusal = hostOriginRefusal(policy)
  return async function checkHostAndOriginStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const http = x.http
    if (http === undefined) return next()
    const refused = refusal(http.request.headers.get('host'), http.request.headers.get('origin'), http.url.protocol)
    if (refused !== undefined) throw refused
    return next()
  }
}

/** The same check on raw header values (a WebSocket upgrade): the refusal, or undefined when both pass. */
export function hostOriginRefusal(policy: OriginPolicy): (host: string | null, origin: string | null, protocol: string) => SecurityError | undefined {
  const hosts = new Set(policy.allowedHosts.map((h) => h.toLowerCase()))
  const origins = new Set(policy.allowedOrigins.map((o) => o.toLowerCase().replace(/\/$/, '')))
  return (host, origin, protocol) => {
    const hostname = host === null ? undefined : hostnameOf(host)
    if (hostname === undefined || !hosts.has(hostname)) {
      return new SecurityError('ERR_HOST_FORBIDDEN', `Host header ${JSON.stringify((host ?? '(none)').slice(0, 100))} not in the allowlist`)
    }
    if (origin !== null) {
      const own = `${protocol}//${(host ?? '').toLowerCase()}`
      const normalized = origin.toLowerCase()
      if (normalized !== own && !origins.has(normalized)) return new SecurityError('ERR_ORIGIN_FORBIDDEN', `Origin ${JSON.stringify(origin.slice(0, 200))} not allowed`)
    }
    return undefined
  }
}
