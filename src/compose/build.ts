import type { ResourceServer } from '../auth/resource-metadata.js'
import { ConfigError, resolvePath } from '../config/load.js'
import { ConsoleService, type UpstreamView } from '../console/service.js'
import { ConsoleSessions } from '../console/sessions.js'
import { executeTool } from '../limits/execute.js'
import type { RateLimitDeps } from '../limits/rate-guard.js'
import type { CompiledPolicy } from '../policy/engine.js'
import { PolicyError } from '../policy/engine.js'
import { PolicySource } from '../policy/source.js'
import type { ServerCapabilities, ServerOptions } from '../protocol.js'
import { confirmationStateVerifier } from '../tools/confirm.js'
import type { ConsoleRouteOptions } from '../transport/http/console-routes.js'
import { createEdge, type Edge } from '../transport/http/edge.js'
import type { ServerDeps } from '../transport/mcp-server.js'
import { createValidator, INPUT_HELPERS } from '../transport/mcp-server.js'
import { callPath } from '../transport/stages.js'
import type { StdioOptions } from '../transport/stdio.js'
import { toolErrorResult } from '../transport/wire.js'
import { VERSION } from '../version.js'
import type { BoundConfig } from './bind.js'
import type { Runtime } from './runtime.js'
import { describeUnusedPermission, unusedPermissions } from './unused-permissions.js'

/** What the library user adds to the MCP servers bastion builds. */
export interface ServeOptions {
  /** Server name and version reported to clients. */
  readonly info?: { readonly name: string; readonly version: string }
  /** Extra capabilities for tools that use protocol features (logging, completions, …). */
  readonly capabilities?: ServerCapabilities
  /** Multi-round-trip request-state integrity hook, passed to the SDK. */
  readonly requestState?: ServerOptions['requestState']
}

/** Everything that serves MCP, built once from the bound config; HTTP and stdio share it. */
export interface Serving {
  readonly bound: BoundConfig
  /** The policy source: the bound policy's inputs, hot-reloaded from `policy.file`. */
  readonly policySource: PolicySource
  /** The policy in force now. */
  readonly policy: () => CompiledPolicy
  readonly serverDeps: ServerDeps
  /** Each upstream's report (state, pins, drift), when bastion fronts upstreams (gateway). */
  readonly upstreams: (() => readonly UpstreamView[]) | undefined
}

/** Where the HTTP edge answers: computed when serving starts, fixed for the edge's life. */
export interface EdgeAt {
  /** `Host` header names accepted. */
  readonly allowedHosts: readonly string[]
  /** The resource URI (RFC 8707), or undefined for an embedded edge without `auth.resource`. */
  readonly resource: string | undefined
  /** Serve the operator console (enabled, and the address is loopback or TLS). */
  readonly console: boolean
}

/** The console's parts: its service over the runtime's stores and the serving policy, and its sessions. */
function consoleOptions(runtime: Runtime, serving: Serving): Omit<ConsoleRouteOptions, 'authenticate' | 'rateLimit' | 'maxJsonDepth'> {
  const { bound } = serving
  const { config } = bound.loaded
  const roles = Object.keys(config.roles)
  const service = new ConsoleService({
    trail: runtime.trail,
    keys: runtime.keys,
    policy: serving.policy,
    grants: bound.grants,
    targets: bound.targets,
    registry: bound.registry,
    roles,
    oauthGrants: runtime.auth.grants,
    levels: (principal) => runtime.limiter.levels(bound.plan.principalBuckets(principal)),
    upstreams: serving.upstreams ?? (() => []),
    alertRules: config.alerts.rules,
  })
  const c = config.console
  return {
    path: c.path,
    service,
    sessions: new ConsoleSessions({ idleMs: c.idleMinutes * 60_000, absoluteMs: c.absoluteHours * 3_600_000, max: c.maxSessions }),
    apiKeys: runtime.auth.apiKeys,
    keys: runtime.keys,
    bruteForce: runtime.auth.bruteForce,
    audit: runtime.audit,
    grants: bound.grants,
    roles,
    tools: () => bound.registry.all().map((t) => t.definition.name),
    upstreams: serving.upstreams !== undefined,
    sessionSeconds: c.absoluteHours * 3600,
  }
}

/**
 * Build the serving parts in one pass: the policy source, the call pipeline, the MCP server
 * dependencies. Nothing is built later; the HTTP edge is built by {@link buildEdge} when an
 * address is known. @throws ConfigError when the policy does not load
 */
export function buildServing(runtime: Runtime, bound: BoundConfig, options: ServeOptions, upstreams?: () => readonly UpstreamView[]): Serving {
  // A permission nothing requires grants nothing: fail closed, but say so (most often a typo).
  for (const u of unusedPermissions(bound.grants)) runtime.log.warn({ role: u.role, permission: u.permission }, describeUnusedPermission(u))
  const policySource = buildPolicySource(runtime, bound)
  const policy = (): CompiledPolicy => policySource.current()
  const serverDeps = buildServerDeps(runtime, bound, policy, options)
  return Object.freeze({ bound, policySource, policy, serverDeps, upstreams })
}

function buildPolicySource(runtime: Runtime, bound: BoundConfig): PolicySource {
  const { config, source } = bound.loaded
  try {
    return new PolicySource({
      grants: bound.grants,
      inline: config.policy.rules,
      file: config.policy.file === undefined ? undefined : resolvePath(bound.loaded, config.policy.file),
      targets: bound.targets,
      reloadIntervalMs: config.policy.reloadIntervalMs,
      audit: runtime.audit,
      log: runtime.log,
    })
  } catch (error) {
    // The file changed between binding and here: the same refusal binding gives.
    if (error instanceof PolicyError) throw new ConfigError(`config ${source}: policy: ${error.message}`)
    throw error
  }
}

