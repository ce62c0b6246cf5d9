import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { isIP } from 'node:net'
import type { ServerCapabilities, ServerOptions } from '@modelcontextprotocol/server'
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/server/validators/ajv'
import type { Logger } from 'pino'
import { z } from 'zod'
import { AlertEngine, type Webhook } from './audit/alerts.js'
import { auditKey } from './audit/audit-key.js'
import { AuditLog, type AuditSink, FileAuditSink } from './audit/audit-log.js'
import { operatorLog } from './audit/operator-log.js'
import { PostgresAuditSink, StdoutAuditSink } from './audit/sinks.js'
import { hashApiKey, parseApiKey } from './auth/api-key.js'
import { KeyStore, type StoredKey } from './auth/key-store.js'
import type { ScopeRules } from './auth/resource-metadata.js'
import { type AuthSetup, setupAuth } from './auth/setup.js'
import { fileStamp } from './config/json-file.js'
import { ConfigError, embeddedConfig, type LoadedConfig, loadConfigFile, readSecret, resolvePath, statePath, validateConfig } from './config/load.js'
import type { BastionConfigInput } from './config/schema.js'
import { ensureState } from './config/state.js'
import { isLoopback, secureUrl } from './config/urls.js'
import { ConcurrencyCaps } from './limits/concurrency.js'
import { executeTool } from './limits/execute.js'
import { MemoryRateLimiter, type RateLimiter } from './limits/memory-limiter.js'
import type { RateLimitDeps } from './limits/rate-guard.js'
import { RatePlan } from './limits/rate-plan.js'
import { RedisRateLimiter } from './limits/redis-limiter.js'
import { Metrics } from './pipeline/metrics.js'
import { type CompiledPolicy, PolicyError, type PolicyTargets } from './policy/engine.js'
import { type RbacPolicy, targetKey } from './policy/rbac.js'
import { PolicySource } from './policy/source.js'
import type { Keyring } from './protect/keyring.js'
import { DEFAULT_SECRET_KEYS, redactor } from './protect/redact.js'
import { keyringFor } from './protect/setup.js'
import { Vault } from './protect/vault.js'
import { Catalog, type PromptDefinition, type ResourceDefinition, type ResourceTemplateDefinition } from './tools/catalog.js'
import { Workspace } from './tools/confine.js'
import { confirmationStateVerifier } from './tools/confirm.js'
import { listFilesTool, readFileTool } from './tools/files.js'
import { type ToolDefinition, ToolRegistry } from './tools/registry.js'
import { type DataTools, registerDataTools } from './tools/setup.js'
import { getSecretTool, storeSecretTool } from './tools/vault.js'
import { createEdge, type Edge } from './transport/http/edge.js'
import { nodeListener } from './transport/http/node-listener.js'
import type { ServerDeps } from './transport/mcp-server.js'
import { callPath } from './transport/stages.js'
import type { StdioOptions } from './transport/stdio.js'
import { toolErrorResult } from './transport/wire.js'

export interface CreateBastionOptions {
  /** A YAML file path, a config object (validated like a file), or nothing for the embedded default. */
  readonly config?: string | BastionConfigInput
  /** Directory relative paths in an object config resolve against (default: cwd). */
  readonly baseDir?: string
  /** Audit sink instead of the configured file. */
  readonly auditSink?: AuditSink
  /** Operator log (pino). Default: JSON to stderr. */
  readonly logger?: Logger
  /** Server name and version reported to clients. */
  readonly info?: { readonly name: string; readonly version: string }
  /** Extra capabilities for tools that use protocol features (logging, completions, …). */
  readonly capabilities?: ServerCapabilities
  /** Multi-round-trip request-state integrity hook, passed to the SDK. */
  readonly requestState?: ServerOptions['requestState']
  /** Environment to read secret references from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv
  /** A rate-limit backend instead of the configured one (`limits.backend`); bastion closes it. */
  readonly rateLimiter?: RateLimiter
}

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

export const VERSION = '0.1.0'

export { isLoopback } from './config/urls.js'

/**
 * A bastion: one configuration, one audit trail, one key store, and every registered tool,
 * resource and prompt behind the same pipeline, over HTTP or stdio.
 */
