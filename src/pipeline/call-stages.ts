import { z } from 'zod'
import { requireScopes, type ScopeRules } from '../auth/resource-metadata.js'
import { SecurityError } from '../errors.js'
import type { CompiledPolicy } from '../policy/engine.js'
import { decisionPrincipal } from '../policy/replay.js'
import { auditArgs } from '../protect/redact.js'
import type { ToolRegistry } from '../tools/registry.js'
import { type Exchange, policyOf, rpcParamsOf, type Stage } from './exchange.js'

/** The arguments a `tools/call` carries (the message stage checked they are an object, if present). */
function rawArgsOf(x: Exchange): unknown {
  return rpcParamsOf(x.message)?.arguments ?? {}
}

/**
 * `tools/call` of a registered tool, or a not-found refusal (MCP 2026-07-28: -32602).
 * Does not check: whether the caller may use it (the next stage does).
 */
export function resolveTool(registry: ToolRegistry): Stage {
  return async function resolveToolStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    if (x.method !== 'tools/call') return next()
    const name = rpcParamsOf(x.message)?.name
    const tool = typeof name === 'string' ? registry.get(name) : undefined
    if (tool === undefined) throw new SecurityError('ERR_TOOL_NOT_FOUND', `no tool named ${JSON.stringify(String(name).slice(0, 128))}`)
    if (tool.definition.auditFields !== undefined) x.audit.note(tool.definition.auditFields)
    x.tool = tool
    return next()
  }
}

/**
 * May this principal call this tool at all (some allow rule covers it, no unconditional deny), and
 * does its token hold the scopes the tool needs (403 `insufficient_scope`)? Runs before validation,
 * so a caller who may not use a tool learns nothing about its schema.
 * Does not check: arguments (the argument stage does, after validation).
 */
export function authorizeTool(current: () => CompiledPolicy, scopes: ScopeRules): Stage {
  return async function authorizeToolStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const tool = x.tool
    if (tool === undefined) return next()
    const principal = x.principal
    if (principal === undefined) throw new SecurityError('ERR_INTERNAL', 'authorize stage reached unauthenticated')
    const name = tool.definition.name
    const policy = policyOf(x, current)
    const decision = policy.reachable(principal, { kind: 'tool', name })
    x.audit.note({ rule: decision.rule, policy: policy.version })
    if (!decision.allow) throw new SecurityError('ERR_FORBIDDEN', `policy ${policy.version} denies ${principal.id} tool ${name} (${decision.rule})`)
    requireScopes(principal, scopes.required('tool', name), scopes.implies, `tool ${name}`)
    return next()
  }
}

const bound = (v: unknown, unit: unknown): string => `${String(v)}${unit === 'string' ? ' characters' : unit === 'array' || unit === 'set' ? ' items' : ''}`

/**
 * A validation issue in bastion's words: the schema author's own message (a refinement's, or one
 * given to a check) as written, zod's default messages replaced by ours, so that no library text
 * reaches the wire. Neither ever holds the refused value.
 */
function describeIssue(issue: z.core.$ZodIssue): string {
  // zod's default message for this issue starts like this one only if nobody replaced it.
  const locale = z.config().localeError
  const fallback = locale?.({ ...issue, input: undefined } as Parameters<NonNullable<typeof locale>>[0])
  const zodsOwn = typeof fallback === 'string' ? fallback : fallback?.message
  if (zodsOwn === undefined || zodsOwn.split(':')[0] !== issue.message.split(':')[0]) return issue.message
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected}`
    case 'too_big':
      return `at most ${bound(issue.maximum, issue.origin)}`
    case 'too_small':
      return `at least ${bound(issue.minimum, issue.origin)}`
    case 'invalid_format':
      return `not a valid ${issue.format}`
    case 'not_multiple_of':
      return `not a multiple of ${String(issue.divisor)}`
    case 'unrecognized_keys':
      return issue.keys.length === 1 ? 'an unknown key' : `${issue.keys.length} unknown keys`
    case 'invalid_value':
      return 'not one of the allowed values'
    case 'invalid_union':
      return 'matches none of the allowed forms'
    default:
      return 'invalid'
  }
}

/**
 * Validate arguments against the tool's schema (compiled once at registration). The parsed value
 * is the one every later stage and the tool see; nothing reads the raw arguments again. A refusal
 * is an in-band tool error (MCP: input validation errors are tool execution errors). A blocked
 * tool is refused first, in-band too.
 * Does not check: anything the schema does not say.
 */
export function validateArgs(): Stage {
  return async function validateArgsStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const tool = x.tool
    if (tool === undefined) return next()
    // A blocked tool (its upstream definition drifted) is refused before its schema is used.
    const blocked = tool.definition.blocked?.()
    if (blocked !== undefined) throw blocked
    const parsed = tool.definition.input.safeParse(rawArgsOf(x))
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue === undefined || issue.path.length === 0 ? 'arguments' : issue.path.map(String).join('.').slice(0, 200)
      const what = issue === undefined ? 'invalid' : describeIssue(issue).slice(0, 200)
      throw new SecurityError('ERR_VALIDATION', `invalid arguments for ${tool.definition.name}: ${where}: ${what}`, { expose: `${where}: ${what}` })
    }
    x.args = parsed.data
    return next()
  }
}

/**
 * The full decision on the validated arguments: exactly the object the tool will receive. The
 * audit line gets the deciding rule, the policy version and the arguments (redacted), enough to
 * replay the decision against another policy.
 * Does not check: anything the rules do not say.
 */
export function authorizeArgs(current: () => CompiledPolicy): Stage {
  return async function authorizeArgsStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const tool = x.tool
    const principal = x.principal
    if (tool === undefined) return next()
    if (principal === undefined) throw new SecurityError('ERR_INTERNAL', 'argument policy reached unauthenticated')
    const name = tool.definition.name
    const policy = policyOf(x, current)
    const decision = policy.decide(principal, { kind: 'tool', name }, x.args)
    x.decision = decision
    x.audit.note({ ...auditArgs(x.args), ...decisionPrincipal(principal), rule: decision.rule, policy: policy.version, authz: decision.allow ? 'allow' : 'deny' })
    if (!decision.allow) {
      const why = decision.error === undefined ? '' : `: condition failed to evaluate (${decision.error})`
      throw new SecurityError('ERR_FORBIDDEN', `policy ${policy.version} denies ${principal.id} tool ${name} with these arguments (${decision.rule})${why}`)
    }
    x.audit.allow('tool.call')
    return next()
  }
}
