import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface AuthProxy {
  /** The proxy's MCP endpoint: same path as the target, proxy's port. */
  readonly url: string
  close(): Promise<void>
}

/**
 * Authentication disabled for the conformance fixture ONLY. The conformance harness cannot send
 * an `Authorization` header and bastion has (deliberately) no switch to turn authentication off,
 * so this loopback reverse proxy adds `Authorization: Bearer <key>` to every request and forwards
 * it to the bastion unchanged otherwise. Never use it outside this test: whoever reaches the port
 * acts as the key's principal.
 *
 * `Host` and `Origin` pass through untouched, so bastion's DNS-rebinding guard still judges what
 * the harness sent (the proxy listens on 127.0.0.1 too, so a genuine Host names a loopback name).
 * Bodies stream in both directions: SSE responses reach the harness event by event.
 * Does not check: anything. It binds 127.0.0.1 only and refuses any other target than loopback.
 */
export async function startAuthProxy(target: string, apiKey: string): Promise<AuthProxy> {
  const to = new URL(target)
  if (to.hostname !== '127.0.0.1' || to.protocol !== 'http:') throw new Error(`auth proxy: target must be http://127.0.0.1, got ${to.origin}`)
  const server = createServer(function authProxyListener(req, res) {
    const headers = { ...req.headers, authorization: `Bearer ${apiKey}` }
    const upstream = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      // SSE: send the head now, not with the first event.
      res.flushHeaders()
      up.pipe(res)
      up.on('error', () => res.destroy())
    })
    upstream.on('error', () => {
      if (res.headersSent) res.destroy()
      else res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway')
    })
    // The harness hung up (e.g. it cancelled an SSE stream): tell the bastion too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })
    req.pipe(upstream)
  })
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolveListen()
    })
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}${to.pathname}`,
    close: () =>
      new Promise<void>((resolveClose) => {
        server.close(() => resolveClose())
        server.closeAllConnections()
      }),
  }
}
