import { dirname } from 'node:path'
import { SignJWT } from 'jose'
import type { Logger } from 'pino'
import { z } from 'zod'
import type { AuditLog } from '../audit/audit-log.js'
import { ConfigError, type LoadedConfig, readSecret, resolvePath } from '../config/load.js'
import { isStdioUpstream, prefixOf, type UpstreamConfig } from '../config/upstream-schema.js'
import { isLoopback } from '../config/urls.js'
import { SecurityError } from '../errors.js'
import { diffDefinitions, digestOf, digestOfValue, type PromptPin, type ResourcePin, screenText, type ToolDefinitionPin } from '../gateway/definitions.js'
import { compileSchema } from '../gateway/json-schema.js'
import { LOCK_FILE, type Pins, readPins, type UpstreamPins } from '../gateway/lock-file.js'
import { redactText } from '../protect/redact.js'
import type { CallToolResult } from '../protocol.js'
import type { Catalog, PromptDefinition, ResourceDefinition } from '../tools/catalog.js'
import { Confirmations } from '../tools/confirm.js'
import type { ToolDefinition } from '../tools/registry.js'
import { UpstreamConnection, type UpstreamStatus, type UpstreamTarget, UpstreamUnavailable } from '../transport/upstream/connection.js'

export type PinMode = 'enforce' | 'warn' | 'off'

/** Why a served tool is blocked: its upstream definition changed or went away since it was pinned. */
export interface Drift {
  readonly change: 'changed' | 'removed'
  readonly fields: readonly string[]
}

export interface UpstreamReport extends UpstreamStatus {
  readonly pin: PinMode
  /** Catalog names of the tools served from it. */
  readonly tools: readonly string[]
  /** Catalog name → why it is blocked. */
  readonly blocked: Readonly<Record<string, Drift>>
  /** Upstream names of tools it lists that are not pinned (not served under `enforce`). */
  readonly unpinned: readonly string[]
}

/** The lock file of a config: beside it (an object config: in its base folder). */
export const lockPath = (loaded: LoadedConfig): string => resolvePath(loaded, LOCK_FILE)

const fail = (loaded: LoadedConfig, where: string, why: string): never => {
  throw new ConfigError(`config ${loaded.source}: ${where}: ${why}`)
}

/** The pin mode of an upstream. @throws ConfigError for an unpinned upstream with no mode named */
export function pinMode(loaded: LoadedConfig, name: string, u: UpstreamConfig, pins: Pins): PinMode {
  if (u.pin !== undefined) return u.pin
  if (pins.has(name)) return 'enforce'
  return fail(
    loaded,
    `upstreams.${name}`,
    `not pinned in ${LOCK_FILE}: run "mcp-bastion upstreams pin ${name}" (then review and commit the lock file), or set pin: warn or pin: off to serve it unpinned`,
  )
}

/** What an upstream process may see of bastion's environment, besides what its config gives it. */
const INHERITED = ['PATH', 'LANG', 'HOME']

/** How to reach an upstream, its secrets read now. @throws ConfigError naming the key */
export function upstreamTarget(loaded: LoadedConfig, name: string, u: UpstreamConfig, env: NodeJS.ProcessEnv): UpstreamTarget {
  const where = `upstreams.${name}`
  if (isStdioUpstream(u)) {
    const childEnv: Record<string, string> = {}
    for (const key of [...INHERITED, ...u.inheritEnv]) {
      const value = env[key]
      if (value !== undefined) childEnv[key] = value
    }
    const configured: Record<string, string> = {}
    for (const [key, ref] of Object.entries(u.env)) configured[key] = readSecret(loaded, ref, `${where}.env.${key}`, env)
    Object.assign(childEnv, configured)
    if (u.maxMemoryMb !== undefined) childEnv.NODE_OPTIONS = `${childEnv.NODE_OPTIONS ?? ''} --max-old-space-size=${u.maxMemoryMb}`.trim()
    const command = u.maxOpenFiles === undefined ? u.command : 'prlimit'
    const args = u.maxOpenFiles === undefined ? u.args : [`--nofile=${u.maxOpenFiles}:${u.maxOpenFiles}`, '--', u.command, ...u.args]
    return {
      kind: 'stdio',
      process: { command, args, cwd: u.cwd === undefined ? dirname(lockPath(loaded)) : resolvePath(loaded, u.cwd), env: childEnv, maxMessageBytes: u.maxMessageBytes },
      configured,
      maxRestarts: u.maxRestarts,
      restartWindowSeconds: u.restartWindowSeconds,
    }
  }
  const url = new URL(u.url)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) fail(loaded, `${where}.url`, 'must be https (plain http only to a loopback address)')
  if (url.username !== '' || url.password !== '') fail(loaded, `${where}.url`, 'no credentials in the URL: give them under headers or oauth')
  const headers: Record<string, string> = {}
  for (const [key, ref] of Object.entries(u.headers)) headers[key] = readSecret(loaded, ref, `${where}.headers.${key}`, env)
  return {
    kind: 'http',
    url,
    headers,
    ...(u.oauth === undefined
      ? {}
      : {
          oauth: {
            issuer: u.oauth.issuer,
            clientId: u.oauth.clientId,
            clientSecret: readSecret(loaded, u.oauth.clientSecret, `${where}.oauth.clientSecret`, env),
            ...(u.oauth.scope === undefined ? {} : { scope: u.oauth.scope }),
          },
        }),
    connectTimeoutMs: u.connectTimeoutMs,
    maxMessageBytes: u.maxMessageBytes,
  }
}

