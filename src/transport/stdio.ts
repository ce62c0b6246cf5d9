import { randomUUID } from 'node:crypto'
import type { JSONRPCMessage, MessageExtraInfo, Transport, TransportSendOptions } from '@modelcontextprotocol/server'
import { StdioServerTransport, serveStdio as sdkServeStdio } from '@modelcontextprotocol/server/stdio'
import type { AuditLog } from '../audit/audit-log.js'
import type { Authenticator } from '../auth/authenticator.js'
import type { BruteForce } from '../auth/brute-force.js'
import { ConfigError } from '../config/load.js'
import { SecurityError, toSecurityError } from '../errors.js'
import { compose, type Guard } from '../pipeline/compose.js'
import { createExchange, type Exchange, requestIdFrom, rpcIdOf, type Stage } from '../pipeline/exchange.js'
import type { Principal } from '../principal.js'
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
  readonly env?: NodeJS.ProcessEnv
  /** Streams instead of the process's stdin and stdout (tests). */
  readonly stdin?: NodeJS.ReadableStream
  readonly stdout?: NodeJS.WritableStream
}

type Reply = JSONRPCMessage | undefined

const pass: Stage = async (_x, next) => next()

/** 2026-07-28 messages carry their protocol version in `_meta`; 2025-11-25 connections negotiate it once. */
function eraOf(message: JSONRPCMessage): 'modern' | 'legacy' {
  const meta = (message as { params?: { _meta?: Record<string, unknown> } }).params?._meta
  return meta !== undefined && typeof meta === 'object' && meta !== null && 'io.modelcontextprotocol/protocolVersion' in meta ? 'modern' : 'legacy'
}

/**
 * The SDK's stdio transport with bastion in front: every message from the client goes through the
 * stage list before the SDK sees it, and every answer goes out through the wire, which re-renders
 * SDK errors and commits the request's audit line before the answer is written.
 */
class GuardedTransport implements Transport {
  readonly #inner: StdioServerTransport
  readonly #path: (x: Exchange) => Promise<Reply>
  readonly #open: (message: JSONRPCMessage) => Exchange
  /** Exchanges waiting for the SDK's answer, by JSON-RPC id. */
  readonly #pending = new Map<string | number, { x: Exchange; answer: (reply: Reply) => void }>()
  readonly exchanges = new Map<string | number, Exchange>()
  onclose?: () => void
  onerror?: (error: Error) => void
  onmessage?: <T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void

  constructor(inner: StdioServerTransport, open: (message: JSONRPCMessage) => Exchange, stages: Guard<Exchange, Reply>[]) {
    this.#inner = inner
    this.#open = open
    this.#path = compose<Exchange, Reply>(stages, (x) => this.#dispatch(x))
  }

  async start(): Promise<void> {
    this.#inner.onmessage = (message) => {
      void this.#receive(message)
    }
    this.#inner.onerror = (error) => this.onerror?.(error)
    this.#inner.onclose = () => this.onclose?.()
    await this.#inner.start()
  }

  async #receive(message: JSONRPCMessage): Promise<void> {
    const x = this.#open(message)
    const reply = await this.#path(x)
    if (reply !== undefined) await this.#inner.send(reply)
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
    await this.#inner.send(message)
  }

  async close(): Promise<void> {
    await this.#inner.close()
  }
}

/**
 * stdio: the principal comes from an API key in `MCP_API_KEY`, verified at start and again on
 * every message (a revoked or expired key stops working mid-connection). The same stage list and
 * audit trail as HTTP; there is no Origin, Host or session to check on a pipe.
 * @throws ConfigError when MCP_API_KEY is missing; SecurityError when it is not a valid key.
 */
export async function serveStdioTransport(options: StdioOptions): Promise<{ close(): Promise<void> }> {
  const env = options.env ?? process.env
  const key = env.MCP_API_KEY
  if (key === undefined || key === '') throw new ConfigError('stdio mode: environment variable MCP_API_KEY is not set (an API key from `mcp-bastion keys create`)')
  const { audit } = options
  const requestId = randomUUID()
  let principal: Principal
  try {
    principal = await options.authenticator.verify(key, 'environment')
  } catch (error) {
    const failure = toSecurityError(error)
    audit.record({ event: 'auth.failure', requestId, decision: 'deny', reason: failure.code, transport: 'stdio', via: 'environment', detail: failure.message })
    throw failure
  }
  audit.record({ event: 'auth.success', requestId, principal: principal.id, roles: principal.roles, decision: 'allow', reason: 'OK', transport: 'stdio', via: 'environment' })
  const wire = new Wire(undefined)
  const answer: Guard<Exchange, Reply> = async function answerStdioStage(x, next) {
    let reply: Reply
    try {
      const answered = await next()
      reply = answered === undefined ? undefined : await wire.settleMessage(x, answered)
      if (answered === undefined) await x.audit.commit()
    } catch (error) {
      const failure = toSecurityError(error)
      x.audit.fail(failure)
      reply = rpcIdOf(x.message) === null ? undefined : wire.message(x, failure)
      try {
        await x.audit.commit()
      } catch (auditFailure) {
        reply = rpcIdOf(x.message) === null ? undefined : wire.message(x, toSecurityError(auditFailure))
      }
    }
    return reply
  }
  const stages = requestStages({
    ...options.stages,
    auth: { authenticator: options.authenticator, bruteForce: options.bruteForce, audit, presented: key },
    era: async () => 'legacy',
    session: pass,
  })
  const inner = new StdioServerTransport(options.stdin as never, options.stdout as never)
  let transport: GuardedTransport | undefined
  const open = (message: JSONRPCMessage): Exchange =>
    createExchange({
      requestId: requestIdFrom(undefined, (id) => audit.survives(id)),
      transport: 'stdio',
      remoteAddress: undefined,
      signal: new AbortController().signal,
      audit,
      message,
      era: eraOf(message),
    })
  transport = new GuardedTransport(inner, open, [answer, ...stages])
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
