import {
  type CallToolResult,
  Client,
  ClientCredentialsProvider,
  type GetPromptResult,
  type ReadResourceResult,
  StreamableHTTPClientTransport,
  type Transport,
} from '@modelcontextprotocol/client'
import { type PromptPin, pinnedFields, promptFields, type ResourcePin, resourceFields, type ToolDefinitionPin } from '../../gateway/definitions.js'
import { VERSION } from '../../version.js'
import { callContext, upstreamFetch } from './http-fetch.js'
import { type ProcessSpec, UpstreamProcess } from './stdio-process.js'

export type UpstreamState = 'starting' | 'up' | 'down' | 'failed'

export interface UpstreamStatus {
  readonly name: string
  readonly kind: 'stdio' | 'http'
  readonly state: UpstreamState
  /** When the state last changed (ISO 8601). */
  readonly since: string
  readonly pid?: number
  readonly restarts: number
  readonly protocolVersion?: string
  /** The circuit breaker is open until then (ISO 8601): calls fail at once. */
  readonly breakerOpenUntil?: string
  readonly lastError?: string
}

/** How to reach one upstream. */
export type UpstreamTarget =
  | {
      readonly kind: 'stdio'
      readonly process: Omit<ProcessSpec, 'onStderr'>
      /** The variables its config gave it (values from secret references). */
      readonly configured: Readonly<Record<string, string>>
      readonly maxRestarts: number
      readonly restartWindowSeconds: number
    }
  | {
      readonly kind: 'http'
      readonly url: URL
      readonly headers: Readonly<Record<string, string>>
      readonly oauth?: { readonly issuer: string; readonly clientId: string; readonly clientSecret: string; readonly scope?: string }
      readonly connectTimeoutMs: number
      readonly maxMessageBytes: number
    }

export interface ConnectionOptions {
  readonly name: string
  readonly target: UpstreamTarget
  readonly breakerFailures: number
  readonly breakerSeconds: number
  /** How often everything is listed again (0: only on `list_changed` and reconnects). */
  readonly relistMs: number
  /** What happened, for the operator log and the audit trail. */
  readonly onEvent: (event: 'up' | 'down' | 'failed' | 'restart', detail: Record<string, string | number>) => void
  readonly onStderr: (line: string) => void
  /** Something it sent was refused (not JSON-RPC, over the size cap), or its connection reported an error. */
  readonly onWarning: (message: string) => void
  /** The upstream's tool list, each time it is read (at connect and after `notifications/tools/list_changed`). */
  readonly onTools: (tools: readonly ToolDefinitionPin[], invalid: readonly string[]) => void
  /** Its resources (fixed URIs) and prompts, each time they are read (at connect and after their list_changed). */
  readonly onCatalog?: (listed: { readonly resources: readonly ResourcePin[]; readonly prompts: readonly PromptPin[] }, invalid: readonly string[]) => void
}

/** An upstream could not be reached or answered outside the protocol: its tools fail, the rest serve. */
export class UpstreamUnavailable extends Error {
  override readonly name = 'UpstreamUnavailable'
}

/** More tools (or resources, or prompts) than this in one list is refused as a failed list: no upstream needs them, and each costs memory and comparison. */
const MAX_LISTED = 10_000

const now = (): string => new Date().toISOString()
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : 'error').slice(0, 300)

/**
 * One upstream MCP server, kept connected: a stdio process supervised (restarted with backoff, at
 * most `maxRestarts` in the window, then failed), or an HTTP endpoint reconnected on demand. A
 * circuit breaker stops calls to an upstream that failed `breakerFailures` times in a row for
 * `breakerSeconds`. Speaks MCP 2025-11-25 (`initialize`) to it, whatever era bastion's own clients use.
 * Does not check: the tools' definitions against the pins (the gateway does, from `onTools`).
 */
export class UpstreamConnection {
  readonly #options: ConnectionOptions
  #client: Client | undefined
  #process: UpstreamProcess | undefined
  #state: UpstreamState = 'starting'
  #since = now()
  #lastError: string | undefined
  #connecting: Promise<void> | undefined
  #restarts: number[] = []
  #restartCount = 0
  #failures = 0
  #openUntil = 0
  #closed = false
  #timer: NodeJS.Timeout | undefined
  /** Set while a re-list runs: requests wait for it. */
  #relisting: Promise<void> | undefined
  #relistTimer: NodeJS.Timeout | undefined

