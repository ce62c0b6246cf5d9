// The small proxy in front of bastion replicas (npm run cluster, and the proxy service of
// compose.yaml): round robin, except that a 2025-11-25 session stays on the replica that opened it
// (sessions live in one process). Bodies stream through; Host and every other header pass as
// sent; WebSocket upgrades are passed through to a replica. HTTPS when PROXY_TLS_CERT and
// PROXY_TLS_KEY name PEM files.
//
// Run alone: PROXY_PORT=8443 REPLICAS=a=bastion-a:8080,b=bastion-b:8080 node scripts/cluster-proxy.mjs
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { connect } from 'node:net'

const MAX_SESSIONS = 10_000

/** Start the proxy; resolves once it listens. replicas: [{ name, host, port }]. */
export function startProxy({ port, host = '127.0.0.1', replicas, tls }) {
  const sessions = new Map()
  let next = 0
  const pick = (session) => (typeof session === 'string' ? sessions.get(session) : undefined) ?? replicas[next++ % replicas.length]
  const handler = (req, res) => {
    const target = pick(req.headers['mcp-session-id'])
    const upstream = httpRequest({ host: target.host, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const opened = answer.headers['mcp-session-id']
      if (typeof opened === 'string') {
        sessions.set(opened, target)
        if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value)
      }
      res.writeHead(answer.statusCode ?? 502, { ...answer.headers, 'x-bastion-replica': target.name })
      answer.pipe(res)
    })
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"replica unavailable"}}')
      else res.destroy()
    })
    req.pipe(upstream)
  }
  const server = tls === undefined ? createHttpServer(handler) : createHttpsServer(tls, handler)
  // A WebSocket upgrade: the raw request goes to one replica, bytes both ways after it.
  server.on('upgrade', (req, socket, head) => {
    const target = pick(undefined)
    const out = connect(target.port, target.host, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`]
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`)
      out.write(`${lines.join('\r\n')}\r\n\r\n`)
      if (head.length > 0) out.write(head)
      out.pipe(socket)
      socket.pipe(out)
    })
    out.on('error', () => socket.destroy())
    socket.on('error', () => out.destroy())
  })
  return new Promise((ok) => server.listen(port, host, () => ok(server)))
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const replicas = (process.env.REPLICAS ?? '').split(',').map((spec) => {
    const [name, at] = spec.split('=')
    const [host, port] = (at ?? '').split(':')
    return { name, host, port: Number(port) }
  })
  if (replicas.length === 0 || replicas.some((r) => !r.name || !r.host || !(r.port > 0))) {
    process.stderr.write('REPLICAS: name=host:port,… (at least one)\n')
    process.exit(2)
  }
  const cert = process.env.PROXY_TLS_CERT
  const key = process.env.PROXY_TLS_KEY
  const tls = cert && key ? { cert: readFileSync(cert), key: readFileSync(key), minVersion: 'TLSv1.2' } : undefined
  const server = await startProxy({ port: Number(process.env.PROXY_PORT ?? 8443), host: process.env.PROXY_HOST ?? '0.0.0.0', replicas, tls })
  process.stdout.write(`proxy listening on ${process.env.PROXY_PORT ?? 8443} -> ${replicas.map((r) => `${r.name} ${r.host}:${r.port}`).join(', ')}\n`)
  const stop = () => server.close(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
