import { pino } from 'pino'
import { z } from 'zod'
import type { ScopeRules } from '../auth/resource-metadata.js'
import { ConfigError, type LoadedConfig, resolvePath } from '../config/load.js'
import { RatePlan } from '../limits/rate-plan.js'
import { CompiledPolicy, PolicyError, type PolicyTargets } from '../policy/engine.js'
import { type RbacPolicy, rbacRules, targetKey } from '../policy/rbac.js'
import { readPolicyFile } from '../policy/source.js'
import { Catalog } from '../tools/catalog.js'
import { type ToolDefinition, ToolRegistry } from '../tools/registry.js'
import { builtinTools, checkToolConfig, detachedToolResources } from '../tools/setup.js'
import { Gateway, registerUpstreamCatalog } from './gateway.js'

export type PiiMode = 'mask' | 'block' | 'allow'

/** What is registered: tools (each schema compiled once, by the registry) and resources, templates, prompts. */
export interface Registrations {
  readonly registry: ToolRegistry
  readonly catalog: Catalog
}

/**
 * The configuration bound to what is registered: every name the config uses is a registered
 * thing, the role permissions are known and the policy compiles against the targets. Frozen; made
 * once, by {@link bindConfig}, when registration ends.
 */
export interface BoundConfig extends CheckedConfig {
  readonly registry: ToolRegistry
  readonly catalog: Catalog
  /** Role permissions: config roles; target permissions from registrations, overridden by config. */
  readonly grants: RbacPolicy
  /** What policies compile against: every registered tool, resource and prompt with its input schema. */
  readonly targets: PolicyTargets
  /** The policy as configured when bound: policy rules (inline or the file's), then role rules. */
  readonly policy: CompiledPolicy
  /** Scopes token principals need per target: config `tools|resources|prompts.<name>.scopes`, else the tool's own. */
  readonly scopes: ScopeRules
  /** PII handling of a tool's results: the deciding rule's `output.pii`, then `pii.tools`, the tool's own, `pii.mode`. */
  piiMode(tool: string, fromPolicy: string | undefined): PiiMode
}

/** The config with what it alone decides, checked by {@link checkConfig} before anything is opened. */
export interface CheckedConfig {
  readonly loaded: LoadedConfig
  readonly plan: RatePlan
}

/**
 * The checks that need no registrations: roles named by `auth.keys` and `limits.roles` exist,
 * the rate plan is consistent, the tools' sections are. Pure: reads no secret, opens nothing.
 * @throws ConfigError naming the key
 */
export function checkConfig(loaded: LoadedConfig): CheckedConfig {
  const { config, source } = loaded
  const fail = (where: string, why: string): never => {
    throw new ConfigError(`config ${source}: ${where}: ${why}`)
  }
  config.auth.keys.forEach((k, i) => {
    for (const role of k.roles) if (!Object.hasOwn(config.roles, role)) fail(`auth.keys.${i}.roles`, `role ${JSON.stringify(role)} is not defined under roles`)
  })
  for (const role of Object.keys(config.limits.roles)) {
    if (!Object.hasOwn(config.roles, role)) fail(`limits.roles.${role}`, `role ${JSON.stringify(role)} is not defined under roles`)
  }
  const plan = new RatePlan(config.limits, fail)
  checkToolConfig(loaded)
  return { loaded, plan }
}

/** Fresh registrations holding the built-in tools. @throws ConfigError */
export function builtinRegistrations(loaded: LoadedConfig, tools: readonly ToolDefinition[]): Registrations {
  const registrations = { registry: new ToolRegistry(), catalog: new Catalog() }
  registerBuiltins(loaded, tools, registrations.registry)
  return registrations
}

/** Add the built-in (or upstream) tools to a registry that may hold a library's own. @throws ConfigError */
export function registerBuiltins(loaded: LoadedConfig, tools: readonly ToolDefinition[], registry: ToolRegistry, kind: 'built-in' | 'upstream' = 'built-in'): void {
  for (const tool of tools) {
    if (registry.get(tool.name) !== undefined)
      throw new ConfigError(
        kind === 'upstream'
          ? `config ${loaded.source}: the upstream tool ${tool.name} has the name of a registered tool: give its upstream another prefix (upstreams.<name>.prefix)`
          : `config ${loaded.source}: the built-in tool ${tool.name} has the name of a registered tool: rename yours, or turn its section off (enabled: false)`,
      )
    try {
      registry.register(tool)
    } catch (error) {
      // A schema built from config (tables, queries, commands) that does not convert.
      throw new ConfigError(`config ${loaded.source}: ${error instanceof Error ? error.message : `tool ${tool.name}: invalid`}`)
    }
  }
}

/**
 * Bind config × registrations, once: every check that names a registered thing (`tools`,
 * `resources`, `prompts`, `pii.tools`, `limits.tools`), the isolate-only limits, the role
 * permissions, and the policy compiled against the targets. Pure: no state file, no network;
 * it reads the policy file (`policy.file`) if there is one.
 * Does not check: secrets (they are read when the parts that use them are opened).
 * @throws ConfigError naming the key; a policy that does not compile is `policy: <rule and why>`
 */