export class Bastion {
  readonly loaded: LoadedConfig
  readonly audit: AuditLog
  readonly keys: KeyStore
  readonly registry = new ToolRegistry()
  readonly catalog = new Catalog()
  readonly log: Logger
  readonly metrics = new Metrics()
  readonly limiter: RateLimiter
  readonly plan: RatePlan
  readonly caps: ConcurrencyCaps
  readonly alerts: AlertEngine
  #grants: RbacPolicy | undefined
  #policy: PolicySource | undefined
  #auth: AuthSetup | undefined
  #closed = false
  #env: NodeJS.ProcessEnv = process.env
  #keyring: { keyring: Keyring; stamp: string } | undefined
  /** This server's resource URI (RFC 8707): from config, else the URL it first listened on. */
  #resourceUri: string | undefined
  #workspace: Workspace | undefined
  #data: DataTools | undefined
  #edge: Edge | undefined
  #servers: HttpServer[] = []
  readonly #options: CreateBastionOptions

  private constructor(loaded: LoadedConfig, options: CreateBastionOptions, configKeys: StoredKey[], limiter: RateLimiter, log: Logger, sink: AuditSink | undefined) {
    this.loaded = loaded
    this.#options = options
    this.log = log
    const { config } = loaded
    this.limiter = limiter
    this.plan = new RatePlan(config.limits, (where, why) => {
      throw new ConfigError(`config ${loaded.source}: ${where}: ${why}`)
    })
    this.caps = new ConcurrencyCaps(config.limits.concurrency)
    ensureState(statePath(loaded, '.'), config.workspace.enabled ? statePath(loaded, config.workspace.root) : undefined)
    this.audit = new AuditLog(
      options.auditSink ?? sink ?? new FileAuditSink(statePath(loaded, config.audit.file), { maxBytes: config.audit.maxBytes }),
      undefined,
      auditKey(loaded, options.env),
      redactor([...DEFAULT_SECRET_KEYS, ...config.audit.redactKeys]),
    )
    this.audit.checkpointEvery(config.audit.checkpointEvery)
    this.keys = new KeyStore(statePath(loaded, config.auth.keysFile), configKeys, config.auth.reloadIntervalMs)
    const hook = config.alerts.webhook
    let webhook: Webhook | undefined
    if (hook !== undefined) {
      const url = secureUrl(loaded, 'alerts.webhook.url', hook.url)
      webhook = { url, timeoutMs: hook.timeoutMs, secret: hook.secret === undefined ? undefined : readSecret(loaded, hook.secret, 'alerts.webhook.secret', options.env) }
    }
    this.alerts = new AlertEngine(config.alerts.rules, webhook, log)
    this.alerts.attach((fields) => this.audit.record(fields))
    this.audit.observe((fields) => this.alerts.observe(fields))
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
    const env = options.env ?? process.env
    const configKeys = loaded.config.auth.keys.map((k, i): StoredKey => {
      const where = `auth.keys.${i}.key`
      const key = readSecret(loaded, k.key, where, env)
      const parsed = parseApiKey(key)
      if (parsed === undefined) throw new ConfigError(`config ${loaded.source}: ${where}: the value is not a bastion API key (bst_<id>_<secret>)`)
      for (const role of k.roles) {
        if (!Object.hasOwn(loaded.config.roles, role))
          throw new ConfigError(`config ${loaded.source}: auth.keys.${i}.roles: role ${JSON.stringify(role)} is not defined under roles`)
      }
      return {
        id: parsed.id,
        name: k.name,
        roles: k.roles,
        ...(k.tenant === undefined ? {} : { tenant: k.tenant }),
        hash: hashApiKey(key),
        createdAt: new Date(0).toISOString(),
        expiresAt: k.expires === undefined ? null : new Date(k.expires).toISOString(),
        revokedAt: null,
        source: 'config',
      }
    })
    const { limits } = loaded.config
    for (const role of Object.keys(limits.roles)) {
      if (!Object.hasOwn(loaded.config.roles, role)) throw new ConfigError(`config ${loaded.source}: limits.roles.${role}: role ${JSON.stringify(role)} is not defined under roles`)
    }
    const log = options.logger ?? operatorLog(loaded.config.audit.redactKeys)
    let limiter: RateLimiter
    if (options.rateLimiter !== undefined) limiter = options.rateLimiter
    else if (limits.backend === 'redis' && limits.redis !== undefined) {
      const url = readSecret(loaded, limits.redis.url, 'limits.redis.url', env)
      if (!/^rediss?:\/\//.test(url)) throw new ConfigError(`config ${loaded.source}: limits.redis.url: not a redis:// or rediss:// URL`)
      const redis = new RedisRateLimiter({
        url,
        keyPrefix: limits.redis.keyPrefix,
        timeoutMs: limits.redis.timeoutMs,
        onError: (e) => log.warn({ err: { message: e.message } }, 'rate limiter backend'),
      })
      // Commands are not queued while disconnected: wait for the first connection, so that the first
      // requests are not refused for a race. Unreachable at start: serve, and fail closed until it is.
      await redis.ready(Math.max(2000, limits.redis.timeoutMs)).catch(() => log.warn('rate limiter: Redis is not reachable; requests fail closed until it is'))
      limiter = redis
    } else limiter = new MemoryRateLimiter()
    if (limits.dangerouslyFailOpen) log.warn('limits.dangerouslyFailOpen: requests are admitted without rate limits while the rate-limit backend is down')
    let bastion: Bastion
    try {
      bastion = new Bastion(loaded, options, configKeys, limiter, log, await auditSinkFor(loaded, options, env, log))
      bastion.#resourceUri = loaded.config.auth.resource
      bastion.#env = env
      bastion.#auth = await setupAuth({ loaded, env, keys: bastion.keys, audit: bastion.audit, log, resource: () => bastion.#resourceUri, keyring: () => bastion.keyring() })
    } catch (error) {
      await limiter.close()
      throw error
    }
    const { workspace, vault } = loaded.config
    if (vault.enabled) {
      const store = new Vault(statePath(loaded, vault.file), () => bastion.keyring())
      bastion.tool(storeSecretTool(store))
      bastion.tool(getSecretTool(store))
    }
    if (workspace.enabled) {
      bastion.#workspace = await Workspace.open(statePath(loaded, workspace.root))
      const fileOptions = { workspace: bastion.#workspace, maxFileBytes: workspace.maxFileBytes }
      bastion.tool(readFileTool(fileOptions))
      bastion.tool(listFilesTool(fileOptions))
    }
    try {
      bastion.#data = registerDataTools({ loaded, env, log, keyring: () => bastion.keyring(), workspace: bastion.#workspace, register: (t) => bastion.tool(t) })
    } catch (error) {
      await bastion.close()
      throw error
    }
    return bastion
  }

  /** Register a tool. Its zod schema is converted and compiled once, here. */
  tool<S extends z.ZodType>(definition: ToolDefinition<S>): this {
    this.#assertOpen()
    this.registry.register(definition)
    return this
  }

  resource(definition: ResourceDefinition): this {
    this.#assertOpen()
    this.catalog.addResource(definition)
    return this
  }

  resourceTemplate(definition: ResourceTemplateDefinition): this {
    this.#assertOpen()
    this.catalog.addTemplate(definition)
    return this
  }

  prompt(definition: PromptDefinition): this {
    this.#assertOpen()
    this.catalog.addPrompt(definition)
    return this
  }

  #assertOpen(): void {
    if (this.#grants !== undefined) throw new Error('register tools, resources and prompts before listen() or serveStdio()')
  }

  /** Role permissions: config roles; target permissions from registrations, overridden by config. */
  grants(): RbacPolicy {
    if (this.#grants !== undefined) return this.#grants
    const { config, source } = this.loaded
    const roles = new Map<string, ReadonlySet<string>>()
    for (const [name, role] of Object.entries(config.roles)) roles.set(name, new Set(role.permissions))
    const targets = new Map<string, readonly string[]>()
    for (const t of this.registry.all()) if (t.definition.permissions !== undefined) targets.set(targetKey('tool', t.definition.name), t.definition.permissions)
    for (const r of [...this.catalog.resources, ...this.catalog.templates]) if (r.permissions !== undefined) targets.set(targetKey('resource', r.name), r.permissions)
    for (const p of this.catalog.prompts) if (p.permissions !== undefined) targets.set(targetKey('prompt', p.name), p.permissions)
    const known = {
      tool: new Set(this.registry.all().map((t) => t.definition.name)),
      resource: new Set([...this.catalog.resources, ...this.catalog.templates].map((r) => r.name)),
      prompt: new Set(this.catalog.prompts.map((p) => p.name)),
    }
    for (const [section, kind] of [
      ['tools', 'tool'],
      ['resources', 'resource'],
      ['prompts', 'prompt'],
    ] as const) {
      for (const [name, rule] of Object.entries(config[section])) {
        if (!known[kind].has(name)) throw new ConfigError(`config ${source}: ${section}.${name}: no ${kind} named ${JSON.stringify(name)} is registered`)
        if (rule.permissions !== undefined) targets.set(targetKey(kind, name), rule.permissions)
      }
    }
    for (const name of Object.keys(config.pii.tools)) {
      if (this.registry.get(name) === undefined) throw new ConfigError(`config ${source}: pii.tools.${name}: no tool named ${JSON.stringify(name)} is registered`)
    }
    for (const [name, settings] of Object.entries(config.limits.tools)) {
      const tool = this.registry.get(name)
      if (tool === undefined) throw new ConfigError(`config ${source}: limits.tools.${name}: no tool named ${JSON.stringify(name)} is registered`)
      if ((settings.memoryMb !== undefined || settings.cpuMs !== undefined) && tool.definition.isolate === undefined)
        throw new ConfigError(`config ${source}: limits.tools.${name}: memoryMb and cpuMs apply only to isolated tools`)
    }
    this.#grants = { roles, targets }
    return this.#grants
  }

  /** What policies are compiled against: every registered tool, resource and prompt with its input schema. */
  policyTargets(): PolicyTargets {
    return {
      tools: new Map(this.registry.all().map((t) => [t.definition.name, t.descriptor.inputSchema as Record<string, unknown>])),
      prompts: new Map(this.catalog.prompts.map((p) => [p.name, p.args === undefined ? undefined : (z.toJSONSchema(p.args, { io: 'output' }) as Record<string, unknown>)])),
      resources: new Map(this.catalog.resources.map((r) => [r.name, r.uri])),
      templates: new Map(this.catalog.templates.map((t) => [t.name, t.uriTemplate])),
    }
  }

  /** The policy source: role rules plus policy rules, hot-reloaded from \`policy.file\`. @throws ConfigError */
  policySource(): PolicySource {
    if (this.#policy !== undefined) return this.#policy
    const grants = this.grants()
    const { config, source } = this.loaded
    try {
      this.#policy = new PolicySource({
        grants,
        inline: config.policy.rules,
        file: config.policy.file === undefined ? undefined : resolvePath(this.loaded, config.policy.file),
        targets: this.policyTargets(),
        reloadIntervalMs: config.policy.reloadIntervalMs,
        audit: this.audit,
        log: this.log,
      })
    } catch (error) {
      if (error instanceof PolicyError) throw new ConfigError(`config ${source}: policy: ${error.message}`)
      throw error
    }
    return this.#policy
  }

  /** The policy in force now. @throws ConfigError when the initial policy does not load. */
  policy(): CompiledPolicy {
    return this.policySource().current()
  }

  #serverDeps(): ServerDeps {
    const userState = this.#options.requestState
    const verify = userState?.verify
    // Confirmation states are bastion's own (sealed under the keyring, checked by the tool); the
    // library user's hook verifies every other state.
    const requestState = verify === undefined ? userState : { ...userState, verify: confirmationStateVerifier(() => this.keyring(), verify) }
    const policy = (): CompiledPolicy => this.policy()
    return {
      info: this.#options.info ?? { name: 'mcp-bastion', version: VERSION },
      registry: this.registry,
      catalog: this.catalog,
      policy,
      scopes: this.scopeRules(),
      run: callPath(
        policy,
        executeTool({
          plan: this.plan,
          caps: this.caps,
          metrics: this.metrics,
          toolError: toolErrorResult,
          piiMode: (tool, fromPolicy) => {
            // Most specific first: the rule that allowed this caller, then the tool, then the default.
            if (fromPolicy === 'mask' || fromPolicy === 'block' || fromPolicy === 'allow') return fromPolicy
            const { pii } = this.loaded.config
            if (Object.hasOwn(pii.tools, tool)) return pii.tools[tool] ?? pii.mode
            return this.registry.get(tool)?.definition.pii ?? pii.mode
          },
        }),
      ),
      validator: new AjvJsonSchemaValidator(),
      ...(this.#options.capabilities === undefined ? {} : { capabilities: this.#options.capabilities }),
      ...(requestState === undefined ? {} : { requestState }),
    }
  }

  /**
   * The keyring for encryption at rest: configured keys, or the state directory's keyring file,
   * read again when `mcp-bastion secrets rotate` changes it. @throws ConfigError
   */
  keyring(): Keyring {
    const { secrets } = this.loaded.config
    const stamp = secrets.keys === undefined ? fileStamp(statePath(this.loaded, secrets.keyringFile)) : 'configured'
    if (this.#keyring === undefined || this.#keyring.stamp !== stamp) this.#keyring = { keyring: keyringFor(this.loaded, this.#env), stamp }
    return this.#keyring.keyring
  }

  /** Authentication: API keys, token issuers, introspection, the token service. */
  get auth(): AuthSetup {
    if (this.#auth === undefined) throw new Error('bastion is not initialised')
    return this.#auth
  }

  /** Scopes token principals need per target: config `tools|resources|prompts.<name>.scopes`, else the tool's own. */
  scopeRules(): ScopeRules {
    const { config } = this.loaded
    const sections = { tool: config.tools, resource: config.resources, prompt: config.prompts }
    const implies = new Map(Object.entries(config.auth.scopes.implies))
    return {
      implies,
      required: (kind, name) => {
        const section = sections[kind]
        const configured = Object.hasOwn(section, name) ? section[name]?.scopes : undefined
        if (configured !== undefined) return configured
        return kind === 'tool' ? (this.registry.get(name)?.definition.scopes ?? []) : []
      },
    }
  }

  /** What the rate-limit stages need: backend, plan, metrics and the fail-open choice. */
  rateLimits(): RateLimitDeps {
    return { limiter: this.limiter, plan: this.plan, metrics: this.metrics, dangerouslyFailOpen: this.loaded.config.limits.dangerouslyFailOpen }
  }

  /** The web-standard HTTP edge (for embedding in another server or for tests). */
  edge(): Edge {
    if (this.#edge !== undefined) return this.#edge
    this.policy()
    const { server } = this.loaded.config
    const hosts = new Set(server.allowedHosts.map((h) => h.toLowerCase()))
    if (isLoopback(server.host)) for (const h of ['localhost', '127.0.0.1', '[::1]']) hosts.add(h)
    else if (server.host !== '0.0.0.0' && server.host !== '::') hosts.add(isIP(server.host) === 6 ? `[${server.host}]` : server.host.toLowerCase())
    this.#edge = createEdge({
      serverDeps: this.#serverDeps(),
      audit: this.audit,
      authenticator: this.auth.authenticator,
      bruteForce: this.auth.bruteForce,
      resourceServer: this.auth.resourceServer,
      tokenService: this.auth.tokenService,
      scopes: this.scopeRules(),
      registry: this.registry,
      policy: () => this.policy(),
      grants: this.grants(),
      origins: { allowedHosts: [...hosts], allowedOrigins: server.allowedOrigins },
      body: { maxBytes: server.maxBodyBytes, maxDepth: server.maxJsonDepth },
      sessions: { maxTotal: server.sessions.maxTotal, maxPerPrincipal: server.sessions.maxPerPrincipal, idleTimeoutMs: server.sessions.idleTimeoutSeconds * 1000 },
      path: server.path,
      limits: this.rateLimits(),
      metrics: this.metrics,
      onError: (error) => this.log.warn({ err: { name: error.name, message: error.message } }, 'mcp sdk error'),
    })
    return this.#edge
  }

  /**
   * Serve Streamable HTTP (HTTPS when `server.tls` is set, TLS 1.2 minimum). A non-loopback
   * address without TLS is refused unless `server.dangerouslyAllowPlaintext` is true.
   * @throws ConfigError on an unsafe bind or unreadable TLS material.
   */
  async listen(options: ListenOptions = {}): Promise<RunningServer> {
    const { config, source } = this.loaded
    const host = options.host ?? config.server.host
    const port = options.port ?? config.server.port
    const tls = config.server.tls
    if (!isLoopback(host) && tls === undefined) {
      if (!config.server.dangerouslyAllowPlaintext) {
        throw new ConfigError(
          `config ${source}: server.host ${host} is not loopback and server.tls is not set; refusing to serve credentials in plaintext (set server.tls, or server.dangerouslyAllowPlaintext: true behind a TLS-terminating proxy)`,
        )
      }
      this.log.warn({ host }, 'dangerouslyAllowPlaintext: serving a non-loopback address without TLS; API keys cross the network in the clear')
    }
    if (!isLoopback(host) && config.server.allowedHosts.length === 0) {
      this.log.warn({ host }, 'server.allowedHosts is empty: only the bind address is accepted in the Host header')
    }
    const edge = this.edge()
    const listener = nodeListener(edge, {
      maxBodyBytes: config.server.maxBodyBytes,
      secure: tls !== undefined,
      onError: (e) => this.log.error({ err: { name: e.name, message: e.message } }, 'listener error'),
    })
    const server =
      tls === undefined
        ? createHttpServer(listener)
        : createHttpsServer(
            { cert: readSecret(this.loaded, tls.cert, 'server.tls.cert'), key: readSecret(this.loaded, tls.key, 'server.tls.key'), minVersion: 'TLSv1.2' },
            listener,
          )
    server.headersTimeout = 30_000
    server.requestTimeout = 120_000
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolveListen()
      })
    })
    this.#servers.push(server)
    const address = server.address() as AddressInfo
    const shownHost = isIP(address.address) === 6 ? `[${address.address}]` : address.address
    const url = `${tls === undefined ? 'http' : 'https'}://${shownHost}:${address.port}${config.server.path}`
    // Without auth.resource, the first URL served is the resource tokens must be issued for.
    this.#resourceUri ??= url
    this.audit.record({ event: 'config.loaded', decision: 'allow', reason: 'OK', source, transport: 'http', url, tools: this.registry.all().length })
    return {
      url,
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
    for (const s of this.#servers) {
      s.closeAllConnections()
      s.close()
    }
    this.#servers = []
    await this.#edge?.close()
    await this.limiter.close()
    await this.#auth?.close()
    await this.#data?.close()
    this.#policy?.close()
    this.audit.close()
    await this.audit.closed()
  }

