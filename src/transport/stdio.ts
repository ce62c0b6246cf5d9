import { randomUUID } from 'node:crypto'
import type { JSONRPCMessage, MessageExtraInfo, Transport, TransportSendOptions } from '@modelcontextprotocol/server'
import { serveStdio as sdkServeStdio } from '@modelcontextprotocol/server/stdio'
import type { AuditLog } from '../audit/audit-log.js'
import type { CredentialSource } from '../auth/authenticate.js'
import type { Authenticator } from '../auth/authenticator.js'
import type { BruteForce } from '../auth/brute-force.js'
import { ConfigError } from '../config/load.js'
import { SecurityError, toSecurityError } from '../errors.js'
import type { BodyLimits } from '../limits/body-guard.js'
import { parseJsonBody } from '../limits/json-body.js'
import { compose, type Guard } from '../pipeline/compose.js'
import { createExchange, type Era, type Exchange, requestIdFrom, rpcIdOf, rpcMethodOf, type Stage } from '../pipeline/exchange.js'
import type { Principal } from '../principal.js'
import type { Tracing } from '../telemetry/tracing.js'
import { buildServer, type ServerDeps } from './mcp-server.js'
import { requestStages, type StageDeps } from './stages.js'
import { Wire } from './wire.js'

export interface StdioOptions {
  readonly serverDeps: ServerDeps
  readonly audit: AuditLog
  readonly authenticator: Authenticator
  readonly bruteForce: BruteForce
  readonly stages: Omit<StageDeps, 'auth' | 'era' | 'session'>
  readonly log: { warn(fields: object, message: string): void }
  /** OpenTelemetry traces, when configured. */
  readonly tracing?: Tracing
  readonly env?: NodeJS.ProcessEnv
  /** Streams instead of the process's stdin and stdout (tests, and a WebSocket's messages). */
  readonly stdin?: NodeJS.ReadableStream
  readonly stdout?: NodeJS.WritableStream
  /**
   * The connection's credential when it is not `$MCP_API_KEY` (a WebSocket's, from its upgrade
   * request or first message), with what the audit lines call the transport and the peer.
   */
  readonly connection?: {
    readonly credential: string
    readonly source: CredentialSource
    readonly transport: 'websocket'
    readonly remoteAddress: string | undefined
  }
}

type Reply = JSONRPCMessage | undefined

const pass: Stage = async (_x, next) => next()

// stdio exchanges end with their message or the connection; per-call cancellation is the SDK's signal.
const NEVER = new AbortController().signal

/**
 * MCP over stdin/stdout with bastion in front: newline-delimited JSON-RPC (MCP transports: stdio),
 * read here so that every line — also one that is not JSON, too large or too deep — gets the same
 * bytes check as an HTTP body, an answer rendered by the wire and its audit line. A message that
 * passes the stage list goes to the SDK; its answer goes out through the wire, which re-renders SDK
 * errors and commits the request's audit line before the answer is written.
 */
class GuardedTransport implements Transport {
  readonly #stdin: NodeJS.ReadableStream
  readonly #stdout: NodeJS.WritableStream
  readonly #limits: BodyLimits
  readonly #path: (x: Exchange) => Promise<Reply>
  readonly #refuse: (x: Exchange, error: SecurityError) => Promise<Reply>
  readonly #open: (message: unknown) => Exchange
  /** Exchanges waiting for the SDK's answer, by JSON-RPC id. */
  readonly #pending = new Map<string | number, { x: Exchange; answer: (reply: Reply) => void }>()
  readonly exchanges = new Map<string | number, Exchange>()
  #buffer = ''
  /** A line passed the byte cap: the rest of it is dropped, up to its newline. */
  #discarding = false
  /** The protocol version the connection opened with: every later message must carry the same. */
  #version: string | undefined
  #closed = false
  onclose?: () => void
  onerror?: (error: Error) => void
  onmessage?: <T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void

