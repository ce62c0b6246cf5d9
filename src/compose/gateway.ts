import type { Logger } from 'pino'
import type { AuditLog } from '../audit/audit-log.js'
import { type LoadedConfig, readSecret } from '../config/load.js'
import { isStdioUpstream, prefixOf } from '../config/upstream-schema.js'
import { readPins } from '../gateway/lock-file.js'
import { redactText } from '../protect/redact.js'
import type { Catalog, PromptDefinition, ResourceDefinition } from '../tools/catalog.js'
import type { Confirmations } from '../tools/confirm.js'
import type { ToolDefinition } from '../tools/registry.js'
import { UpstreamConnection, type UpstreamStatus } from '../transport/upstream/connection.js'
import { upstreamPrompts, upstreamResources, upstreamTool } from './upstream-catalog.js'
import { failConfig, lockPath, type PinMode, pinMode, secretValues, upstreamTarget, withoutSecrets } from './upstream-setup.js'
import { type Drift, detachedConnection, servePins, Upstream } from './upstream-state.js'

export { listUpstream, lockPath, type PinMode, pinMode, type UpstreamListing } from './upstream-setup.js'

export interface UpstreamReport extends UpstreamStatus {
  readonly pin: PinMode
  /** Catalog names of the tools served from it. */
  readonly tools: readonly string[]
  /** Catalog name → why it is blocked. */
  readonly blocked: Readonly<Record<string, Drift>>
  /** Upstream names of tools it lists that are not pinned (not served under `enforce`). */
  readonly unpinned: readonly string[]
}

export interface GatewayDeps {
  readonly loaded: LoadedConfig
  readonly env: NodeJS.ProcessEnv
  readonly log: Logger
  readonly audit: AuditLog
  readonly confirmations: Confirmations
}

/**
 * The gateway: the configured upstream MCP servers, connected and supervised, and their tools as
 * bastion tools. What is served is fixed at start: under `enforce`, the pinned definitions (an
 * upstream that is down still has its tools listed; calls fail until it is back and its list
 * matches); under `warn` and `off`, the definitions the upstream listed at start. Every later list
 * (on `notifications/tools/list_changed`, or a reconnect) is compared with the pins: a tool that
 * drifted is blocked (not listed, calls refused with `ERR_TOOL_BLOCKED`), audited once per change
 * as `upstream.drift`, and unblocked when the upstream lists the pinned definition again.
 * Re-pinning takes effect at the next start.
 */
export class Gateway {
  readonly #upstreams: Upstream[]
  readonly #deps: GatewayDeps
  readonly #identity = new Map<string, { header: string; key: Uint8Array }>()

  private constructor(upstreams: Upstream[], deps: GatewayDeps) {
    this.#upstreams = upstreams
    this.#deps = deps
  }

  /** Connect every upstream (each waits at most its `startTimeoutMs`). @throws ConfigError, LockFileError */
  static async open(deps: GatewayDeps): Promise<Gateway | undefined> {
    const { loaded, env, log, audit } = deps
    const entries = Object.entries(loaded.config.upstreams)
    if (entries.length === 0) return undefined
    const pins = readPins(lockPath(loaded))
    const upstreams: Upstream[] = []
    for (const [name, config] of entries) {
      const mode = pinMode(loaded, name, config, pins)
      const target = upstreamTarget(loaded, name, config, env)
      const secrets = secretValues(target)
      let upstream: Upstream | undefined
      const conn = new UpstreamConnection({
        name,
        target,
        breakerFailures: config.breakerFailures,
        breakerSeconds: config.breakerSeconds,
        relistMs: config.relistSeconds * 1000,
        onEvent: (event, detail) => {
          const fields = { upstream: name, ...detail }
          if (event === 'up' || event === 'restart') log.info(fields, `upstream ${event}`)
          else log.error(fields, `upstream ${event}`)
          try {
            audit.record({
              event: `upstream.${event}`,
              decision: event === 'up' || event === 'restart' ? 'allow' : 'error',
              reason: event === 'up' || event === 'restart' ? 'OK' : 'UPSTREAM_DOWN',
              ...fields,
            })
          } catch {
            // The operator log has it; the audit sink's failure shows on the next request.
          }
        },
        // An upstream may print the credentials it was given: those values, and every credential shape, are redacted.
        onStderr: (line) => log.warn({ upstream: name, stderr: redactText(withoutSecrets(line, secrets)) }, 'upstream stderr'),
        onWarning: (message) => log.warn({ upstream: name, why: redactText(withoutSecrets(message, secrets)) }, 'upstream message refused or connection error'),
        onTools: (tools, invalid) => {
          for (const why of invalid) log.warn({ upstream: name, why }, 'upstream listed a tool bastion cannot serve')
          if (upstream === undefined) return
          if (!upstream.listed && upstream.mode !== 'enforce') for (const t of tools) if (!config.hide.includes(t.name)) upstream.served.set(t.name, t)
          try {
            upstream.compare(tools, audit, log)
          } catch (error) {
            log.error({ upstream: name, err: { message: error instanceof Error ? error.message : 'error' } }, 'upstream drift could not be audited')
          }
        },
        onCatalog: ({ resources, prompts }, invalid) => {
          for (const why of invalid) log.warn({ upstream: name, why }, 'upstream listed a resource or prompt bastion cannot serve')
          if (upstream === undefined) return
          if (!upstream.catalogListed && upstream.mode !== 'enforce') {
            for (const r of resources) if (!config.hide.includes(r.name)) upstream.servedResources.set(r.name, r)
            for (const p of prompts) if (!config.hide.includes(p.name)) upstream.servedPrompts.set(p.name, p)
          }
          try {
            upstream.compareCatalog(resources, prompts, audit, log)
          } catch (error) {
            log.error({ upstream: name, err: { message: error instanceof Error ? error.message : 'error' } }, 'upstream drift could not be audited')
          }
        },
      })
      upstream = new Upstream(name, config, prefixOf(name, config), mode, pins.get(name), conn)
      if (mode === 'enforce') servePins(upstream)
      upstreams.push(upstream)
    }
    const gateway = new Gateway(upstreams, deps)
    for (const u of upstreams) {
      const c = u.config
      if ('forwardIdentity' in c && c.forwardIdentity !== undefined) {
        const where = `upstreams.${u.name}.forwardIdentity.secret`
        const key = new TextEncoder().encode(readSecret(loaded, c.forwardIdentity.secret, where, env))
        // HS256 with a key shorter than its hash is guessable offline from one header (RFC 7518 §3.2).
        if (key.length < 32) failConfig(loaded, where, 'at least 32 bytes (RFC 7518 §3.2); e.g. openssl rand -base64 48')
        gateway.#identity.set(u.name, { header: c.forwardIdentity.header, key })
      }
    }
    await Promise.all(
      upstreams.map(async (u) => {
        const timeout = new Promise<void>((resolve) => setTimeout(resolve, u.config.startTimeoutMs).unref())
        await Promise.race([u.conn.start(), timeout])
        if (!u.listed) log.error({ upstream: u.name, ...u.conn.status() }, 'upstream not ready at start: its tools fail until it is')
        if (u.mode !== 'enforce' && !u.listed) log.error({ upstream: u.name }, `upstream ${u.name} (pin: ${u.mode}) serves no tools: none were listed at start`)
      }),
    )
    return gateway
  }

