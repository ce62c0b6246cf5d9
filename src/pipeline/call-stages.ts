import { requireScopes, type ScopeRules } from '../auth/resource-metadata.js'
import { SecurityError } from '../errors.js'
import type { CompiledPolicy } from '../policy/engine.js'
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

/**
 * Validate arguments against the tool's schema (compiled once at registration). The parsed value
 * is the one every later stage and the tool see; nothing reads the raw arguments again. A refusal
 * is an in-band tool error (MCP: input validation errors are tool execution errors).
 * Does not check: anything the schema does not say.
 */
export function validateArgs(): Stage {
  return async function validateArgsStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const tool = x.tool
    if (tool === undefined) return next()
    const parsed = tool.definition.input.safeParse(rawArgsOf(x))
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue === undefined || issue.path.length === 0 ? 'arguments' : issue.path.map(String).join('.').slice(0, 200)
      // zod's messages describe the schema, never echo the value; still, cap the length.
      const what = (issue?.message ?? 'invalid').slice(0, 200)
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
    x.audit.note({ ...auditArgs(x.args), rule: decision.rule, policy: policy.version, authz: decision.allow ? 'allow' : 'deny' })
    if (!decision.allow) {
      const why = decision.error === undefined ? '' : `: condition failed to evaluate (${decision.error})`
      throw new SecurityError('ERR_FORBIDDEN', `policy ${policy.version} denies ${principal.id} tool ${name} with these arguments (${decision.rule})${why}`)
    }
    x.audit.allow('tool.call')
    return next()
  }
}
