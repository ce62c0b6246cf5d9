import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { AlertEngine } from './audit/alerts.js'
import type { AuditLog } from './audit/audit-log.js'
import type { KeyStore } from './auth/key-store.js'
import type { AuthSetup } from './auth/setup.js'
import { isUnspecified, servedAt } from './compose/address.js'
import { bindConfig, builtinRegistrations, type CheckedConfig, checkConfig, registerBuiltins } from './compose/bind.js'
import { buildEdge, buildServing, buildStdio, type ServeOptions, type Serving } from './compose/build.js'
import { type Announce, envPort, firstRunKey, listeningLine } from './compose/first-run.js'
import { Gateway, registerUpstreamCatalog } from './compose/gateway.js'
import { openRuntime, type Runtime, type RuntimeOptions } from './compose/runtime.js'
import { bindSocket, consoleServed, refuseUnsafeBind } from './compose/socket.js'
import { embeddedConfig, type LoadedConfig, loadConfigFile, validateConfig } from './config/load.js'
import type { BastionConfigInput } from './config/schema.js'
import type { ConcurrencyCaps } from './limits/concurrency.js'
import type { RateLimiter } from './limits/memory-limiter.js'
import type { RatePlan } from './limits/rate-plan.js'
import type { Metrics } from './pipeline/metrics.js'
import type { CompiledPolicy } from './policy/engine.js'
import type { PolicySource } from './policy/source.js'
import { Catalog, type PromptDefinition, type ResourceDefinition, type ResourceTemplateDefinition } from './tools/catalog.js'
import { type ToolDefinition, ToolRegistry } from './tools/registry.js'
import { builtinFeatures, builtinTools, detachedToolResources, servingResources } from './tools/setup.js'
import type { Edge } from './transport/http/edge.js'
import { clientErrorListener, connectListener, nodeListener } from './transport/http/node-listener.js'
import type { ServerDeps } from './transport/mcp-server.js'
import type { StdioOptions } from './transport/stdio.js'
import { websocketUpgrade } from './transport/websocket.js'

export { isLoopback } from './config/urls.js'
export { VERSION } from './version.js'

export interface CreateBastionOptions extends RuntimeOptions, ServeOptions {
  /**
   * Where `listen()` says where it serves and, on a first run (an empty key store), shows the
   * admin key it created, once: default stderr (stdout would mix with an audit trail on stdout);
   * `false` for silence, and then no key is created.
   */
  readonly announce?: Announce
  /** A YAML file path, a config object (validated like a file), or nothing for the embedded default. */
  readonly config?: string | BastionConfigInput
  /** Directory relative paths in an object config resolve against (default: cwd). */
  readonly baseDir?: string
}

/** Default: `$BASTION_HOST` / `$BASTION_PORT`, else `server.host` / `server.port`. */
export interface ListenOptions {
  readonly host?: string
  readonly port?: number
}

export interface RunningServer {
  readonly url: string
  readonly port: number
  readonly host: string
  close(): Promise<void>
}

/**
 * A bastion: one configuration, one audit trail, one key store, and every registered tool,
 * resource and prompt behind the same pipeline, over HTTP or stdio.
 *
 * Bind, build, serve: {@link createBastion} checks the config (the built-in tools' sections
 * too) and opens the runtime (state, audit, keys, limits backend, authentication, what the
 * built-in tools use). Registration ends once, at the first of `listen()`, `serverDeps()`,
 * `edge()` or `policy()`: the built-in tools join (those their sections enable; with `enabled`
 * unset, only when nothing else was registered), the config is bound to what is registered and
 * every serving part is built in one pass. `listen()` then builds the HTTP edge for the address
 * it bound, and says where it serves.
 */
