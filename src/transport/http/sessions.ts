import { randomBytes } from 'node:crypto'
import {
  type AuthInfo,
  isInitializeRequest,
  type McpServer,
  type Server,
  SUPPORTED_PROTOCOL_VERSIONS,
  WebStandardStreamableHTTPServerTransport,
} from '@modelcontextprotocol/server'
import { SecurityError } from '../../errors.js'
import type { Exchange, Stage } from '../../pipeline/exchange.js'
import type { Principal } from '../../principal.js'

export interface SessionLimits {
  /** Sessions open at once, all principals together. */
  readonly maxTotal: number
  /** Sessions one principal may hold; past it, its least recently used idle session is closed. */
  readonly maxPerPrincipal: number
  /** A session unused this long is closed (the SDK itself never expires sessions). */
  readonly idleTimeoutMs: number
}

/** How long a client refused a session should wait before it tries again (a hint). */
const SESSION_RETRY_MS = 30_000

interface Session {
  readonly id: string
  readonly principalId: string
  readonly transport: WebStandardStreamableHTTPServerTransport
  readonly server: Server | McpServer
  lastUsed: number
  inflight: number
}

export type SessionEvent = { kind: 'closed'; id: string; principalId: string; reason: 'idle' | 'evicted' | 'deleted' | 'shutdown' }

/**
 * 2025-11-25 sessions (initialize + `Mcp-Session-Id`), each bound to the principal that created
 * it. The session id is 192 random bits. Caps per principal and overall, and an idle timeout, keep
 * memory bounded: the SDK keeps ~40 KB per session and never expires them.
 *
 * Does not check: the credential (authentication runs on every request before this stage).
 */
export class LegacySessions {
  readonly #sessions = new Map<string, Session>()
  readonly #timer: NodeJS.Timeout

  readonly #build: () => Server | McpServer

  constructor(
    private readonly limits: SessionLimits,
    build: () => Server | McpServer,
    private readonly onEvent: (event: SessionEvent) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#build = build
    const every = Math.max(1000, Math.min(30_000, Math.floor(limits.idleTimeoutMs / 4)))
    this.#timer = setInterval(() => this.sweep(), every)
    this.#timer.unref()
  }

  get size(): number {
    return this.#sessions.size
  }