export function bindConfig(checked: CheckedConfig, registrations: Registrations): BoundConfig {
  const { loaded } = checked
  const { registry, catalog } = registrations
  const { config, source } = loaded
  const roles = new Map<string, ReadonlySet<string>>()
  for (const [name, role] of Object.entries(config.roles)) roles.set(name, new Set(role.permissions))
  const targets = new Map<string, readonly string[]>()
  for (const t of registry.all()) if (t.definition.permissions !== undefined) targets.set(targetKey('tool', t.definition.name), t.definition.permissions)
  for (const r of [...catalog.resources, ...catalog.templates]) if (r.permissions !== undefined) targets.set(targetKey('resource', r.name), r.permissions)
  for (const p of catalog.prompts) if (p.permissions !== undefined) targets.set(targetKey('prompt', p.name), p.permissions)
  const known = {
    tool: new Set(registry.all().map((t) => t.definition.name)),
    resource: new Set([...catalog.resources, ...catalog.templates].map((r) => r.name)),
    prompt: new Set(catalog.prompts.map((p) => p.name)),
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
    if (registry.get(name) === undefined) throw new ConfigError(`config ${source}: pii.tools.${name}: no tool named ${JSON.stringify(name)} is registered`)
  }
  for (const [name, settings] of Object.entries(config.limits.tools)) {
    const tool = registry.get(name)
    if (tool === undefined) throw new ConfigError(`config ${source}: limits.tools.${name}: no tool named ${JSON.stringify(name)} is registered`)
    if ((settings.memoryMb !== undefined || settings.cpuMs !== undefined) && tool.definition.isolate === undefined)
      throw new ConfigError(`config ${source}: limits.tools.${name}: memoryMb and cpuMs apply only to isolated tools`)
  }
  const grants: RbacPolicy = { roles, targets }
  const policyTargets: PolicyTargets = {
    tools: new Map(registry.all().map((t) => [t.definition.name, t.descriptor.inputSchema as Record<string, unknown>])),
    prompts: new Map(catalog.prompts.map((p) => [p.name, p.args === undefined ? undefined : (z.toJSONSchema(p.args, { io: 'output' }) as Record<string, unknown>)])),
    resources: new Map(catalog.resources.map((r) => [r.name, r.uri])),
    templates: new Map(catalog.templates.map((t) => [t.name, t.uriTemplate])),
  }
  let policy: CompiledPolicy
  try {
    const rules = config.policy.file === undefined ? config.policy.rules : readPolicyFile(resolvePath(loaded, config.policy.file))
    // Policy rules first: among allows the first decides (as the policy source orders them).
    policy = CompiledPolicy.compile([...rules, ...rbacRules(grants)], policyTargets)
  } catch (error) {
    if (error instanceof PolicyError) throw new ConfigError(`config ${source}: policy: ${error.message}`)
    throw error
  }
  return Object.freeze({
    loaded,
    plan: checked.plan,
    registry,
    catalog,
    grants,
    targets: policyTargets,
    policy,
    scopes: scopeRules(loaded, registrations),
    piiMode: piiModes(loaded, registrations),
  })
}

function scopeRules(loaded: LoadedConfig, { registry }: Registrations): ScopeRules {
  const { config } = loaded
  const sections = { tool: config.tools, resource: config.resources, prompt: config.prompts }
  const own = new Map(registry.all().map((t) => [t.definition.name, t.definition.scopes ?? []]))
  return {
    implies: new Map(Object.entries(config.auth.scopes.implies)),
    required: (kind, name) => {
      const section = sections[kind]
      const configured = Object.hasOwn(section, name) ? section[name]?.scopes : undefined
      if (configured !== undefined) return configured
      return kind === 'tool' ? (own.get(name) ?? []) : []
    },
  }
}

function piiModes(loaded: LoadedConfig, { registry }: Registrations): BoundConfig['piiMode'] {
  const { pii } = loaded.config
  const byTool = new Map<string, PiiMode>()
  for (const t of registry.all()) {
    const name = t.definition.name
    byTool.set(name, (Object.hasOwn(pii.tools, name) ? pii.tools[name] : undefined) ?? t.definition.pii ?? pii.mode)
  }
  // Most specific first: the rule that allowed this caller, then the tool, then the default.
  return (tool, fromPolicy) => (fromPolicy === 'mask' || fromPolicy === 'block' || fromPolicy === 'allow' ? fromPolicy : (byTool.get(tool) ?? pii.mode))
}

/**
 * The config bound to the built-in tools the CLI serves, from their definitions alone: no state
 * folder, workspace, keyring, database or Redis is opened or created. For `policy` and `config check`.
 * @throws ConfigError
 */
export function bindBuiltins(loaded: LoadedConfig): BoundConfig {
  const checked = checkConfig(loaded)
  const resources = detachedToolResources(loaded)
  const registrations = builtinRegistrations(loaded, builtinTools(loaded, resources))
  // The pinned upstream tools (no upstream is started or connected): the names policies and config use.
  const gateway = Gateway.detached({ loaded, log: pino({ level: 'silent' }), confirmations: resources.confirmations })
  registerBuiltins(loaded, gateway?.tools() ?? [], registrations.registry, 'upstream')
  registerUpstreamCatalog(loaded, gateway, registrations.catalog)
  return bindConfig(checked, registrations)
}