export class Bastion {
  readonly loaded: LoadedConfig
  readonly log: Logger
  readonly audit: AuditLog
  readonly keys: KeyStore
  readonly alerts: AlertEngine
  /** Authentication: API keys, token issuers, introspection, the token service. */
  readonly auth: AuthSetup
  readonly limiter: RateLimiter
  readonly plan: RatePlan
  readonly caps: ConcurrencyCaps
  readonly metrics: Metrics
  readonly registry: ToolRegistry
  readonly catalog: Catalog
  /** The upstream MCP servers it fronts (config `upstreams`), or undefined without any. */
  readonly gateway: Gateway | undefined
  readonly #checked: CheckedConfig
  readonly #runtime: Runtime
  readonly #options: ServeOptions
  readonly #env: NodeJS.ProcessEnv
  readonly #announce: Announce
  /** Set once, when registration ends. */
  #serving: Serving | undefined
  #registering = true
  /** Set once: by listen() for its address, or by edge() for embedding. */
  #edge: { readonly edge: Edge; readonly url: string | undefined } | undefined
  #edgeStarted = false
  #servers: HttpServer[] = []
  #closed = false

  private constructor(checked: CheckedConfig, runtime: Runtime, registry: ToolRegistry, catalog: Catalog, gateway: Gateway | undefined, options: CreateBastionOptions) {
    this.#checked = checked
    this.#runtime = runtime
    this.#options = options
    this.#env = options.env ?? process.env
    this.#announce = options.announce ?? process.stderr
    this.loaded = checked.loaded
    this.plan = checked.plan
    this.log = runtime.log
    this.audit = runtime.audit
    this.keys = runtime.keys
    this.alerts = runtime.alerts
    this.auth = runtime.auth
    this.limiter = runtime.limiter
    this.caps = runtime.caps
    this.metrics = runtime.metrics
    this.registry = registry
    this.catalog = catalog
    this.gateway = gateway
  }

  /** @throws ConfigError for any invalid configuration or missing secret. */
  static async create(options: CreateBastionOptions = {}): Promise<Bastion> {
    const baseDir = options.baseDir ?? process.cwd()
    const loaded =
      typeof options.config === 'string'
        ? loadConfigFile(options.config)
        : options.config === undefined
          ? embeddedConfig({}, baseDir)
          : validateConfig(options.config, 'object', baseDir)
    const checked = checkConfig(loaded)
    // The built-in tools join when registration ends; their sections are checked now, offline.
    builtinRegistrations(loaded, builtinTools(loaded, detachedToolResources(loaded)))
    const runtime = await openRuntime(checked, options)
    let gateway: Gateway | undefined
    try {
      gateway = await Gateway.open({ loaded, env: options.env ?? process.env, log: runtime.log, audit: runtime.audit, confirmations: runtime.tools.confirmations })
    } catch (error) {
      await runtime.close()
      throw error
    }
    return new Bastion(checked, runtime, new ToolRegistry(), new Catalog(), gateway, options)
  }

  /** Register a tool. Its zod schema is converted and compiled once, here. */
  tool<S extends z.ZodType>(definition: ToolDefinition<S>): this {
    this.#assertRegistering()
    this.registry.register(definition)
    return this
  }

  resource(definition: ResourceDefinition): this {
    this.#assertRegistering()
    this.catalog.addResource(definition)
    return this
  }

  resourceTemplate(definition: ResourceTemplateDefinition): this {
    this.#assertRegistering()
    this.catalog.addTemplate(definition)
    return this
  }

  prompt(definition: PromptDefinition): this {
    this.#assertRegistering()
    this.catalog.addPrompt(definition)
    return this
  }

  #assertRegistering(): void {
    if (!this.#registering) throw new Error('register tools, resources and prompts before listen() or serveStdio()')
  }

