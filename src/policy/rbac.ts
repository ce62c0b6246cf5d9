import type { Principal } from '../pipeline/context.js'

/** What a rule protects: a tool, a resource or a prompt, by registered name. */
export type TargetKind = 'tool' | 'resource' | 'prompt'

/** Roles → permissions, and targets (`tool:<name>`, `resource:<name>`, `prompt:<name>`) → the permissions that may use them (any of). */
export interface RbacPolicy {
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>
  readonly targets: ReadonlyMap<string, readonly string[]>
}

export function targetKey(kind: TargetKind, name: string): string {
  return `${kind}:${name}`
}

export interface RbacDecision {
  readonly allow: boolean
  /** Which rule decided: `role:<r>/<perm>`, or `default-deny`. */
  readonly rule: string
}

/** The wildcard permission: a role holding it may call every tool, including tools with no rule. */
export const ALL = '*'

/**
 * May this principal call this tool? Pure: no I/O, no clock.
 * Deny by default: a tool with no rule is callable only by a role holding `*`; a role the policy
 * does not define grants nothing.
 * Does not check: arguments (the policy engine does), whether the tool exists (the registry does).
 */
export function decideTool(policy: RbacPolicy, principal: Principal, tool: string): RbacDecision {
  return decide(policy, principal, 'tool', tool)
}

/** {@link decideTool} for any target kind. Pure. */
export function decide(policy: RbacPolicy, principal: Principal, kind: TargetKind, name: string): RbacDecision {
  const required = policy.targets.get(targetKey(kind, name))
  for (const role of principal.roles) {
    const granted = policy.roles.get(role)
    if (granted === undefined) continue
    if (granted.has(ALL)) return { allow: true, rule: `role:${role}/${ALL}` }
    if (required === undefined) continue
    for (const permission of required) {
      if (granted.has(permission)) return { allow: true, rule: `role:${role}/${permission}` }
    }
  }
  return { allow: false, rule: 'default-deny' }
}