/** The values read from secret references for an upstream (its configured env, headers, OAuth secret). */
function secretValues(target: UpstreamTarget): string[] {
  const values = target.kind === 'stdio' ? Object.values(target.configured) : [...Object.values(target.headers), ...(target.oauth === undefined ? [] : [target.oauth.clientSecret])]
  // Short values would redact ordinary words; the shape detectors still apply to every line.
  return values.filter((v) => v.length >= 6).sort((a, b) => b.length - a.length)
}

function withoutSecrets(line: string, secrets: readonly string[]): string {
  let out = line
  for (const secret of secrets) out = out.split(secret).join('[REDACTED]')
  return out
}

/** The whole input a tool gets: an object (the JSON Schema says more, checked by `check`). */
const objectArgs = z.record(z.string(), z.unknown())

/** What a served tool needs of its upstream's connection (a refusing stand-in for offline checks). */
type Connection = Pick<UpstreamConnection, 'name' | 'status' | 'call' | 'readResource' | 'getPrompt' | 'start' | 'close'>

/** For `config check` and `policy`: the definitions, no process started, nothing connected. */
function detachedConnection(name: string, kind: 'stdio' | 'http'): Connection {
  return {
    name,
    status: () => ({ name, kind, state: 'down', since: new Date(0).toISOString(), restarts: 0 }),
    call: () => Promise.reject(new SecurityError('ERR_INTERNAL', 'upstream tool definitions for policy and config checks: not connected')),
    readResource: () => Promise.reject(new SecurityError('ERR_INTERNAL', 'upstream definitions for policy and config checks: not connected')),
    getPrompt: () => Promise.reject(new SecurityError('ERR_INTERNAL', 'upstream definitions for policy and config checks: not connected')),
    start: async () => {},
    close: async () => {},
  }
}

type Kind = 'tool' | 'resource' | 'prompt'

/** Under `enforce` (and offline): what is served is what is pinned, but for the hidden. */
function servePins(u: Upstream): void {
  const hidden = new Set(u.config.hide)
  for (const [name, pin] of u.pins?.tools ?? []) if (!hidden.has(name)) u.served.set(name, pin.definition)
  for (const [name, pin] of u.pins?.resources ?? []) if (!hidden.has(name)) u.servedResources.set(name, pin.definition)
  for (const [name, pin] of u.pins?.prompts ?? []) if (!hidden.has(name)) u.servedPrompts.set(name, pin.definition)
}

/** One upstream with what bastion serves of it. */
class Upstream {
  readonly served = new Map<string, ToolDefinitionPin>()
  readonly servedResources = new Map<string, ResourcePin>()
  readonly servedPrompts = new Map<string, PromptPin>()
  /** Catalog name → why it is blocked, per kind. */
  readonly blocked = new Map<string, Drift>()
  readonly blockedResources = new Map<string, Drift>()
  readonly blockedPrompts = new Map<string, Drift>()
  readonly unpinned = new Set<string>()
  /** Digest of each drift already reported, so that a repeated list does not repeat the audit line. */
  readonly #reported = new Map<string, string>()
  listed = false
  catalogListed = false

