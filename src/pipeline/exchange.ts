import { randomUUID } from 'node:crypto'
import type { AuditLog } from '../audit/audit-log.js'
import { type SecurityError, type SecurityErrorCode, WIRE } from '../errors.js'
import type { CompiledPolicy, PolicyDecision } from '../policy/engine.js'
import type { Principal } from '../principal.js'
import { ExchangeTrace, type Tracing } from '../telemetry/tracing.js'
import type { RegisteredTool } from '../tools/registry.js'

export type Era = 'modern' | 'legacy'

/** The HTTP side of an exchange: the web-standard request and what the response will carry. */
export interface HttpPart {
  readonly request: Request
  readonly url: URL
  /** The body passed the byte cap while the listener read it. */
  readonly bodyTooLarge: boolean
  /**
   * What the listener found wrong with the raw header list (a repeated security header, a control
   * character), `null` when it found nothing, `undefined` when there was no raw list to read (an
   * embedder's web Request: the headers stage reads the merged headers instead).
   */
  readonly headerFault: SecurityError | null | undefined
  /** Headers added to whatever response goes out (request id, `Allow`). */
  readonly responseHeaders: Headers
}

/**
 * One request as it moves through the stage list (src/transport/stages.ts): created by the
 * transport, filled by the stages in order, each field set once by the stage that owns it.
 */
export interface Exchange {
  readonly requestId: string
  readonly startedAt: number
  readonly transport: 'http' | 'stdio' | 'websocket'
  readonly remoteAddress: string | undefined
  /** Aborted when the client disconnects or cancels. */
  readonly signal: AbortSignal
  readonly http: HttpPart | undefined
  /** The one audit line of this request. */
  readonly audit: AuditScope
  /** The JSON-RPC message, parsed once (HTTP: the body stage; stdio: the SDK's line reader). */
  message: unknown
  /** JSON-RPC method of the message, once it is known to be one. */
  method: string | undefined
  /** Set by the authenticate stage. */
  principal: Principal | undefined
  /** Set by the era stage (HTTP) or the transport (stdio). */
  era: Era | undefined
  sessionId: string | undefined
  /** `tools/call`: the registered tool (resolve stage), its validated arguments and the decision on them. */
  tool: RegisteredTool | undefined
  args: unknown
  decision: PolicyDecision | undefined
  /** The policy this request is decided by: taken once, so a reload never splits a request. */
  policy: CompiledPolicy | undefined
  /** OpenTelemetry: this request's span and its stage timings; undefined when tracing is off. */
  readonly trace: ExchangeTrace | undefined
}

// Opaque tokens a proxy may use: short, printable, no separators that break logs.
const REQUEST_ID = /^[A-Za-z0-9._-]{8,128}$/

/**
 * A caller's request id if it is safely shaped and the audit redactor leaves it as it is, else a
 * new UUID that it leaves as it is too: the id a client gets back must find its audit line, so
 * the redactor itself decides (a card-number-, key- or JWT-shaped id would be rewritten).
 * Does not check: uniqueness (a client may reuse its ids; the line has the time and principal).
 */
export function requestIdFrom(header: string | null | undefined, survives: (id: string) => boolean): string {
  if (header !== null && header !== undefined && REQUEST_ID.test(header) && survives(header)) return header
  // The redactor leaves UUIDs whole; the bound keeps a redactor that rewrites everything from looping.
  let id = randomUUID()
  for (let tries = 1; tries < 8 && !survives(id); tries++) id = randomUUID()
  return id
}

export function createExchange(init: {
  requestId: string
  transport: 'http' | 'stdio' | 'websocket'
  remoteAddress: string | undefined
  signal: AbortSignal
  audit: AuditLog
  http?: HttpPart
  message?: unknown
  era?: Era
  tracing?: Tracing | undefined
}): Exchange {
  const startedAt = performance.now()
  const x: Exchange = {
    requestId: init.requestId,
    startedAt,
    transport: init.transport,
    remoteAddress: init.remoteAddress,
    signal: init.signal,
    http: init.http,
    audit: new AuditScope(init.audit, () => x),
    message: init.message,
    method: undefined,
    principal: undefined,
    era: init.era,
    sessionId: undefined,
    tool: undefined,
    args: undefined,
    decision: undefined,
    policy: undefined,
    trace: init.tracing === undefined ? undefined : new ExchangeTrace(init.tracing, startedAt, init.http?.request.headers),
  }
  return x
}

/** The policy an exchange is decided by, pinned on first use. */
export function policyOf(x: Exchange, current: () => CompiledPolicy): CompiledPolicy {
  x.policy ??= current()
  return x.policy
}

// Fields of a round that stay on the next round's line (2025-11-25 re-entry): how the request came
// in, not what was decided.
const CARRIED = new Set(['via', 'kind', 'limits', 'limitsError'])

/**
 * The audit scope of one request: stages note fields and the outcome as they decide; `commit`
 * writes the single line, once, whatever path the request took. Replaces flags that said who
 * writes what: whoever commits first wins, later commits are no-ops.
 */
export class AuditScope {
  readonly #log: AuditLog
  readonly #exchange: () => Exchange
  #fields: Record<string, unknown> = {}
  #event = 'request'
  #decision: 'allow' | 'deny' | 'error' = 'allow'
  #reason: SecurityErrorCode | 'OK' = 'OK'
  #detail: string | undefined
  #committed = false
  #round = 1
  #held: Promise<unknown> | undefined

