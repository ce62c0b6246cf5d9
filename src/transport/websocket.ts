import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { PassThrough } from 'node:stream'
import { type WebSocket, WebSocketServer } from 'ws'
import type { AuditLog } from '../audit/audit-log.js'
import { type CredentialSource, credentialFromHeaders } from '../auth/authenticate.js'
import { rpcError, SecurityError, toSecurityError, WIRE } from '../errors.js'
import { hostOriginRefusal, type OriginPolicy } from './http/dns-rebinding.js'
import type { Edge } from './http/edge.js'
import { refuseOnSocket } from './http/node-listener.js'
import { type StdioOptions, serveStdioTransport } from './stdio.js'

export interface WebSocketOptions {
  readonly path: string
  readonly authTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly maxConnections: number
  readonly maxMessageBytes: number
  /** Per connection: messages per second, the bucket's size, requests awaiting answers at once. */
  readonly messagesPerSecond: number
  readonly burst: number
  readonly maxInFlight: number
  readonly origins: OriginPolicy
  readonly secure: boolean
  readonly audit: AuditLog
  /** The HTTP edge: renders and audits a refused upgrade as it does any refused request. */
  readonly edge: Edge
  /** What each connection's message loop is built from (the stdio transport's parts). */
  readonly serving: Omit<StdioOptions, 'env' | 'stdin' | 'stdout' | 'connection'>
}

/** The first message of a connection that sent no credential with its upgrade request. */
export const AUTHENTICATE_METHOD = 'bastion/authenticate'
/** RFC 6455 §7.4.1: policy violation (no or a refused credential), unsupported data, message too big. */
const POLICY = 1008
const UNSUPPORTED = 1003
const SUBPROTOCOL = 'mcp'
const BEARER_PROTOCOL = 'bearer.'

/** A credential in `Sec-WebSocket-Protocol` (`bearer.<token>`, for browsers, which cannot set Authorization). */
function protocolCredential(req: IncomingMessage): string | undefined {
  const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim())
  const bearer = offered.find((p) => p.startsWith(BEARER_PROTOCOL))
  return bearer === undefined || bearer.length === BEARER_PROTOCOL.length ? undefined : bearer.slice(BEARER_PROTOCOL.length)
}

/**
 * MCP over WebSocket at `path`: the upgrade request's Host and Origin are checked as any request's
 * (cross-site WebSocket hijacking), then its credential — `Authorization: Bearer`, `X-API-Key`, or
 * a `bearer.<token>` subprotocol — or, failing those, the first message (`bastion/authenticate`
 * with `params.credential`) within `authTimeoutMs`; else the connection is closed (1008). Each
 * message is one JSON-RPC message through the same stage list as stdio, the credential verified
 * again on every message (a key revoked mid-connection is refused at its next message), with one
 * audit line each. Frames over `maxMessageBytes` close the connection (1009); a peer that does not
 * answer pings within `idleTimeoutMs` is dropped.
 * Does not check: what a message holds (the stage list does).
 */
export function websocketUpgrade(options: WebSocketOptions): { upgrade: (req: IncomingMessage, socket: Socket, head: Buffer) => void; close(): void } {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxMessageBytes,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  })
  const refusal = hostOriginRefusal(options.origins)
  let open = 0
  const refuse = (socket: Socket, error: SecurityError): void => refuseOnSocket(options.edge, socket, error, { secure: options.secure, method: 'GET' })
  /** Why this upgrade request is refused, or what it presented (a credential, or none yet). */
  const admit = (req: IncomingMessage): SecurityError | { presented: { token: string; source: CredentialSource } | undefined } => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== options.path) return new SecurityError('ERR_NOT_FOUND', `no WebSocket endpoint at ${String(path).slice(0, 100)}`)
    if ((req.url ?? '').includes('?')) return new SecurityError('ERR_INVALID_REQUEST', 'a WebSocket URL takes no query (credentials never go in a URL)')
    const refused = refusal(req.headers.host ?? null, req.headers.origin ?? null, options.secure ? 'https:' : 'http:')
    if (refused !== undefined) return refused
    if (open >= options.maxConnections) return new SecurityError('ERR_CONCURRENCY_LIMIT', `more than ${options.maxConnections} WebSocket connections`, { retryAfterMs: 1000 })
    try {
      const headers = new Headers({
        ...(req.headers.authorization === undefined ? {} : { authorization: req.headers.authorization }),
        ...(typeof req.headers['x-api-key'] === 'string' ? { 'x-api-key': req.headers['x-api-key'] } : {}),
      })
      return { presented: credentialFromHeaders(headers) }
    } catch (error) {
      // No credential in the headers is fine (a subprotocol or the first message may bring one); a malformed one is refused.
      const failure = toSecurityError(error)
      if (failure.code !== 'ERR_AUTH_MISSING') return failure
    }
    const fromProtocol = protocolCredential(req)
    return { presented: fromProtocol === undefined ? undefined : { token: fromProtocol, source: 'authorization' } }
  }
  const upgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    const admitted = admit(req)
    if (admitted instanceof SecurityError) {
      refuse(socket, admitted)
      return
    }
    const { presented } = admitted
    open += 1
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.once('close', () => {
        open -= 1
      })
      serveConnection(options, ws, req.socket.remoteAddress, presented)
    })
  }
  return {
    upgrade,
    // Upgraded sockets leave the HTTP server's keeping: closed here when it stops.
    close: () => {
      for (const client of wss.clients) client.terminate()
      wss.close()
    },
  }
}