/** What the rate-limit stages need: backend, plan, metrics and the fail-open choice. */
function rateLimits(runtime: Runtime, bound: BoundConfig): RateLimitDeps {
  return { limiter: runtime.limiter, plan: bound.plan, metrics: runtime.metrics, dangerouslyFailOpen: bound.loaded.config.limits.dangerouslyFailOpen }
}

/** The tool call path (validate → authorize arguments → run). The one call of `executeTool`. */
function buildCallPath(runtime: Runtime, bound: BoundConfig, policy: () => CompiledPolicy): ServerDeps['run'] {
  return callPath(policy, executeTool({ plan: bound.plan, caps: runtime.caps, metrics: runtime.metrics, input: INPUT_HELPERS, toolError: toolErrorResult, piiMode: bound.piiMode }))
}

/** The MCP server dependencies, shared by the HTTP edge and stdio. The one place they are made. */
function buildServerDeps(runtime: Runtime, bound: BoundConfig, policy: () => CompiledPolicy, options: ServeOptions): ServerDeps {
  const userState = options.requestState
  const verify = userState?.verify
  // Confirmation states are bastion's own (sealed under the keyring, checked by the tool); the
  // library user's hook verifies every other state.
  const requestState = verify === undefined ? userState : { ...userState, verify: confirmationStateVerifier(runtime.keyring, verify) }
  return {
    info: options.info ?? { name: 'mcp-bastion', version: VERSION },
    registry: bound.registry,
    catalog: bound.catalog,
    policy,
    scopes: bound.scopes,
    run: buildCallPath(runtime, bound, policy),
    validator: createValidator(),
    ...(options.capabilities === undefined ? {} : { capabilities: options.capabilities }),
    ...(requestState === undefined ? {} : { requestState }),
  }
}

/**
 * The web-standard HTTP edge for one address. The one call of `createEdge`: the Host allowlist
 * and the resource URI are values computed when serving starts, never read later from a field.
 */
export function buildEdge(runtime: Runtime, serving: Serving, at: EdgeAt): Edge {
  const { bound } = serving
  const { server } = bound.loaded.config
  const { auth, log } = runtime
  const upstreams = serving.upstreams
  const metadata = auth.resourceServer
  const resource = at.resource ?? ''
  const resourceServer: ResourceServer | undefined = metadata === undefined ? undefined : { ...metadata, resource: () => resource }
  return createEdge({
    serverDeps: serving.serverDeps,
    audit: runtime.audit,
    authenticator: auth.authenticator,
    bruteForce: auth.bruteForce,
    resourceServer,
    tokenService: auth.tokenService,
    ...(auth.authorization === undefined
      ? {}
      : {
          authorization: {
            pages: {
              as: auth.authorization,
              apiKeys: auth.apiKeys,
              bruteForce: auth.bruteForce,
              audit: runtime.audit,
              apiKeyLogin: bound.loaded.config.auth.login.apiKey,
              oidc: auth.oidcLogin,
              issuer: () => (resource === '' ? '' : new URL(resource).origin),
              flowSeconds: bound.loaded.config.auth.login.flowSeconds,
            },
            registration: { clients: auth.authorization.clients, initialAccessToken: auth.registrationToken, perMinute: bound.loaded.config.auth.clients.registration.perMinute },
          },
        }),
    scopes: bound.scopes,
    registry: bound.registry,
    policy: serving.policy,
    grants: bound.grants,
    origins: { allowedHosts: at.allowedHosts, allowedOrigins: server.allowedOrigins },
    body: { maxBytes: server.maxBodyBytes, maxDepth: server.maxJsonDepth },
    sessions: { maxTotal: server.sessions.maxTotal, maxPerPrincipal: server.sessions.maxPerPrincipal, idleTimeoutMs: server.sessions.idleTimeoutSeconds * 1000 },
    path: server.path,
    limits: rateLimits(runtime, bound),
    metrics: runtime.metrics,
    ...(runtime.tracing === undefined ? {} : { tracing: runtime.tracing }),
    onError: (error) => log.warn({ err: { name: error.name, message: error.message } }, 'mcp sdk error'),
    ...(upstreams === undefined ? {} : { upstreams: () => Object.fromEntries(upstreams().map((u) => [u.name, u.state])) }),
    ...(at.console ? { console: consoleOptions(runtime, serving) } : {}),
  })
}

/** What the stdio transport is built from: the same stage dependencies as the HTTP edge. The one place they are made for stdio. */
export function buildStdio(runtime: Runtime, serving: Serving): Omit<StdioOptions, 'env' | 'stdin' | 'stdout'> {
  const { bound } = serving
  const { server } = bound.loaded.config
  return {
    serverDeps: serving.serverDeps,
    audit: runtime.audit,
    authenticator: runtime.auth.authenticator,
    bruteForce: runtime.auth.bruteForce,
    stages: {
      origins: { allowedHosts: [], allowedOrigins: [] },
      body: { maxBytes: server.maxBodyBytes, maxDepth: server.maxJsonDepth },
      limits: rateLimits(runtime, bound),
      registry: bound.registry,
      policy: serving.policy,
      scopes: bound.scopes,
    },
    log: runtime.log,
    ...(runtime.tracing === undefined ? {} : { tracing: runtime.tracing }),
  }
}