  constructor(io: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream }, limits: BodyLimits, open: (message: unknown) => Exchange, stages: Guard<Exchange, Reply>[]) {
    this.#stdin = io.stdin
    this.#stdout = io.stdout
    this.#limits = limits
    this.#open = open
    this.#path = compose<Exchange, Reply>(stages, (x) => this.#dispatch(x))
    const [answer] = stages
    this.#refuse = (x, error) =>
      compose<Exchange, Reply>(answer === undefined ? [] : [answer], async () => {
        throw error
      })(x)
  }

  readonly #onData = (chunk: Buffer | string): void => {
    this.#buffer += typeof chunk === 'string' ? chunk : chunk.toString('utf8')
    for (let end = this.#buffer.indexOf('\n'); end >= 0; end = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, end).replace(/\r$/, '')
      this.#buffer = this.#buffer.slice(end + 1)
      if (this.#discarding) {
        this.#discarding = false
        continue
      }
      if (line.trim().length > 0) void this.#receive(line)
    }
    if (this.#buffer.length > this.#limits.maxBytes) {
      // Bounded: an endless line is refused once, and its bytes are not kept.
      this.#buffer = ''
      if (!this.#discarding) void this.#refuseLine(new SecurityError('ERR_BODY_TOO_LARGE', `stdin line over ${this.#limits.maxBytes} bytes`))
      this.#discarding = true
    }
  }

  readonly #onEnd = (): void => {
    void this.close()
  }

  async start(): Promise<void> {
    this.#stdin.on('data', this.#onData)
    this.#stdin.on('end', this.#onEnd)
    this.#stdin.on('error', (error: Error) => this.onerror?.(error))
  }

  async #refuseLine(error: SecurityError): Promise<void> {
    const reply = await this.#refuse(this.#open(undefined), error)
    if (reply !== undefined) await this.#write(reply)
  }

  async #receive(line: string): Promise<void> {
    let message: unknown
    try {
      message = parseJsonBody(line, this.#limits)
    } catch (error) {
      return this.#refuseLine(toSecurityError(error))
    }
    const x = this.#open(message)
    const version = protocolVersionOf(message)
    let reply: Reply
    if (this.#version !== undefined && version !== undefined && version !== this.#version) {
      reply = await this.#refuse(
        x,
        new SecurityError('ERR_UNSUPPORTED_VERSION', `protocol ${version.slice(0, 32)} on a ${this.#version} connection`, {
          data: { supported: [this.#version], requested: version.slice(0, 32) },
        }),
      )
    } else {
      reply = await this.#path(x)
      // The first request the SDK answered with a result fixes the connection's version.
      if (this.#version === undefined && reply !== undefined && 'result' in reply) this.#version = version ?? resultVersionOf(reply)
    }
    if (reply !== undefined) await this.#write(reply)
  }

  async #write(message: JSONRPCMessage): Promise<void> {
    if (this.#closed) return
    const text = `${JSON.stringify(message)}\n`
    if (!this.#stdout.write(text)) await new Promise<void>((resolve) => this.#stdout.once('drain', () => resolve()))
  }

  /** The SDK gets the message; for a request, the stage list waits for its answer. */
  #dispatch(x: Exchange): Promise<Reply> {
    const message = x.message as JSONRPCMessage
    const id = rpcIdOf(message)
    const isRequest = id !== null && typeof (message as { method?: unknown }).method === 'string'
    if (!isRequest || id === null) {
      this.onmessage?.(message)
      // MCP cancellation: the SDK aborts the request and sends no answer; its exchange ends once
      // the handler has recorded the cancellation.
      if ((message as { method?: unknown }).method === 'notifications/cancelled') {
        const target = (message as { params?: { requestId?: unknown } }).params?.requestId
        if (typeof target === 'string' || typeof target === 'number') setTimeout(() => this.#pending.get(target)?.answer(undefined), 10)
      }
      return Promise.resolve(undefined)
    }
    return new Promise<Reply>((resolve) => {
      const done = (reply: Reply): void => {
        this.#pending.delete(id)
        this.exchanges.delete(id)
        resolve(reply)
      }
      this.#pending.set(id, { x, answer: done })
      this.exchanges.set(id, x)
      this.onmessage?.(message)
    })
  }

  async send(message: JSONRPCMessage, _options?: TransportSendOptions): Promise<void> {
    const id = rpcIdOf(message)
    const isAnswer = id !== null && !('method' in message)
    const waiting = isAnswer ? this.#pending.get(id) : undefined
    if (waiting !== undefined) return waiting.answer(message)
    await this.#write(message)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#stdin.off('data', this.#onData)
    this.#stdin.off('end', this.#onEnd)
    for (const { answer } of this.#pending.values()) answer(undefined)
    this.onclose?.()
  }
}

/**
 * Is a refusal of this message answered? JSON-RPC 2.0 §5: a request is, and so is what could not be
 * read as one (with id null); a notification never is.
 */
function answered(message: unknown): boolean {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return true
  return !(Object.hasOwn(message, 'method') && !Object.hasOwn(message, 'id'))
}

/** The protocol version a message declares: 2026-07-28 in its `_meta`, 2025-11-25 in initialize's params. */
function protocolVersionOf(message: unknown): string | undefined {
  const params = (message as { params?: { _meta?: Record<string, unknown>; protocolVersion?: unknown } } | undefined)?.params
  const v = params?._meta?.['io.modelcontextprotocol/protocolVersion'] ?? ((message as { method?: unknown }).method === 'initialize' ? params?.protocolVersion : undefined)
  return typeof v === 'string' ? v : undefined
}

/** The version an initialize result settled on (2025-11-25: the server may answer another than asked). */
function resultVersionOf(reply: JSONRPCMessage): string | undefined {
  const v = (reply as { result?: { protocolVersion?: unknown } }).result?.protocolVersion
  return typeof v === 'string' ? v : undefined
}

/**
 * stdio: the principal comes from an API key in `MCP_API_KEY`, verified at start and again on
 * every message (a revoked or expired key stops working mid-connection). The same stage list and
 * audit trail as HTTP; there is no Origin, Host or session to check on a pipe.
 * @throws ConfigError when MCP_API_KEY is missing; SecurityError when it is not a valid key.
 */
export async function serveStdioTransport(options: StdioOptions): Promise<{ close(): Promise<void> }> {
  const env = options.env ?? process.env
  const conn = options.connection
  const key = conn?.credential ?? env.MCP_API_KEY
  if (key === undefined || key === '') throw new ConfigError('stdio mode: environment variable MCP_API_KEY is not set (an API key from `mcp-bastion keys create`)')
  const source: CredentialSource = conn?.source ?? 'environment'
  const transportName = conn?.transport ?? 'stdio'
  const remoteAddress = conn?.remoteAddress
  const { audit } = options
  const requestId = randomUUID()
  let principal: Principal
  try {
    principal = await options.authenticator.verify(key, source)
  } catch (error) {
    const failure = toSecurityError(error)
    audit.record({
      event: 'auth.failure',
      requestId,
      decision: 'deny',
      reason: failure.code,
      transport: transportName,
      via: source,
      remote: remoteAddress,
      detail: failure.message,
    })
    throw failure
  }
  audit.record({
    event: 'auth.success',
    requestId,
    principal: principal.id,
    roles: principal.roles,
    decision: 'allow',
    reason: 'OK',
    transport: transportName,
    via: source,
    remote: remoteAddress,
  })
  const wire = new Wire(undefined)
  const answer: Guard<Exchange, Reply> = async function answerStdioStage(x, next) {
    let reply: Reply
    try {
      // A sink known down refuses before the tool runs, as over HTTP (answerHttp).
      if (!x.audit.available) throw new SecurityError('ERR_AUDIT_UNAVAILABLE', 'audit sink unavailable')
      const answered = await next()
      reply = answered === undefined ? undefined : await wire.settleMessage(x, answered)
      if (answered === undefined) await x.audit.commit()
    } catch (error) {
      const failure = toSecurityError(error)
      x.audit.fail(failure)
      reply = answered(x.message) ? wire.message(x, failure) : undefined
      try {
        await x.audit.commit()
      } catch (auditFailure) {
        reply = answered(x.message) ? wire.message(x, toSecurityError(auditFailure)) : undefined
      }
    }
    return reply
  }
  const stages = requestStages({
    ...options.stages,
    auth: { authenticator: options.authenticator, bruteForce: options.bruteForce, audit, presented: key, presentedSource: source },
    era: async () => 'legacy',
    session: pass,
  })
  let era: Era | undefined
  const open = (message: unknown): Exchange => {
    // The connection's era is decided by its first request, as the SDK decides it.
    if (era === undefined && message !== undefined) era = rpcMethodOf(message) === 'initialize' ? 'legacy' : 'modern'
    return createExchange({
      requestId: requestIdFrom(undefined, (id) => audit.survives(id)),
      transport: transportName,
      remoteAddress,
      signal: NEVER,
      audit,
      message,
      ...(era === undefined ? {} : { era }),
      tracing: options.tracing,
    })
  }
  let transport: GuardedTransport | undefined = new GuardedTransport(
    { stdin: options.stdin ?? process.stdin, stdout: options.stdout ?? process.stdout },
    options.stages.body,
    open,
    [answer, ...stages],
  )
  const guarded = transport
  const exchangeOf = (ctx: { mcpReq: { id: string | number } }): Exchange => {
    const x = guarded.exchanges.get(ctx.mcpReq.id)
    if (x === undefined) throw new SecurityError('ERR_INTERNAL', 'SDK handler called for a message bastion did not admit')
    return x
  }
  const handle = sdkServeStdio((ctx) => buildServer(options.serverDeps, exchangeOf, ctx.era), {
    transport,
    onerror: (error) => options.log.warn({ err: { name: error.name, message: error.message } }, 'stdio transport error'),
  })
  return {
    close: async () => {
      await handle.close()
      transport = undefined
    },
  }
}

/** What `serveStdio` needs of a bastion: its built parts. */
export interface StdioHost {
  stdioOptions(): Omit<StdioOptions, 'env' | 'stdin' | 'stdout'>
}

/** Serve MCP over stdin/stdout for this bastion (see {@link serveStdioTransport}). */
export function serveStdio(bastion: StdioHost, env: NodeJS.ProcessEnv = process.env): Promise<{ close(): Promise<void> }> {
  return serveStdioTransport({ ...bastion.stdioOptions(), env })
}