  /**
   * The pinned tools only, connected to nothing and reading no secret: what `config check` and
   * `policy check | explain | replay` bind against. Upstreams without pins contribute none.
   * @throws LockFileError
   */
  static detached(deps: Omit<GatewayDeps, 'env' | 'audit'> & { readonly audit?: AuditLog }): Gateway | undefined {
    const { loaded } = deps
    const entries = Object.entries(loaded.config.upstreams)
    if (entries.length === 0) return undefined
    const pins = readPins(lockPath(loaded))
    const upstreams = entries.map(([name, config]) => {
      // The refusal serve gives an upstream that is neither pinned nor given a mode, said offline too.
      pinMode(loaded, name, config, pins)
      const u = new Upstream(name, config, prefixOf(name, config), 'enforce', pins.get(name), detachedConnection(name, isStdioUpstream(config) ? 'stdio' : 'http'))
      servePins(u)
      return u
    })
    return new Gateway(upstreams, { ...deps, env: {}, audit: deps.audit as AuditLog })
  }

  /** Every upstream's state, for `/healthz` detail and `upstreams status`. */
  report(): UpstreamReport[] {
    return this.#upstreams.map((u) => ({
      ...u.conn.status(),
      pin: u.mode,
      tools: [...u.served.keys()].map((t) => `${u.prefix}${t}`).sort(),
      blocked: Object.fromEntries(u.blocked),
      unpinned: [...u.unpinned].sort(),
    }))
  }

  /** The served tools as bastion tools, each behind every layer. @throws ConfigError for a schema that does not compile */
  tools(): ToolDefinition[] {
    const out: ToolDefinition[] = []
    const { loaded, log, confirmations } = this.#deps
    for (const u of this.#upstreams)
      for (const def of u.served.values()) {
        try {
          out.push(upstreamTool(u, def, { loaded, log, confirmations, identity: this.#identity.get(u.name) }))
        } catch (error) {
          // A pinned definition was reviewed: one that cannot be served stops start-up. An unpinned
          // upstream cannot stop bastion: the tool is left out.
          if (u.mode === 'enforce') throw error
          log.error({ upstream: u.name, tool: def.name, why: error instanceof Error ? error.message : 'error' }, 'upstream tool not served')
        }
      }
    return out
  }

  /** The served resources (fixed URIs, as the upstream names them) behind the same policy as bastion's own. */
  resources(): ResourceDefinition[] {
    return this.#upstreams.flatMap((u) => upstreamResources(u, this.#deps.loaded.config.limits.timeoutMs))
  }

  /** The served prompts, their string arguments as the upstream declared them. */
  prompts(): PromptDefinition[] {
    return this.#upstreams.flatMap((u) => upstreamPrompts(u, this.#deps.loaded.config.limits.timeoutMs))
  }

  async close(): Promise<void> {
    await Promise.all(this.#upstreams.map((u) => u.conn.close()))
  }
}

/** Add an upstream's resources and prompts to the catalog; a name already taken is refused, never shadowed. @throws ConfigError */
export function registerUpstreamCatalog(loaded: LoadedConfig, gateway: Gateway | undefined, catalog: Catalog): void {
  if (gateway === undefined) return
  const taken = (kind: string, name: string): never =>
    failConfig(loaded, 'upstreams', `the upstream ${kind} ${name} has the name of a registered ${kind}: give its upstream another prefix (upstreams.<name>.prefix)`)
  for (const r of gateway.resources()) {
    if (catalog.resources.some((o) => o.name === r.name || o.uri === r.uri) || catalog.templates.some((t) => t.name === r.name)) taken('resource', r.name)
    catalog.addResource(r)
  }
  for (const p of gateway.prompts()) {
    if (catalog.prompts.some((o) => o.name === p.name)) taken('prompt', p.name)
    catalog.addPrompt(p)
  }
}