  /** Shared server dependencies, for the stdio transport. */
  serverDeps(): ServerDeps {
    this.policy()
    return this.#serverDeps()
  }

  /** What the stdio transport is built from. */
  stdioOptions(): Omit<StdioOptions, 'env' | 'stdin' | 'stdout'> {
    const { server } = this.loaded.config
    return {
      serverDeps: this.serverDeps(),
      audit: this.audit,
      authenticator: this.auth.authenticator,
      bruteForce: this.auth.bruteForce,
      stages: {
        origins: { allowedHosts: [], allowedOrigins: [] },
        body: { maxBytes: server.maxBodyBytes, maxDepth: server.maxJsonDepth },
        limits: this.rateLimits(),
        registry: this.registry,
        policy: () => this.policy(),
        scopes: this.scopeRules(),
      },
      log: this.log,
    }
  }
}

/** The configured audit sink, unless the library user gave one; undefined means the file. @throws ConfigError */
async function auditSinkFor(loaded: LoadedConfig, options: CreateBastionOptions, env: NodeJS.ProcessEnv, log: Logger): Promise<AuditSink | undefined> {
  const { audit } = loaded.config
  if (options.auditSink !== undefined || audit.sink === 'file') return undefined
  if (audit.sink === 'stdout') return new StdoutAuditSink(audit.stdoutBufferBytes)
  if (audit.postgres === undefined) throw new ConfigError(`config ${loaded.source}: audit.postgres: required for sink postgres`)
  const url = readSecret(loaded, audit.postgres.url, 'audit.postgres.url', env)
  try {
    return await PostgresAuditSink.open(url, audit.postgres.table, (e) => log.error({ err: { message: e.message } }, 'audit database'))
  } catch (error) {
    // Fail closed at start: no audit trail, no service.
    throw new ConfigError(
      `config ${loaded.source}: audit.postgres: cannot open the audit table (${error instanceof Error ? error.message.replace(/postgres(ql)?:\/\/[^\s]*/gi, '[url]') : 'error'})`,
    )
  }
}

/** Create a bastion: load and validate config, prepare state, register the built-in tools. */
export function createBastion(options: CreateBastionOptions = {}): Promise<Bastion> {
  return Bastion.create(options)
}