  countFor(principalId: string): number {
    let n = 0
    for (const s of this.#sessions.values()) if (s.principalId === principalId) n++
    return n
  }

  /**
   * The session stage, for 2025-11-25 requests: an `initialize` without a session id will open a
   * session; anything else must name a live session owned by the same principal.
   * Does not check: the credential (authentication ran before), what the session may do (policy).
   * @throws SecurityError ERR_SESSION_REQUIRED, ERR_SESSION_NOT_FOUND, ERR_SESSION_FORBIDDEN
   */
  check(): Stage {
    return async (x, next) => {
      const request = x.http?.request
      if (request === undefined || x.era !== 'legacy') return next()
      const principal = x.principal
      if (principal === undefined) throw new SecurityError('ERR_INTERNAL', 'session stage reached unauthenticated')
      const sessionId = request.headers.get('mcp-session-id')
      if (sessionId === null) {
        if (request.method === 'POST' && isInitializeRequest(x.message)) return next()
        throw new SecurityError('ERR_SESSION_REQUIRED', `${request.method} without Mcp-Session-Id and not an initialize request`)
      }
      // MCP 2025-11-25 (Streamable HTTP, protocol version header): an unsupported version is refused.
      const version = request.headers.get('mcp-protocol-version')
      if (version !== null && !SUPPORTED_PROTOCOL_VERSIONS.includes(version))
        throw new SecurityError('ERR_UNSUPPORTED_VERSION', `MCP-Protocol-Version ${JSON.stringify(version.slice(0, 32))} is not supported`, {
          data: { supported: [...SUPPORTED_PROTOCOL_VERSIONS], requested: version.slice(0, 32) },
        })
      const session = this.#sessions.get(sessionId)
      if (session === undefined) throw new SecurityError('ERR_SESSION_NOT_FOUND', 'unknown or expired session id')
      x.sessionId = session.id
      if (session.principalId !== principal.id) throw new SecurityError('ERR_SESSION_FORBIDDEN', `session owned by ${session.principalId} presented by ${principal.id}`)
      return next()
    }
  }

  /**
   * Serve one legacy request the session stage admitted: open a session, or hand the request to its own.
   * @throws SecurityError ERR_SESSION_LIMIT, ERR_SESSION_NOT_FOUND (closed in between)
   */
  async handle(x: Exchange, authInfo: AuthInfo): Promise<Response> {
    const request = x.http?.request
    const principal = x.principal
    if (request === undefined || principal === undefined) throw new SecurityError('ERR_INTERNAL', 'session dispatch without a request or principal')
    const session = x.sessionId === undefined ? undefined : this.#sessions.get(x.sessionId)
    if (session === undefined) {
      if (x.sessionId !== undefined) throw new SecurityError('ERR_SESSION_NOT_FOUND', 'session closed while the request waited')
      return this.#open(request, x.message, principal, authInfo, (id) => {
        x.sessionId = id
      })
    }
    session.lastUsed = this.now()
    session.inflight++
    try {
      return await session.transport.handleRequest(request, { parsedBody: x.message, authInfo })
    } finally {
      session.inflight--
      session.lastUsed = this.now()
    }
  }

  async #open(request: Request, body: unknown, principal: Principal, authInfo: AuthInfo, onSession: (id: string) => void): Promise<Response> {
    if (this.countFor(principal.id) >= this.limits.maxPerPrincipal && !this.#evictIdle(principal.id)) {
      throw new SecurityError('ERR_SESSION_LIMIT', `${principal.id} holds ${this.limits.maxPerPrincipal} busy sessions`, { retryAfterMs: SESSION_RETRY_MS })
    }
    if (this.#sessions.size >= this.limits.maxTotal)
      throw new SecurityError('ERR_SESSION_LIMIT', `${this.limits.maxTotal} sessions open in total`, { retryAfterMs: SESSION_RETRY_MS })
    const id = randomBytes(24).toString('base64url')
    // SSE responses (the SDK default): server-to-client requests (sampling, elicitation) need the
    // stream, and the JSON-response mode leaks per request (typescript-sdk#2559).
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      onsessionclosed: (closed) => this.#drop(closed, 'deleted'),
    })
    const server = this.#build()
    await server.connect(transport)
    const session: Session = { id, principalId: principal.id, transport, server, lastUsed: this.now(), inflight: 1 }
    // Registered before the exchange so that the caps count it; removed if initialize fails.
    this.#sessions.set(id, session)
    onSession(id)
    try {
      const response = await transport.handleRequest(request, { parsedBody: body, authInfo })
      if (transport.sessionId === undefined || !response.ok) await this.#close(session, 'deleted')
      return response
    } catch (error) {
      await this.#close(session, 'deleted')
      throw error
    } finally {
      session.inflight--
      session.lastUsed = this.now()
    }
  }

  #evictIdle(principalId: string): boolean {
    let oldest: Session | undefined
    for (const s of this.#sessions.values()) {
      if (s.principalId !== principalId || s.inflight > 0) continue
      if (oldest === undefined || s.lastUsed < oldest.lastUsed) oldest = s
    }
    if (oldest === undefined) return false
    void this.#close(oldest, 'evicted')
    return true
  }

  /** Close sessions idle past the timeout. */
  sweep(): void {
    const cutoff = this.now() - this.limits.idleTimeoutMs
    for (const s of this.#sessions.values()) {
      if (s.inflight === 0 && s.lastUsed <= cutoff) void this.#close(s, 'idle')
    }
  }

  #drop(id: string, reason: SessionEvent['reason']): void {
    const s = this.#sessions.get(id)
    if (s === undefined) return
    this.#sessions.delete(id)
    this.onEvent({ kind: 'closed', id, principalId: s.principalId, reason })
  }

  async #close(session: Session, reason: SessionEvent['reason']): Promise<void> {
    this.#drop(session.id, reason)
    await session.server.close().catch(() => undefined)
  }

  async closeAll(): Promise<void> {
    clearInterval(this.#timer)
    await Promise.all([...this.#sessions.values()].map((s) => this.#close(s, 'shutdown')))
  }
}