  constructor(
    readonly name: string,
    readonly config: UpstreamConfig,
    readonly prefix: string,
    readonly mode: PinMode,
    readonly pins: UpstreamPins | undefined,
    readonly conn: Connection,
  ) {}

  /** Compare a fresh tool list with the pins: block what drifted, unblock what came back, report each change once. */
  compare(live: readonly ToolDefinitionPin[], audit: AuditLog, log: Logger): void {
    this.listed = true
    const added = this.#compareKind('tool', live, this.pins?.tools, digestOf, this.blocked, audit, log)
    for (const tool of added) this.unpinned.add(tool)
  }

  /** The same for resources and prompts. */
  compareCatalog(resources: readonly ResourcePin[], prompts: readonly PromptPin[], audit: AuditLog, log: Logger): void {
    this.catalogListed = true
    this.#compareKind('resource', resources, this.pins?.resources, digestOfValue, this.blockedResources, audit, log)
    this.#compareKind('prompt', prompts, this.pins?.prompts, digestOfValue, this.blockedPrompts, audit, log)
  }

  /** One kind: returns the names listed but not pinned. */
  #compareKind<T extends { readonly name: string }>(
    kind: Kind,
    live: readonly T[],
    pins: ReadonlyMap<string, { readonly digest: string; readonly definition: T }> | undefined,
    digestOfDef: (d: T) => string,
    blocked: Map<string, Drift>,
    audit: AuditLog,
    log: Logger,
  ): string[] {
    const byName = new Map(live.map((d) => [d.name, d]))
    const hidden = new Set(this.config.hide)
    if (this.mode === 'off' || pins === undefined) return []
    const enforced = this.mode === 'enforce'
    const report = (name: string, change: 'changed' | 'removed' | 'added', fields: readonly string[], digest: string): void => {
      const key = `${kind}:${name}`
      if (this.#reported.get(key) === digest) return
      this.#reported.set(key, digest)
      log.warn(
        { upstream: this.name, [kind]: name, change, fields },
        enforced ? `upstream ${kind} definition drifted: blocked until re-pinned` : `upstream ${kind} definition drifted (pin: warn)`,
      )
      audit.record({
        event: 'upstream.drift',
        decision: enforced ? 'deny' : 'allow',
        reason: 'UPSTREAM_DRIFT',
        upstream: this.name,
        [kind]: `${this.prefix}${name}`,
        change,
        fields: fields.join(',').slice(0, 1000),
        ...(digest === '' ? {} : { digest }),
      })
    }
    for (const [name, pin] of pins) {
      if (hidden.has(name)) continue
      const current = byName.get(name)
      const catalogName = `${this.prefix}${name}`
      if (current === undefined) {
        report(name, 'removed', [`(${kind})`], 'removed')
        if (enforced) blocked.set(catalogName, { change: 'removed', fields: [`(${kind})`] })
        continue
      }
      const digest = digestOfDef(current)
      if (digest === pin.digest) {
        if (blocked.delete(catalogName)) {
          this.#reported.delete(`${kind}:${name}`)
          log.info({ upstream: this.name, [kind]: name }, `upstream ${kind} definition matches its pin again: unblocked`)
          audit.record({ event: 'upstream.pin_matched', decision: 'allow', reason: 'OK', upstream: this.name, [kind]: catalogName })
        }
        continue
      }
      const fields = diffDefinitions(pin.definition as unknown as ToolDefinitionPin, current as unknown as ToolDefinitionPin).map((c) => c.path)
      report(name, 'changed', fields, digest)
      if (enforced) blocked.set(catalogName, { change: 'changed', fields })
    }
    const added: string[] = []
    for (const [name, def] of byName) {
      if (hidden.has(name) || pins.has(name)) continue
      added.push(name)
      report(name, 'added', [`(${kind})`], digestOfDef(def))
    }
    return added
  }
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
      if ('forwardIdentity' in c && c.forwardIdentity !== undefined)
        gateway.#identity.set(u.name, {
          header: c.forwardIdentity.header,
          key: new TextEncoder().encode(readSecret(loaded, c.forwardIdentity.secret, `upstreams.${u.name}.forwardIdentity.secret`, env)),
        })
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
    for (const u of this.#upstreams) for (const def of u.served.values()) out.push(this.#tool(u, def))
    return out
  }

  /** The served resources (fixed URIs, as the upstream names them) behind the same policy as bastion's own. */
  resources(): ResourceDefinition[] {
    return this.#upstreams.flatMap((u) =>
      [...u.servedResources.values()].map((def): ResourceDefinition => {
        const name = `${u.prefix}${def.name}`
        return {
          name,
          uri: def.uri,
          ...(def.description === undefined ? {} : { description: screenText(def.description).text }),
          ...(def.mimeType === undefined ? {} : { mimeType: def.mimeType }),
          ...(u.config.permissions === undefined ? {} : { permissions: u.config.permissions }),
          blocked: () => u.blockedResources.has(name),
          read: async (uri, mcp) => {
            if (u.blockedResources.has(name) || (!u.catalogListed && u.mode === 'enforce'))
              throw new SecurityError('ERR_RESOURCE_NOT_FOUND', `upstream ${u.name} resource ${def.name} is blocked or unverified`)
            const result = await this.#forward(u, 'resource', () => u.conn.readResource(uri.href, mcp.mcpReq.signal))
            return {
              ...result,
              contents: result.contents.map((c) => ('text' in c && typeof c.text === 'string' ? { ...c, text: screenText(c.text).text } : c)),
            }
          },
        }
      }),
    )
  }

  /** The served prompts, their string arguments as the upstream declared them. */
  prompts(): PromptDefinition[] {
    return this.#upstreams.flatMap((u) =>
      [...u.servedPrompts.values()].map((def): PromptDefinition => {
        const name = `${u.prefix}${def.name}`
        const shape: Record<string, z.ZodType> = {}
        for (const a of def.arguments ?? []) {
          const arg = z.string().max(65_536)
          const described = a.description === undefined ? arg : arg.describe(a.description)
          shape[a.name] = a.required === true ? described : described.optional()
        }
        return {
          name,
          ...(def.title === undefined ? {} : { title: def.title }),
          ...(def.description === undefined ? {} : { description: screenText(def.description).text }),
          ...(def.arguments === undefined ? {} : { args: z.object(shape) }),
          ...(u.config.permissions === undefined ? {} : { permissions: u.config.permissions }),
          blocked: () => u.blockedPrompts.has(name),
          get: async (args, mcp) => {
            if (u.blockedPrompts.has(name)) throw new SecurityError('ERR_INVALID_PARAMS', `upstream ${u.name} prompt ${def.name} is blocked: its definition drifted`)
            if (!u.catalogListed && u.mode === 'enforce') throw new SecurityError('ERR_INVALID_PARAMS', `upstream ${u.name} has not listed its prompts yet: pins unverified`)
            const result = await this.#forward(u, 'prompt', () => u.conn.getPrompt(def.name, args, mcp.mcpReq.signal))
            return {
              ...result,
              messages: result.messages.map((m) => (m.content.type === 'text' ? { ...m, content: { ...m.content, text: screenText(m.content.text).text } } : m)),
            }
          },
        }
      }),
    )
  }

  /**
   * A resource read or prompt get: the upstream's failures in bastion's codes (as JSON-RPC errors:
   * reads and gets have no in-band error), its own text kept out.
   */
  async #forward<T>(u: Upstream, kind: 'resource' | 'prompt', run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      if (error instanceof UpstreamUnavailable) throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', error.message)
      throw new SecurityError(
        kind === 'resource' ? 'ERR_RESOURCE_NOT_FOUND' : 'ERR_INVALID_PARAMS',
        `upstream ${u.name} refused: ${error instanceof Error ? error.message.slice(0, 300) : 'error'}`,
      )
    }
  }

  #tool(u: Upstream, def: ToolDefinitionPin): ToolDefinition {
    const { loaded } = this.#deps
    const name = `${u.prefix}${def.name}`
    let check: ReturnType<typeof compileSchema>
    let checkOutput: ReturnType<typeof compileSchema> | undefined
    try {
      check = compileSchema(def.inputSchema)
      checkOutput = def.outputSchema === undefined ? undefined : compileSchema(def.outputSchema)
    } catch (error) {
      return fail(loaded, `upstreams.${u.name}`, `tool ${def.name}: ${error instanceof Error ? error.message : 'invalid schema'}`)
    }
    const input = objectArgs.superRefine((value, ctx) => {
      const problem = check(value)
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem.what, path: problem.path === 'arguments' ? [] : problem.path.split('.') })
    })
    const description = screenText(def.description ?? '')
    if (description.flagged.length > 0 || description.invisible > 0)
      this.#deps.log.warn({ upstream: u.name, tool: def.name, invisible: description.invisible, flagged: description.flagged }, 'upstream tool description screened')
    const destructive = u.config.confirm.includes(def.name) || def.annotations?.destructiveHint === true
    const confirmations = this.#deps.confirmations
    const identity = this.#identity.get(u.name)
    return {
      name,
      ...(def.title === undefined ? {} : { title: def.title }),
      description: description.text,
      input,
      jsonSchema: { input: def.inputSchema, ...(def.outputSchema === undefined ? {} : { output: def.outputSchema }) },
      ...(u.config.permissions === undefined ? {} : { permissions: u.config.permissions }),
      ...(def.annotations === undefined ? {} : { annotations: def.annotations }),
      auditFields: { upstream: u.name },
      blocked: () => {
        const drift = u.blocked.get(name)
        if (drift === undefined) return undefined
        return new SecurityError('ERR_TOOL_BLOCKED', `upstream ${u.name} tool ${def.name} ${drift.change} since pinned (${drift.fields.join(', ').slice(0, 300)})`)
      },
      run: async (args, ctx) => {
        // Pinned tools of an upstream not yet listed are unverified: nothing is forwarded before the comparison.
        if (!u.listed && u.mode === 'enforce') throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', `upstream ${u.name} has not listed its tools yet: pins unverified`)
        if (destructive) {
          const state = Confirmations.stateOf(ctx)
          if (state === undefined) {
            const preview = { upstream: u.name, tool: def.name }
            ctx.audit({ dryRun: preview })
            return confirmations.ask(ctx, name, args, `Run ${def.name} on ${u.name}? It may change or delete data.`, preview)
          }
          await confirmations.redeem(ctx, name, args, state)
        }
        const headers: Record<string, string> = {}
        if (identity !== undefined) headers[identity.header] = await identityToken(identity.key, u.name, ctx.principal.id, ctx.principal.roles, ctx.requestId)
        let result: CallToolResult
        try {
          result = await u.conn.call(def.name, args as Record<string, unknown>, ctx.signal, headers)
        } catch (error) {
          if (error instanceof UpstreamUnavailable) throw new SecurityError('ERR_UPSTREAM_UNAVAILABLE', error.message)
          if (ctx.signal.aborted) throw error
          const code = (error as { code?: unknown }).code
          // The upstream's own error text is not forwarded: it may hold paths or internals.
          throw new SecurityError(
            'ERR_TOOL_FAILED',
            `upstream ${u.name} tool ${def.name} answered a JSON-RPC error ${String(code)}: ${error instanceof Error ? error.message.slice(0, 300) : ''}`,
            {
              expose: 'the upstream server refused the call',
            },
          )
        }
        return screenResult(u.name, def.name, result, checkOutput, ctx.audit)
      },
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.#upstreams.map((u) => u.conn.close()))
  }
}

