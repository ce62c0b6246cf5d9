import { isIP } from 'node:net'
import { isLoopback } from '../config/urls.js'

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'] as const

const bare = (host: string): string => host.replace(/^\[|\]$/g, '')

/** A bind address that listens on every interface: `0.0.0.0` or `::`. */
export function isUnspecified(host: string): boolean {
  const h = bare(host)
  return h === '0.0.0.0' || (isIP(h) === 6 && /^[0:]+$/.test(h))
}

/** A host as it appears in a URL or a `Host` header: lowercase, IPv6 in brackets. */
function hostLiteral(host: string): string {
  const h = bare(host).toLowerCase()
  return isIP(h) === 6 ? `[${h}]` : h
}

/** Where a server answers, derived from the address it is bound to. */
export interface Served {
  /** The URL clients reach it at: printed at start, and the resource URI unless `auth.resource` is set. */
  readonly url: string
  /** `Host` header names accepted (lowercase, no port, IPv6 in brackets). */
  readonly allowedHosts: readonly string[]
}

/**
 * What a server bound to `address` answers to. The URL names the bound address; bound to every
 * interface (`0.0.0.0`, `::`), it names the loopback address (`127.0.0.1`, `[::1]`) instead, the
 * one address sure to reach it. Accepted `Host` names: the URL's host, the host asked for when it
 * is a name, the loopback names when the address is loopback or every interface, and
 * `server.allowedHosts` — so the printed URL is always answerable. Pure.
 * Does not check: that a name in `allowedHosts` resolves to this machine; Host names of other
 * interfaces when bound to all of them (list those in `allowedHosts`).
 */
export function servedAt(input: {
  /** The host asked for (`listen({ host })`, `--host`, `$BASTION_HOST`, `server.host`): a name or an address. */
  readonly requested: string
  /** The address the socket is bound to (or, for an edge that does not listen, the host asked for). */
  readonly address: string
  readonly port: number
  readonly secure: boolean
  readonly path: string
  readonly allowedHosts: readonly string[]
}): Served {
  const everywhere = isUnspecified(input.address)
  const shown = everywhere ? (isIP(bare(input.address)) === 6 ? '[::1]' : '127.0.0.1') : hostLiteral(input.address)
  const hosts = new Set(input.allowedHosts.map((h) => h.toLowerCase()))
  hosts.add(shown)
  if (everywhere || isLoopback(input.address)) for (const name of LOOPBACK_NAMES) hosts.add(name)
  if (!isUnspecified(input.requested)) hosts.add(hostLiteral(input.requested))
  return { url: `${input.secure ? 'https' : 'http'}://${shown}:${input.port}${input.path}`, allowedHosts: [...hosts] }
}

/**
 * This server's resource URI (RFC 8707; the `resource` of RFC 9728 metadata and the audience of
 * the tokens it accepts): `auth.resource`, else the URL it serves at. Token verifiers and the
 * token service exist before the address is known and read it through {@link get}; {@link fix}
 * settles it once, when serving starts, and it never changes after.
 */
export class ResourceUri {
  #value: string | undefined
  #fixed = false
  readonly #configured: boolean

  constructor(configured: string | undefined) {
    this.#value = configured
    this.#configured = configured !== undefined
  }

  /** The URI; undefined when not configured and not (yet) serving at a URL. */
  get(): string | undefined {
    return this.#value
  }

  /**
   * Settle the URI when serving starts: the configured one, else `served` (undefined for an
   * embedded edge, which has no URL of its own). @throws Error the second time
   */
  fix(served: string | undefined): string | undefined {
    if (this.#fixed) throw new Error('the resource URI is already fixed: a bastion serves one edge')
    this.#fixed = true
    if (!this.#configured) this.#value = served
    return this.#value
  }
}
