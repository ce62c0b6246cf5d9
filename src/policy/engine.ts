import { createHash } from 'node:crypto'
import type { Principal } from '../principal.js'
import { argsDeclaration, type Condition, ConditionError, compileCondition, type JsonSchema, principalValue, toCel } from './cel.js'
import type { PolicyRule, Subjects } from './schema.js'

export type TargetKind = 'tool' | 'resource' | 'prompt'

/** What is being done: a tool or prompt by name, a resource by name and concrete URI with an action. */
export type Target =
  | { readonly kind: 'tool'; readonly name: string }
  | { readonly kind: 'prompt'; readonly name: string }
  | { readonly kind: 'resource'; readonly name: string; readonly uri: string; readonly action: 'read' | 'list' }

export interface PolicyDecision {
  readonly allow: boolean
  /** The deciding rule id, or `default-deny`. */
  readonly rule: string
  /** Hash of the policy that decided. */
  readonly version: string
  /** The allowing rule's settings for later layers (masking, …). */
  readonly output?: Readonly<Record<string, string>>
  /** Set when a condition failed to evaluate: the call is denied (fail closed). */
  readonly error?: string
}

export interface TraceEntry {
  readonly rule: string
  readonly effect: 'allow' | 'deny'
  /** `not-evaluated`: a conditional rule when deciding without arguments ({@link CompiledPolicy.reachable}). */
  readonly result: 'matched' | 'condition-false' | 'condition-error' | 'subject-mismatch' | 'not-evaluated'
  readonly detail?: string
}

/** What the policy is compiled against: the registered tools, resources and prompts with their input schemas. */
export interface PolicyTargets {
  readonly tools: ReadonlyMap<string, JsonSchema>
  readonly prompts: ReadonlyMap<string, JsonSchema | undefined>
  /** Static resources by name → URI; templates by name → URI template. */
  readonly resources: ReadonlyMap<string, string>
  readonly templates: ReadonlyMap<string, string>
}

export class PolicyError extends Error {
  override readonly name = 'PolicyError'
}

interface ResourceMatch {
  readonly name?: string
  readonly pattern?: RegExp
  /** The pattern's text before its first wildcard, to decide whether a template may be covered. */
  readonly prefix?: string
  readonly actions: ReadonlySet<string>
}

interface CompiledRule {
  readonly id: string
  readonly effect: 'allow' | 'deny'
  readonly subject: (p: Principal) => boolean
  readonly tools: ReadonlySet<string>
  readonly prompts: ReadonlySet<string>
  readonly resources: readonly ResourceMatch[]
  /** Condition per target (`tool:<name>`, `prompt:<name>`, `resource`), each type-checked for that target; `*` for wildcard targets. */
  readonly conditions: ReadonlyMap<string, Condition>
  readonly conditional: boolean
  readonly output?: Readonly<Record<string, string>>
}

const RESOURCE_ARGS = { uri: 'string', action: 'string' }

/** `*` within a segment, `**` across segments; everything else literal. */
export function uriPattern(glob: string): RegExp {
  const parts = glob.split(/(\*\*|\*)/)
  const body = parts.map((p) => (p === '**' ? '.*' : p === '*' ? '[^/]*' : p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))).join('')
  return new RegExp(`^${body}$`, 's')
}

function compileSubject(s: Subjects): (p: Principal) => boolean {
  if (s === '*') return () => true
  const ids = s.principals === undefined ? undefined : new Set(s.principals)
  const roles = s.roles === undefined ? undefined : new Set(s.roles)
  const scopes = s.scopes === undefined ? undefined : new Set(s.scopes)
  const tenants = s.tenants === undefined ? undefined : new Set(s.tenants)
  const claims = s.claims === undefined ? undefined : Object.entries(s.claims).map(([k, v]) => [k, new Set<unknown>(v)] as const)
  return (p) => {
    if (ids !== undefined && !ids.has(p.id)) return false
    if (roles !== undefined && !p.roles.some((r) => roles.has(r))) return false
    if (scopes !== undefined && !(p.scopes ?? []).some((x) => scopes.has(x))) return false
    if (tenants !== undefined && (p.tenant === undefined || !tenants.has(p.tenant))) return false
    if (claims !== undefined) {
      for (const [name, accepted] of claims) {
        const value = p.claims !== undefined && Object.hasOwn(p.claims, name) ? p.claims[name] : undefined
        const values = Array.isArray(value) ? value : [value]
        if (!values.some((v) => accepted.has(v))) return false
      }
    }
    return true
  }
}

/**
 * A compiled, immutable policy. Decisions are pure: no I/O, no clock.
 * Every matching deny wins over every allow; among allows the first in order decides; no match is
 * `default-deny`. A condition that cannot be evaluated counts as a matching deny (fail closed).
 */
export class CompiledPolicy {
  readonly version: string
  readonly rules: readonly PolicyRule[]
  readonly #compiled: readonly CompiledRule[]
  readonly #targets: PolicyTargets
  /** The rules covering each registered tool and prompt (`tool:<name>`), in order: a decision reads only those. */
  readonly #byTarget: ReadonlyMap<string, readonly CompiledRule[]>
  /** The rules with a `*` target, for a name that is not registered (no rule can name it). */
  readonly #wild: { readonly tool: readonly CompiledRule[]; readonly prompt: readonly CompiledRule[] }