/** A short-lived signed statement of who called, for an upstream that asked for it (`forwardIdentity`). */
function identityToken(key: Uint8Array, upstream: string, sub: string, roles: readonly string[], requestId: string): Promise<string> {
  return new SignJWT({ roles: [...roles] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer('mcp-bastion')
    .setAudience(upstream)
    .setSubject(sub)
    .setJti(requestId)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(key)
}

const RESULT_SHAPE = z.looseObject({ content: z.array(z.looseObject({ type: z.string() })).optional(), isError: z.boolean().optional() })

/**
 * An upstream's result, checked before it goes anywhere: the result shape, its structured content
 * against the pinned output schema, invisible characters stripped from its text and
 * instruction-like text flagged in the audit line.
 * Does not check: personal data and size (the run stage does, for every tool).
 */
function screenResult(
  upstream: string,
  tool: string,
  result: CallToolResult,
  checkOutput: ReturnType<typeof compileSchema> | undefined,
  audit: (fields: Record<string, unknown>) => void,
): CallToolResult {
  const invalid = (why: string): never => {
    throw new SecurityError('ERR_TOOL_FAILED', `upstream ${upstream} tool ${tool}: ${why}`, { expose: 'the upstream server answered outside its declared schema' })
  }
  if (!RESULT_SHAPE.safeParse(result).success) invalid('the result is not a tool result')
  if (checkOutput !== undefined && result.isError !== true) {
    if (result.structuredContent === undefined) invalid('no structuredContent, yet the tool declares an output schema')
    const problem = checkOutput(result.structuredContent)
    if (problem !== undefined) invalid(`structuredContent: ${problem.path}: ${problem.what}`)
  }
  let invisible = 0
  const flagged = new Set<string>()
  const content = (result.content ?? []).map((block) => {
    if (block.type !== 'text' || typeof block.text !== 'string') return block
    const screened = screenText(block.text)
    invisible += screened.invisible
    for (const f of screened.flagged) flagged.add(f)
    return screened.invisible === 0 ? block : { ...block, text: screened.text }
  })
  if (invisible > 0 || flagged.size > 0) audit({ screened: `invisible:${invisible}${flagged.size > 0 ? `,instructions:${flagged.size}` : ''}` })
  return { ...result, content }
}

/** What one upstream lists now, for the CLI (`upstreams pin | diff | status`): connected, listed, closed. */
export interface UpstreamListing {
  readonly name: string
  readonly status: UpstreamStatus
  /** Undefined when it could not be listed within its `startTimeoutMs`. */
  readonly tools: readonly ToolDefinitionPin[] | undefined
  readonly resources: readonly ResourcePin[]
  readonly prompts: readonly PromptPin[]
  readonly invalid: readonly string[]
}

/** Connect to an upstream, list its tools, disconnect (stopping its process). @throws ConfigError for a missing secret */
export async function listUpstream(loaded: LoadedConfig, name: string, env: NodeJS.ProcessEnv, log: Logger): Promise<UpstreamListing> {
  const config = loaded.config.upstreams[name]
  if (config === undefined) return fail(loaded, 'upstreams', `no upstream named ${JSON.stringify(name)}`)
  let tools: ToolDefinitionPin[] | undefined
  let resources: ResourcePin[] = []
  let prompts: PromptPin[] = []
  let invalid: readonly string[] = []
  const conn = new UpstreamConnection({
    name,
    target: { ...upstreamTarget(loaded, name, config, env), ...(isStdioUpstream(config) ? { maxRestarts: 0 } : {}) } as UpstreamTarget,
    breakerFailures: config.breakerFailures,
    breakerSeconds: config.breakerSeconds,
    onEvent: () => {},
    onStderr: (line) => log.debug({ upstream: name, stderr: redactText(line) }, 'upstream stderr'),
    onWarning: (message) => log.debug({ upstream: name, why: redactText(message) }, 'upstream message refused or connection error'),
    onTools: (listed, bad) => {
      tools = listed.filter((t) => !config.hide.includes(t.name))
      invalid = [...invalid, ...bad]
    },
    onCatalog: (listed, bad) => {
      resources = listed.resources.filter((r) => !config.hide.includes(r.name))
      prompts = listed.prompts.filter((p) => !config.hide.includes(p.name))
      invalid = [...invalid, ...bad]
    },
  })
  try {
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, config.startTimeoutMs).unref())
    await Promise.race([conn.start(), timeout])
    // Listed only once the connection is up: tools first, then resources and prompts.
    return { name, status: conn.status(), tools: conn.status().state === 'up' ? tools : undefined, resources, prompts, invalid }
  } finally {
    await conn.close()
  }
}

/** Add an upstream's resources and prompts to the catalog; a name already taken is refused, never shadowed. @throws ConfigError */
export function registerUpstreamCatalog(loaded: LoadedConfig, gateway: Gateway | undefined, catalog: Catalog): void {
  if (gateway === undefined) return
  const taken = (kind: string, name: string): never =>
    fail(loaded, 'upstreams', `the upstream ${kind} ${name} has the name of a registered ${kind}: give its upstream another prefix (upstreams.<name>.prefix)`)
  for (const r of gateway.resources()) {
    if (catalog.resources.some((o) => o.name === r.name || o.uri === r.uri) || catalog.templates.some((t) => t.name === r.name)) taken('resource', r.name)
    catalog.addResource(r)
  }
  for (const p of gateway.prompts()) {
    if (catalog.prompts.some((o) => o.name === p.name)) taken('prompt', p.name)
    catalog.addPrompt(p)
  }
}