  /**
   * End registration, once: bind the config to what is registered, then build every serving part.
   * A later call returns what was built. @throws ConfigError
   */
  #served(): Serving {
    if (this.#closed) throw new Error('bastion is closed')
    if (this.#serving !== undefined) return this.#serving
    this.#registering = false
    const { registry, catalog, loaded } = this
    // The built-in tools join here, once it is known whether the library registered its own.
    const own = registry.all().length > 0 || catalog.resources.length + catalog.templates.length + catalog.prompts.length > 0
    // Upstream tools join like built-in ones: a name already registered is refused, never shadowed.
    registerBuiltins(loaded, this.gateway?.tools() ?? [], registry, 'upstream')
    registerUpstreamCatalog(loaded, this.gateway, catalog)
    registerBuiltins(loaded, builtinTools(loaded, servingResources(loaded, this.#runtime.tools, builtinFeatures(loaded, own))), registry)
    const gateway = this.gateway
    const upstreams = gateway === undefined ? undefined : () => gateway.report()
    this.#serving = buildServing(this.#runtime, bindConfig(this.#checked, { registry, catalog }), this.#options, upstreams)
    return this.#serving
  }

  /** The policy in force now. Ends registration. @throws ConfigError when the policy does not load */
  policy(): CompiledPolicy {
    return this.#served().policy()
  }

  /** The policy source (hot reload from `policy.file`). Ends registration. */
  policySource(): PolicySource {
    return this.#served().policySource
  }

  /** Shared server dependencies, for the stdio transport. Ends registration. */
  serverDeps(): ServerDeps {
    return this.#served().serverDeps
  }

  /** What `serveStdio` builds the stdio transport from. Ends registration. */
  stdioOptions(): Omit<StdioOptions, 'env' | 'stdin' | 'stdout'> {
    return buildStdio(this.#runtime, this.#served())
  }

  /**
   * The HTTP edge: the one `listen()` built, or (to embed it in another server, before any
   * listen) one built now for the configured host and `auth.resource`. Ends registration.
   */
  edge(): Edge {
    if (this.#edge !== undefined) return this.#edge.edge
    if (this.#edgeStarted) throw new Error('listen() is building the HTTP edge')
    const serving = this.#served()
    const { server } = this.loaded.config
    this.#edgeStarted = true
    const at = servedAt({ requested: server.host, address: server.host, port: server.port, secure: server.tls !== undefined, path: server.path, allowedHosts: server.allowedHosts })
    this.#edge = {
      edge: buildEdge(this.#runtime, serving, {
        allowedHosts: at.allowedHosts,
        resource: this.#runtime.resource.fix(undefined),
        console: consoleServed(this.loaded, server.host, this.log),
      }),
      url: undefined,
    }
    return this.#edge.edge
  }

  /**
   * Serve Streamable HTTP (HTTPS when `server.tls` is set, TLS 1.2 minimum) on `host`/`port`
   * (default `server.host`/`server.port`). The printed URL, the Host allowlist and (without
   * `auth.resource`) the resource URI come from the address bound. A bastion listens once.
   * A non-loopback address without TLS is refused unless `server.dangerouslyAllowPlaintext` is true.
   * @throws ConfigError on an unsafe bind or unreadable TLS material; Error when already serving.
   */
  async listen(options: ListenOptions = {}): Promise<RunningServer> {
    const { config, source } = this.loaded
    const env = this.#env
    const host = options.host ?? (env.BASTION_HOST === undefined || env.BASTION_HOST === '' ? config.server.host : env.BASTION_HOST)
    const port = options.port ?? envPort(env.BASTION_PORT) ?? config.server.port
    const tls = config.server.tls
    if (this.#edgeStarted) {
      const url = this.#edge?.url
      throw new Error(url === undefined ? 'the HTTP edge was built for embedding (edge()); a bastion serves one edge' : `already listening on ${url}`)
    }
    refuseUnsafeBind(this.loaded, host, this.log)
    const serving = this.#served()
    this.#edgeStarted = true
    let server: HttpServer
    try {
      server = await bindSocket(this.loaded, host, port)
    } catch (error) {
      // Nothing was fixed yet: listen() may be tried again.
      this.#edgeStarted = false
      throw error
    }
    if (this.#closed) {
      server.close()
      throw new Error('bastion was closed while listen() was binding')
    }
    this.#servers.push(server)
    const address = server.address() as AddressInfo
    const at = servedAt({
      requested: host,
      address: address.address,
      port: address.port,
      secure: tls !== undefined,
      path: config.server.path,
      allowedHosts: config.server.allowedHosts,
    })
    const resource = this.#runtime.resource.fix(at.url)
    if (isUnspecified(address.address) && config.auth.resource === undefined && this.auth.resourceServer !== undefined) {
      this.log.warn({ resource }, 'auth.resource is not set and every interface is bound: tokens must name the loopback URL; set auth.resource to the public URL')
    }
    // Built before the first request can arrive: the handler is attached in this same tick.
    const withConsole = consoleServed(this.loaded, address.address, this.log)
    const edge = buildEdge(this.#runtime, serving, { allowedHosts: at.allowedHosts, resource, console: withConsole })
    this.#edge = { edge, url: at.url }
    server.on(
      'request',
      nodeListener(edge, {
        maxBodyBytes: config.server.maxBodyBytes,
        maxBodyBytesInFlight: config.server.maxBodyBytesInFlight,
        secure: tls !== undefined,
        onError: (e) => this.log.error({ err: { name: e.name, message: e.message } }, 'listener error'),
      }),
    )
    server.on('clientError', clientErrorListener(edge, { secure: tls !== undefined }))
    server.on('connect', connectListener(edge, { secure: tls !== undefined }))
    const websocket = config.server.websocket
    const sockets = websocket.enabled
      ? websocketUpgrade({
          path: websocket.path,
          authTimeoutMs: websocket.authTimeoutMs,
          idleTimeoutMs: websocket.idleTimeoutMs,
          maxConnections: websocket.maxConnections,
          messagesPerSecond: websocket.messagesPerSecond,
          burst: websocket.burst,
          maxInFlight: websocket.maxInFlight,
          maxMessageBytes: config.server.maxBodyBytes,
          origins: { allowedHosts: at.allowedHosts, allowedOrigins: config.server.allowedOrigins },
          secure: tls !== undefined,
          audit: this.audit,
          edge,
          serving: buildStdio(this.#runtime, serving),
        })
      : undefined
    if (sockets !== undefined) {
      server.on('upgrade', sockets.upgrade)
      server.once('close', () => sockets.close())
    }
    this.audit.record({ event: 'config.loaded', decision: 'allow', reason: 'OK', source, transport: 'http', url: at.url, tools: this.registry.all().length })
    // The console's reader indexes the trail in the background now (about 30 s per GB), not when someone first opens it.
    if (withConsole)
      this.#runtime.trail
        ?.stats(new Date())
        .catch((e: unknown) => this.log.warn({ err: { message: e instanceof Error ? e.message : 'error' } }, 'console: the audit trail could not be indexed'))
    firstRunKey({ loaded: this.loaded, keys: this.keys, audit: this.audit, say: this.#announce })
    if (this.#announce !== false) this.#announce.write(listeningLine(this.loaded, at.url, withConsole))
    return {
      url: at.url,
      port: address.port,
      host: address.address,
      close: async () => {
        await new Promise<void>((r) => {
          server.close(() => r())
          server.closeAllConnections()
        })
        this.#servers = this.#servers.filter((s) => s !== server)
      },
    }
  }

  /** Stop serving, close sessions, backends and the audit sink. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#registering = false
    for (const s of this.#servers) {
      s.closeAllConnections()
      s.close()
    }
    this.#servers = []
    await this.#edge?.edge.close()
    this.#serving?.policySource.close()
    await this.gateway?.close()
    await this.#runtime.close()
  }
}

/** Create a bastion: load and validate config and open its runtime; the built-in tools join when registration ends. */
export function createBastion(options: CreateBastionOptions = {}): Promise<Bastion> {
  return Bastion.create(options)
}