  private constructor(rules: readonly PolicyRule[], compiled: readonly CompiledRule[], targets: PolicyTargets, version: string) {
    this.rules = rules
    this.#compiled = compiled
    this.#targets = targets
    this.version = version
    // Built once per policy, in rule order, so that lists and calls cost the rules that cover the
    // target rather than every rule: tools/list is linear in tools, not tools × rules.
    const byTarget = new Map<string, CompiledRule[]>()
    const wild = { tool: [] as CompiledRule[], prompt: [] as CompiledRule[] }
    for (const name of targets.tools.keys()) byTarget.set(`tool:${name}`, [])
    for (const name of targets.prompts.keys()) byTarget.set(`prompt:${name}`, [])
    for (const rule of compiled) {
      for (const [kind, names, all] of [
        ['tool', rule.tools, targets.tools],
        ['prompt', rule.prompts, targets.prompts],
      ] as const) {
        if (names.has('*')) {
          wild[kind].push(rule)
          for (const name of all.keys()) byTarget.get(`${kind}:${name}`)?.push(rule)
        } else for (const name of names) byTarget.get(`${kind}:${name}`)?.push(rule)
      }
    }
    this.#byTarget = byTarget
    this.#wild = wild
  }

  /** The rules that may cover a target, in order (for resources: every rule; #covers decides). */
  #candidates(target: Target): readonly CompiledRule[] {
    if (target.kind === 'resource') return this.#compiled
    return this.#byTarget.get(`${target.kind}:${target.name}`) ?? this.#wild[target.kind]
  }

  /**
   * Compile rules against the registered targets: unknown target names, malformed URI patterns,
   * CEL syntax and type errors are load errors naming the rule and position.
   * @throws PolicyError
   */
  static compile(rules: readonly PolicyRule[], targets: PolicyTargets): CompiledPolicy {
    const seen = new Set<string>()
    const compiled = rules.map((rule, index): CompiledRule => {
      const where = `rule ${rule.id} (#${index + 1})`
      if (seen.has(rule.id)) throw new PolicyError(`${where}: duplicate rule id`)
      seen.add(rule.id)
      const tools = new Set(rule.targets.tools ?? [])
      const prompts = new Set(rule.targets.prompts ?? [])
      for (const t of tools) if (t !== '*' && !targets.tools.has(t)) throw new PolicyError(`${where}: targets.tools: no tool named ${JSON.stringify(t)} is registered`)
      for (const p of prompts) if (p !== '*' && !targets.prompts.has(p)) throw new PolicyError(`${where}: targets.prompts: no prompt named ${JSON.stringify(p)} is registered`)
      const resources = (rule.targets.resources ?? []).map((r): ResourceMatch => {
        if ('name' in r) {
          if (!targets.resources.has(r.name) && !targets.templates.has(r.name))
            throw new PolicyError(`${where}: targets.resources: no resource named ${JSON.stringify(r.name)} is registered`)
          return { name: r.name, actions: new Set(r.actions) }
        }
        return { pattern: uriPattern(r.uri), prefix: r.uri.split('*')[0] ?? '', actions: new Set(r.actions) }
      })
      const piiMode = rule.output?.pii
      if (piiMode !== undefined && piiMode !== 'mask' && piiMode !== 'block' && piiMode !== 'allow')
        throw new PolicyError(`${where}: output.pii: ${JSON.stringify(piiMode)} is not mask, block or allow`)
      const rows = rule.output?.rows
      if (rows !== undefined && rows !== 'own' && rows !== 'all') throw new PolicyError(`${where}: output.rows: ${JSON.stringify(rows)} is not own or all`)
      const conditions = new Map<string, Condition>()
      if (rule.when !== undefined) {
        const compile = (key: string, declaration: Parameters<typeof compileCondition>[1], what: string): void => {
          try {
            conditions.set(key, compileCondition(rule.when ?? '', declaration))
          } catch (error) {
            throw new PolicyError(`${where}: when (for ${what}): ${error instanceof ConditionError ? error.message : String(error)}`)
          }
        }
        for (const t of tools)
          compile(t === '*' ? 'tool:*' : `tool:${t}`, t === '*' ? argsDeclaration(undefined) : argsDeclaration(targets.tools.get(t)), t === '*' ? 'every tool' : `tool ${t}`)
        for (const p of prompts)
          compile(p === '*' ? 'prompt:*' : `prompt:${p}`, argsDeclaration(p === '*' ? undefined : targets.prompts.get(p)), p === '*' ? 'every prompt' : `prompt ${p}`)
        if (resources.length > 0) compile('resource', RESOURCE_ARGS, 'resources')
      }
      return {
        id: rule.id,
        effect: rule.effect,
        subject: compileSubject(rule.subjects),
        tools,
        prompts,
        resources,
        conditions,
        conditional: rule.when !== undefined,
        ...(rule.output === undefined ? {} : { output: rule.output }),
      }
    })
    const version = createHash('sha256').update(JSON.stringify(rules)).digest('hex').slice(0, 16)
    return new CompiledPolicy(rules, compiled, targets, version)
  }

  #covers(rule: CompiledRule, target: Target): boolean {
    if (target.kind === 'tool') return rule.tools.has(target.name) || rule.tools.has('*')
    if (target.kind === 'prompt') return rule.prompts.has(target.name) || rule.prompts.has('*')
    return rule.resources.some((r) => r.actions.has(target.action) && (r.name !== undefined ? r.name === target.name : (r.pattern?.test(target.uri) ?? false)))
  }

  #condition(rule: CompiledRule, target: Target): Condition | undefined {
    if (target.kind === 'resource') return rule.conditions.get('resource')
    return rule.conditions.get(`${target.kind}:${target.name}`) ?? rule.conditions.get(`${target.kind}:*`)
  }

  #schema(target: Target): unknown {
    if (target.kind === 'tool') return this.#targets.tools.get(target.name)
    if (target.kind === 'prompt') return this.#targets.prompts.get(target.name)
    return undefined
  }

  /**
   * Decide one request. `args` is the validated argument object the tool will receive (for
   * resources: the URI and action). A `trace` array, if given, receives every rule evaluated.
   */
  decide(principal: Principal, target: Target, args: unknown, trace?: TraceEntry[]): PolicyDecision {
    // The condition variables are built only if some covering rule has a condition.
    let vars: Parameters<Condition>[0] | undefined
    const variables = (): Parameters<Condition>[0] =>
      (vars ??= {
        principal: principalValue(principal),
        args: target.kind === 'resource' ? { uri: target.uri, action: target.action } : toCel(args ?? {}, this.#schema(target)),
      })
    const candidates = this.#candidates(target)
    let allow: CompiledRule | undefined
    for (const pass of ['deny', 'allow'] as const) {
      for (const rule of candidates) {
        if (rule.effect !== pass || !this.#covers(rule, target)) continue
        if (!rule.subject(principal)) {
          trace?.push({ rule: rule.id, effect: rule.effect, result: 'subject-mismatch' })
          continue
        }
        const condition = this.#condition(rule, target)
        if (condition !== undefined) {
          let holds: boolean
          try {
            holds = condition(variables())
          } catch (error) {
            const detail = error instanceof Error ? (error.message.split('\n')[0] ?? 'error') : 'error'
            trace?.push({ rule: rule.id, effect: rule.effect, result: 'condition-error', detail })
            return { allow: false, rule: rule.id, version: this.version, error: detail }
          }
          if (!holds) {
            trace?.push({ rule: rule.id, effect: rule.effect, result: 'condition-false' })
            continue
          }
        }
        trace?.push({ rule: rule.id, effect: rule.effect, result: 'matched' })
        if (pass === 'deny') return { allow: false, rule: rule.id, version: this.version }
        allow = rule
        break
      }
    }
    if (allow === undefined) return { allow: false, rule: 'default-deny', version: this.version }
    return { allow: true, rule: allow.id, version: this.version, ...(allow.output === undefined ? {} : { output: allow.output }) }
  }

  /**
   * May this principal use this target for some arguments? For lists and for refusing early,
   * before arguments are validated: some allow rule covers it, and no unconditional deny does.
   */
  reachable(principal: Principal, target: Target, trace?: TraceEntry[]): { allow: boolean; rule: string } {
    let allow: string | undefined
    for (const rule of this.#candidates(target)) {
      if (!this.#covers(rule, target)) continue
      if (!rule.subject(principal)) {
        trace?.push({ rule: rule.id, effect: rule.effect, result: 'subject-mismatch' })
        continue
      }
      trace?.push(
        rule.conditional
          ? { rule: rule.id, effect: rule.effect, result: 'not-evaluated', detail: 'its condition reads the arguments' }
          : { rule: rule.id, effect: rule.effect, result: 'matched' },
      )
      if (rule.effect === 'deny' && !rule.conditional) return { allow: false, rule: rule.id }
      if (rule.effect === 'allow') allow ??= rule.id
    }
    return allow === undefined ? { allow: false, rule: 'default-deny' } : { allow: true, rule: allow }
  }

  /** May a resource template appear in lists? Some rule by its name, or a URI pattern that can reach its URIs. */
  templateReachable(principal: Principal, name: string, uriTemplate: string): boolean {
    const fixed = uriTemplate.split('{')[0] ?? ''
    let allow = false
    for (const rule of this.#compiled) {
      if (!rule.subject(principal)) continue
      const covers = rule.resources.some(
        (r) => r.actions.has('read') && (r.name !== undefined ? r.name === name : r.prefix !== undefined && (fixed.startsWith(r.prefix) || r.prefix.startsWith(fixed))),
      )
      if (!covers) continue
      if (rule.effect === 'deny' && !rule.conditional && rule.resources.some((r) => r.name === name)) return false
      if (rule.effect === 'allow') allow = true
    }
    return allow
  }
}