function serveConnection(
  options: WebSocketOptions,
  ws: WebSocket,
  remoteAddress: string | undefined,
  upgradeCredential: { token: string; source: CredentialSource } | undefined,
): void {
  const { audit } = options
  // A protocol error (a frame over maxPayload, a bad frame) closes the connection with its code; it must not throw.
  ws.on('error', () => undefined)
  const early: string[] = []
  let input: PassThrough | undefined
  let alive = true
  const ping = setInterval(() => {
    if (!alive) {
      ws.terminate()
      return
    }
    alive = false
    ws.ping()
  }, options.idleTimeoutMs / 2)
  ws.on('pong', () => {
    alive = true
  })
  const closeWith = (code: number, reason: string, error: SecurityError): void => {
    audit.record({ event: 'auth.failure', decision: 'deny', reason: error.code, transport: 'websocket', remote: remoteAddress, detail: error.message })
    ws.close(code, reason)
  }
  // The connection's own bucket and its requests in flight: one connection cannot take all of its
  // principal's share, nor queue without bound behind a slow tool.
  let tokens = options.burst
  let refilled = performance.now()
  const pending = new Set<string | number>()
  const admit = (text: string): SecurityError | undefined => {
    const now = performance.now()
    tokens = Math.min(options.burst, tokens + ((now - refilled) * options.messagesPerSecond) / 1000)
    refilled = now
    if (tokens < 1)
      return new SecurityError('ERR_RATE_LIMITED', `connection over ${options.messagesPerSecond} messages/s`, {
        retryAfterMs: Math.ceil(((1 - tokens) * 1000) / options.messagesPerSecond),
      })
    const id = idOf(text)
    if (id !== undefined && pending.size >= options.maxInFlight)
      return new SecurityError('ERR_CONCURRENCY_LIMIT', `connection has ${options.maxInFlight} requests in flight`, { retryAfterMs: 100 })
    tokens -= 1
    if (id !== undefined) pending.add(id)
    return undefined
  }
  /** A message refused before the message loop: one audit line, and an error answer if it was a request. */
  const refuseMessage = (text: string, error: SecurityError): void => {
    const requestId = randomUUID()
    audit.record({ event: WIRE[error.code].event, requestId, decision: 'deny', reason: error.code, transport: 'websocket', remote: remoteAddress, detail: error.message })
    const id = idOf(text)
    if (id !== undefined && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ jsonrpc: '2.0', id, error: rpcError(error, requestId) }))
  }
  const start = (credential: string, source: CredentialSource): void => {
    const stdin = new PassThrough()
    const stdout = new PassThrough()
    input = stdin
    serveStdioTransport({
      ...options.serving,
      stdin,
      stdout,
      connection: { credential, source, transport: 'websocket', remoteAddress },
    }).then(
      (handle) => {
        // Each line the transport writes is one message.
        createInterface({ input: stdout, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
          const answered = answerIdOf(line)
          if (answered !== undefined) pending.delete(answered)
          if (ws.readyState === ws.OPEN) ws.send(line)
        })
        ws.once('close', () => {
          stdin.end()
          void handle.close().catch(() => undefined)
        })
        for (const m of early.splice(0)) stdin.write(m)
      },
      (error: unknown) => {
        // The stdio transport recorded the refusal (auth.failure): close without a second line.
        input = undefined
        const failure = toSecurityError(error)
        ws.close(POLICY, failure.code === 'ERR_AUTH_UNAVAILABLE' ? 'authentication unavailable' : 'invalid credentials')
      },
    )
  }
  // No credential yet: the first message must carry one, in time.
  const timer =
    upgradeCredential === undefined
      ? setTimeout(
          () => closeWith(POLICY, 'authentication required', new SecurityError('ERR_AUTH_MISSING', `no credential within ${options.authTimeoutMs} ms`)),
          options.authTimeoutMs,
        )
      : undefined
  let authenticated = upgradeCredential !== undefined
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.close(UNSUPPORTED, 'text messages only')
      return
    }
    // One message is one line for the message loop: JSON has no raw line break outside whitespace.
    const text = `${data.toString().replace(/[\r\n]/g, ' ')}\n`
    if (!authenticated) {
      clearTimeout(timer)
      authenticated = true
      const credential = credentialOf(text)
      if (credential === undefined) {
        closeWith(POLICY, 'authentication required', new SecurityError('ERR_AUTH_MISSING', `the first message is not ${AUTHENTICATE_METHOD}`))
        return
      }
      start(credential, 'authorization')
      return
    }
    const refused = admit(text)
    if (refused !== undefined) refuseMessage(text, refused)
    else if (input === undefined) early.push(text)
    else input.write(text)
  })
  ws.once('close', () => {
    clearInterval(ping)
    clearTimeout(timer)
  })
  if (upgradeCredential !== undefined) start(upgradeCredential.token, upgradeCredential.source)
}

/** The id of a request (a message with a method and an id), if the text is one. */
function idOf(text: string): string | number | undefined {
  try {
    const m = JSON.parse(text) as { id?: unknown; method?: unknown }
    return typeof m.method === 'string' && (typeof m.id === 'string' || typeof m.id === 'number') ? m.id : undefined
  } catch {
    return undefined
  }
}

/** The id an outgoing line answers (a result or an error), if it is an answer. */
function answerIdOf(line: string): string | number | undefined {
  try {
    const m = JSON.parse(line) as { id?: unknown; method?: unknown }
    return m.method === undefined && (typeof m.id === 'string' || typeof m.id === 'number') ? m.id : undefined
  } catch {
    return undefined
  }
}

/** `{"jsonrpc":"2.0","method":"bastion/authenticate","params":{"credential":"…"}}` → the credential. */
function credentialOf(text: string): string | undefined {
  try {
    const m = JSON.parse(text) as { method?: unknown; params?: { credential?: unknown } }
    return m.method === AUTHENTICATE_METHOD && typeof m.params?.credential === 'string' && m.params.credential !== '' ? m.params.credential : undefined
  } catch {
    return undefined
  }
}