  constructor(options: ConnectionOptions) {
    this.#options = options
  }

  get name(): string {
    return this.#options.name
  }

  status(): UpstreamStatus {
    const { target } = this.#options
    const pid = this.#process?.pid
    return {
      name: this.#options.name,
      kind: target.kind,
      state: this.#state,
      since: this.#since,
      ...(pid === undefined || this.#state !== 'up' ? {} : { pid }),
      restarts: this.#restartCount,
      ...(this.#client?.getNegotiatedProtocolVersion() === undefined ? {} : { protocolVersion: this.#client.getNegotiatedProtocolVersion() as string }),
      ...(this.#openUntil > Date.now() ? { breakerOpenUntil: new Date(this.#openUntil).toISOString() } : {}),
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    }
  }

  #setState(state: UpstreamState, error?: unknown): void {
    if (error !== undefined) this.#lastError = messageOf(error)
    if (state === this.#state) return
    this.#state = state
    this.#since = now()
    if (state !== 'starting') this.#options.onEvent(state, { ...(this.#lastError === undefined || state === 'up' ? {} : { error: this.#lastError }), restarts: this.#restartCount })
  }

  /** Connect now; settles when connected and listed or when that failed (never rejects). */
  start(): Promise<void> {
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined
    })
    return this.#connecting
  }

  async #connect(): Promise<void> {
    if (this.#closed || this.#state === 'failed') return
    const { target } = this.#options
    const client = new Client({ name: 'mcp-bastion', version: VERSION }, { capabilities: {} })
    let transport: Transport
    if (target.kind === 'stdio') {
      const proc = new UpstreamProcess({ ...target.process, onStderr: this.#options.onStderr })
      this.#process = proc
      transport = proc
    } else {
      const fetch = upstreamFetch({ connectTimeoutMs: target.connectTimeoutMs, maxMessageBytes: target.maxMessageBytes, headers: target.headers })
      const authProvider =
        target.oauth === undefined
          ? undefined
          : new ClientCredentialsProvider({
              clientId: target.oauth.clientId,
              clientSecret: target.oauth.clientSecret,
              // Sent only to this authorization server: an upstream cannot point bastion's credentials elsewhere.
              expectedIssuer: target.oauth.issuer,
              ...(target.oauth.scope === undefined ? {} : { scope: target.oauth.scope }),
            })
      transport = new StreamableHTTPClientTransport(target.url, { fetch, ...(authProvider === undefined ? {} : { authProvider }) })
    }
    client.onclose = () => this.#lost(client)
    client.onerror = (error) => this.#options.onWarning(messageOf(error))
    client.setNotificationHandler('notifications/tools/list_changed', () => this.#relist(client, 'notifications/tools/list_changed'))
    client.setNotificationHandler('notifications/resources/list_changed', () => this.#relist(client, 'notifications/resources/list_changed'))
    client.setNotificationHandler('notifications/prompts/list_changed', () => this.#relist(client, 'notifications/prompts/list_changed'))
    try {
      await client.connect(transport)
      this.#client = client
      await this.#list(client)
      await this.#listCatalog(client)
      this.#failures = 0
      this.#setState('up')
      this.#startRelisting()
    } catch (error) {
      this.#client = undefined
      await client.close().catch(() => {})
      this.#failed(error)
      this.#setState('down', error)
      if (target.kind === 'stdio') this.#scheduleRestart()
    }
  }

  async #list(client: Client): Promise<void> {
    const { tools } = await client.listTools()
    if (tools.length > MAX_LISTED) throw new Error(`the upstream lists ${tools.length} tools, more than ${MAX_LISTED}`)
    const valid: ToolDefinitionPin[] = []
    const invalid: string[] = []
    for (const raw of tools) {
      try {
        valid.push(pinnedFields(raw))
      } catch (error) {
        invalid.push(messageOf(error))
      }
    }
    this.#options.onTools(valid, invalid)
  }

  /**
   * List everything again (after a `list_changed`, or on the periodic re-list): requests wait
   * until the new lists were compared with the pins, so nothing is forwarded on definitions that
   * were announced changed and not yet checked. A list that fails ends the connection: the
   * upstream is connected (stdio: restarted) and listed again before anything is forwarded.
   */
  #relist(client: Client, why: string): void {
    if (this.#client !== client) return
    const listing = (async () => {
      await this.#list(client)
      await this.#listCatalog(client)
    })()
    const settled = listing.then(
      () => undefined,
      (error: unknown) => {
        this.#options.onWarning(`list after ${why} failed, reconnecting: ${messageOf(error)}`)
        void client.close().catch(() => {})
      },
    )
    const tracked: Promise<void> = settled.finally(() => {
      if (this.#relisting === tracked) this.#relisting = undefined
    })
    this.#relisting = tracked
  }

  /** Upstreams that change their definitions without saying so are listed again every `relistSeconds`. */
  #startRelisting(): void {
    if (this.#relistTimer !== undefined || this.#options.relistMs <= 0) return
    this.#relistTimer = setInterval(() => {
      const client = this.#client
      if (client !== undefined && this.#state === 'up' && this.#relisting === undefined) this.#relist(client, 'the periodic re-list')
    }, this.#options.relistMs)
    this.#relistTimer.unref()
  }

  /** Resources and prompts, of an upstream that declares them. */
  async #listCatalog(client: Client): Promise<void> {
    const onCatalog = this.#options.onCatalog
    if (onCatalog === undefined) return
    const capabilities = client.getServerCapabilities()
    const invalid: string[] = []
    const parse = <T>(items: readonly unknown[], fields: (raw: unknown) => T): T[] =>
      items.flatMap((raw) => {
        try {
          return [fields(raw)]
        } catch (error) {
          invalid.push(messageOf(error))
          return []
        }
      })
    const listed = <T>(items: readonly T[], what: string): readonly T[] => {
      if (items.length > MAX_LISTED) throw new Error(`the upstream lists ${items.length} ${what}, more than ${MAX_LISTED}`)
      return items
    }
    const resources = capabilities?.resources === undefined ? [] : parse(listed((await client.listResources()).resources, 'resources'), resourceFields)
    const prompts = capabilities?.prompts === undefined ? [] : parse(listed((await client.listPrompts()).prompts, 'prompts'), promptFields)
    onCatalog({ resources, prompts }, invalid)
  }

  /**
   * Before a request: refuse while the circuit is open or the upstream failed; an HTTP upstream
   * that is down is connected again now (a stdio one restarts on its own schedule).
   * @throws UpstreamUnavailable
   */
  async ensure(): Promise<void> {
    if (this.#openUntil > Date.now()) throw new UpstreamUnavailable(`upstream ${this.name}: circuit open after ${this.#failures} failures (${this.#lastError ?? 'error'})`)
    if (this.#state === 'failed') throw new UpstreamUnavailable(`upstream ${this.name} failed: ${this.#lastError ?? 'error'}`)
    if (this.#client === undefined && this.#options.target.kind === 'http') await this.start()
  }

  /** The connection closed: a stdio process exited, an HTTP session ended. */
  #lost(client: Client): void {
    if (this.#client !== client) return
    this.#client = undefined
    // A stdio upstream whose connection ended is stopped with its group before it is restarted.
    void this.#process?.close()
    if (this.#closed) return
    this.#setState('down', new Error(this.#options.target.kind === 'stdio' ? 'the upstream process exited' : 'the connection closed'))
    if (this.#options.target.kind === 'stdio') this.#scheduleRestart()
  }

  #scheduleRestart(): void {
    const { target } = this.#options
    if (target.kind !== 'stdio' || this.#closed || this.#timer !== undefined) return
    const windowStart = Date.now() - target.restartWindowSeconds * 1000
    this.#restarts = this.#restarts.filter((t) => t > windowStart)
    if (this.#restarts.length >= target.maxRestarts) {
      // maxRestarts 0 (a one-shot listing): the cause is the reason, not the restart budget.
      this.#setState(
        'failed',
        target.maxRestarts === 0
          ? undefined
          : new Error(`${this.#lastError ?? 'error'}; restarted ${target.maxRestarts} times within ${target.restartWindowSeconds} s: not restarted again until bastion restarts`),
      )
      return
    }
    const delay = Math.min(10_000, 200 * 2 ** this.#restarts.length)
    this.#restarts.push(Date.now())
    this.#restartCount++
    this.#options.onEvent('restart', { inMs: delay, restarts: this.#restartCount })
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.start()
    }, delay)
    this.#timer.unref()
  }

  #failed(error: unknown): void {
    this.#lastError = messageOf(error)
    if (++this.#failures >= this.#options.breakerFailures) this.#openUntil = Date.now() + this.#options.breakerSeconds * 1000
  }

  /**
   * Call one of its tools by its upstream name. The signal aborts the call (the client sends
   * `notifications/cancelled` upstream).
   * @throws UpstreamUnavailable when it is down, failed, its breaker is open or the connection broke;
   *   the SDK's ProtocolError when it answered with a JSON-RPC error.
   */
  call(
    tool: string,
    args: Record<string, unknown>,
    signal: AbortSignal,
    headers: Readonly<Record<string, string>>,
    verify?: () => void,
    meta?: Readonly<Record<string, string>>,
  ): Promise<CallToolResult> {
    // The plain request, not callTool: the result is checked against the pinned output schema by
    // the gateway, not against whatever the upstream lists now (callTool would, and may list again).
    const params = { name: tool, arguments: args, ...(meta === undefined || Object.keys(meta).length === 0 ? {} : { _meta: { ...meta } }) }
    return this.request({ method: 'tools/call', params }, signal, headers, verify) as Promise<CallToolResult>
  }

  /** Read one of its resources. @throws as {@link call} */
  readResource(uri: string, signal: AbortSignal, verify?: () => void): Promise<ReadResourceResult> {
    return this.request({ method: 'resources/read', params: { uri } }, signal, {}, verify) as Promise<ReadResourceResult>
  }

  /** Get one of its prompts. @throws as {@link call} */
  getPrompt(name: string, args: Record<string, string>, signal: AbortSignal, verify?: () => void): Promise<GetPromptResult> {
    return this.request({ method: 'prompts/get', params: { name, arguments: args } }, signal, {}, verify) as Promise<GetPromptResult>
  }

  /** One request to it, under the breaker, the message caps and the caller's signal. */
  async request(
    message: { method: 'tools/call' | 'resources/read' | 'prompts/get'; params: Record<string, unknown> },
    signal: AbortSignal,
    headers: Readonly<Record<string, string>>,
    verify?: () => void,
  ): Promise<unknown> {
    await this.ensure()
    // Definitions announced changed are compared before anything is sent on them.
    await this.#relisting
    const client = this.#client
    if (client === undefined || this.#state !== 'up')
      throw new UpstreamUnavailable(`upstream ${this.name} is ${this.#state}${this.#lastError === undefined ? '' : ` (${this.#lastError})`}`)
    // After a reconnect or a re-list: the pins as they compare now (a tool may have been blocked meanwhile).
    verify?.()
    // An answer that breaks a limit fails the call at once, and the upstream is told to stop.
    const broken = new AbortController()
    let fail: (error: Error) => void = () => {}
    const failed = new Promise<never>((_, reject) => {
      fail = (error) => {
        broken.abort(error)
        reject(error)
      }
    })
    failed.catch(() => {})
    try {
      // No timeout of the client's own: bastion's (limits.timeoutMs) aborts the signal.
      const result = await callContext.run({ headers, fail }, () =>
        Promise.race([
          client.request(message as { method: 'tools/call'; params: Record<string, unknown> }, { signal: AbortSignal.any([signal, broken.signal]), timeout: 2_147_483_647 }),
          failed,
        ]),
      )
      this.#failures = 0
      return result
    } catch (error) {
      if (broken.signal.aborted) {
        this.#failed(broken.signal.reason)
        throw new UpstreamUnavailable(`upstream ${this.name}: ${messageOf(broken.signal.reason)}`)
      }
      if (signal.aborted) throw error
      if (isProtocolAnswer(error)) {
        this.#failures = 0
        throw error
      }
      this.#failed(error)
      // An HTTP upstream that failed outside the protocol (restarted, lost its session): the next call connects afresh.
      if (this.#options.target.kind === 'http' && this.#client === client) {
        this.#client = undefined
        this.#setState('down', error)
        void client.close().catch(() => {})
      }
      throw new UpstreamUnavailable(`upstream ${this.name}: ${messageOf(error)}`)
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    if (this.#relistTimer !== undefined) clearInterval(this.#relistTimer)
    await this.#connecting?.catch(() => {})
    const client = this.#client
    this.#client = undefined
    await client?.close().catch(() => {})
    await this.#process?.close()
  }
}

/** A JSON-RPC error the upstream answered with (it is up; it refused). */
function isProtocolAnswer(error: unknown): boolean {
  return error instanceof Error && error.name === 'ProtocolError' && typeof (error as { code?: unknown }).code === 'number'
}
