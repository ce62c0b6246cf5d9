import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ConfigError, type LoadedConfig, readSecret } from '../config/load.js'
import { isLoopback } from '../config/urls.js'
import { addressKey } from '../limits/rate-plan.js'

/**
 * Refuse a non-loopback address without TLS unless `server.dangerouslyAllowPlaintext` (which
 * warns), and warn when a non-loopback address has no `server.allowedHosts`.
 * Does not check: that a TLS-terminating proxy really is in front. @throws ConfigError
 */
export function refuseUnsafeBind(loaded: LoadedConfig, host: string, log: Logger): void {
  const { server } = loaded.config
  if (isLoopback(host)) return
  if (server.tls === undefined) {
    if (!server.dangerouslyAllowPlaintext) {
      throw new ConfigError(
        `config ${loaded.source}: server.host ${host} is not loopback and server.tls is not set; refusing to serve credentials in plaintext (set server.tls, or server.dangerouslyAllowPlaintext: true behind a TLS-terminating proxy)`,
      )
    }
    log.warn({ host }, 'dangerouslyAllowPlaintext: serving a non-loopback address without TLS; API keys cross the network in the clear')
  }
  if (server.allowedHosts.length === 0) {
    log.warn({ host }, 'server.allowedHosts is empty: only the bound address (and, on every interface, the loopback names) is accepted in the Host header')
  }
}

/**
 * An HTTP (or, with `server.tls`, HTTPS with TLS 1.2 minimum) server listening on host:port,
 * with no request handler yet: the edge it will serve needs the address it got.
 * @throws ConfigError for unreadable TLS material; the listen error (EADDRINUSE, …)
 */
export async function bindSocket(loaded: LoadedConfig, host: string, port: number): Promise<HttpServer> {
  const { tls, headersTimeoutSeconds, requestTimeoutSeconds, keepAliveTimeoutSeconds } = loaded.config.server
  // Node checks the headers and request timeouts every `connectionsCheckingInterval` (30 s by
  // default, so a slow client lived up to twice its timeout): once a second keeps them to the second.
  const timing = { headersTimeout: headersTimeoutSeconds * 1000, requestTimeout: requestTimeoutSeconds * 1000, connectionsCheckingInterval: 1000 }
  const server =
    tls === undefined
      ? // A request without Host is refused by the listener, through the edge (answered and audited), not by Node.
        createHttpServer({ requireHostHeader: false, ...timing })
      : createHttpsServer({
          requireHostHeader: false,
          ...timing,
          cert: readSecret(loaded, tls.cert, 'server.tls.cert'),
          key: readSecret(loaded, tls.key, 'server.tls.key'),
          minVersion: 'TLSv1.2',
        })
  server.keepAliveTimeout = keepAliveTimeoutSeconds * 1000
  capConnections(server, loaded.config.server)
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolveListen()
    })
  })
  return server
}

/**
 * At most `maxConnections` open connections (Node closes the ones past it as they arrive) and at
 * most `maxConnectionsPerAddress` from one address (IPv6 by /64), closed here as they arrive: a
 * connection costs memory before it sends a byte. Neither is answered or audited: there is no
 * request yet.
 * Does not check: requests on an admitted connection (the timeouts and the stage list do).
 */
function capConnections(server: HttpServer, caps: { maxConnections: number; maxConnectionsPerAddress: number }): void {
  server.maxConnections = caps.maxConnections
  const open = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const key = addressKey(socket.remoteAddress)
    const n = (open.get(key) ?? 0) + 1
    if (n > caps.maxConnectionsPerAddress) {
      socket.destroy()
      return
    }
    open.set(key, n)
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1
      if (left === 0) open.delete(key)
      else open.set(key, left)
    })
  })
}

/**
 * Whether the operator console is served on this address: when enabled, on a loopback address or
 * over TLS. A plain-HTTP non-loopback bind (`dangerouslyAllowPlaintext`) does not serve it, and
 * says so: a console session cookie must never cross a network in the clear.
 */
export function consoleServed(loaded: LoadedConfig, address: string, log: Logger | undefined): boolean {
  const { console: c, server } = loaded.config
  if (!c.enabled) return false
  if (server.tls !== undefined || isLoopback(address)) return true
  log?.warn({ host: address }, `console: not served on ${address} without TLS (set server.tls, or reach it on a loopback address)`)
  return false
}