  constructor(log: AuditLog, exchange: () => Exchange) {
    this.#log = log
    this.#exchange = exchange
  }

  /** Add structured fields to the line (the deciding rule, the credential source, a bucket). */
  note(fields: Record<string, unknown>): void {
    Object.assign(this.#fields, fields)
  }

  /** The request is allowed so far; `event` names what it is (`auth.success`, `tool.call`). */
  allow(event: string): void {
    this.#event = event
    this.#decision = 'allow'
    this.#reason = 'OK'
    this.#detail = undefined
  }

  /** The request was refused or failed: decision and reason (and the event, unless named) come from the wire table. */
  fail(error: SecurityError, event?: string): void {
    const row = WIRE[error.code]
    this.#event = event ?? row.event
    this.#decision = row.outcome
    this.#reason = error.code
    this.#detail = error.message
  }

  /**
   * Work whose outcome belongs on this line (a running tool): a commit triggered meanwhile (the
   * client closed the stream) waits for it, so the line says how the work ended.
   */
  hold(work: Promise<unknown>): void {
    this.#held = work.catch(() => undefined)
  }

  /** False while the audit sink is known unable to store this line (the request is refused before it runs). */
  get available(): boolean {
    return this.#log.available
  }

  get committed(): boolean {
    return this.#committed
  }

  /**
   * Write the line (idempotent) and wait until the sink has stored it: a request is answered
   * only once its line is stored.
   * @throws SecurityError ERR_AUDIT_UNAVAILABLE — the caller fails the request closed.
   */
  async commit(extra?: Record<string, unknown>): Promise<void> {
    if (this.#committed) return
    if (this.#held !== undefined) {
      const held = this.#held
      this.#held = undefined
      await held
      if (this.#committed) return
    }
    this.#committed = true
    const x = this.#exchange()
    try {
      await this.#write(x, extra)
    } finally {
      x.trace?.finish({
        method: x.method,
        tool: x.tool?.definition.name ?? toolNameOf(x.message),
        requestId: x.requestId,
        rpcId: rpcIdOf(x.message),
        transport: x.transport,
        era: x.era,
        sessionId: x.sessionId,
        principal: x.principal?.id,
        decision: this.#decision,
        reason: this.#reason,
        rpcCode: this.#reason === 'OK' ? undefined : WIRE[this.#reason].rpc,
      })
    }
  }

  async #write(x: Exchange, extra: Record<string, unknown> | undefined): Promise<void> {
    const p = x.principal
    // Noted fields first: they can add to a line, never overwrite the decision or who decided.
    this.#log.record({
      ...this.#fields,
      ...extra,
      ...(this.#round > 1 ? { round: this.#round } : {}),
      event: this.#event,
      requestId: x.requestId,
      principal: p?.id,
      roles: p?.roles,
      tenant: p?.tenant,
      scopes: p?.scopes,
      method: x.method,
      tool: x.tool?.definition.name ?? toolNameOf(x.message),
      decision: this.#decision,
      reason: this.#reason,
      transport: x.transport,
      era: x.era,
      session: x.sessionId,
      remote: x.remoteAddress,
      durationMs: Math.round((performance.now() - x.startedAt) * 100) / 100,
      detail: this.#detail,
    })
    await this.#log.flush()
  }

  /**
   * A 2025-11-25 session re-enters a call on the same request after asking the client for input:
   * the finished round keeps its line, the next round gets its own.
   */
  nextRound(): void {
    if (!this.#committed) return
    this.#committed = false
    this.#round += 1
    this.#fields = Object.fromEntries(Object.entries(this.#fields).filter(([k]) => CARRIED.has(k)))
    this.allow('tool.call')
  }
}

/** The JSON-RPC id of a message, to echo on an error; `null` when there is none (or it is not one). */
export function rpcIdOf(message: unknown): string | number | null {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return null
  const id = (message as { id?: unknown }).id
  return typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) ? id : null
}

/** The JSON-RPC method of a message, when it has a string one. */
export function rpcMethodOf(message: unknown): string | undefined {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return undefined
  const method = (message as { method?: unknown }).method
  return typeof method === 'string' ? method.slice(0, 128) : undefined
}

/** The `params` object of a message, if it has one. */
export function rpcParamsOf(message: unknown): Record<string, unknown> | undefined {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) return undefined
  const params = (message as { params?: unknown }).params
  return params !== null && typeof params === 'object' && !Array.isArray(params) ? (params as Record<string, unknown>) : undefined
}

/** The tool a `tools/call` message names, if any (for the audit line of a refusal before resolution). */
export function toolNameOf(message: unknown): string | undefined {
  if (rpcMethodOf(message) !== 'tools/call') return undefined
  const name = rpcParamsOf(message)?.name
  return typeof name === 'string' ? name.slice(0, 128) : undefined
}

/**
 * A stage of the request path: check, then call `next` or throw a SecurityError. Stages that do
 * not build a reply are generic in it, so one list serves every transport.
 */
export type Stage = <R>(x: Exchange, next: () => Promise<R>) => Promise<R>
