import type { Principal } from '../principal.js'
import type { TargetKind } from './engine.js'
import type { PolicyRule } from './schema.js'

export type { TargetKind } from './engine.js'

/**
 * Roles → permissions, and targets (`tool:<name>`, `resource:<name>`, `prompt:<name>`) → the
 * permissions that may use them (any of). Not a second mechanism: {@link rbacRules} turns it into
 * ordinary allow rules of the policy engine.
 */
export interface RbacPolicy {
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>
  readonly targets: ReadonlyMap<string, readonly string[]>
}

export function targetKey(kind: TargetKind, name: string): string {
  return `${kind}:${name}`
}

/** The wildcard permission: a role holding it may use every tool, resource and prompt. */
export const ALL = '*'

/**
 * One allow rule per (role, permission): `role:<role>/<permission>`, covering every target that
 * permission opens; `role:<role>/*` covers everything. Deny by default follows from the engine: a
 * target with no rule is open only to `*`, and a role the config does not define grants nothing.
 */
export function rbacRules(policy: RbacPolicy): PolicyRule[] {
  const rules: PolicyRule[] = []
  for (const [role, permissions] of policy.roles) {
    if (permissions.has(ALL)) {
      rules.push({
        id: `role:${role}/${ALL}`,
        effect: 'allow',
        subjects: { roles: [role] },
        targets: { tools: ['*'], prompts: ['*'], resources: [{ uri: '**', actions: ['read', 'list'] }] },
      })
      continue
    }
    for (const permission of permissions) {
      const tools: string[] = []
      const prompts: string[] = []
      const resources: { name: string; actions: ('read' | 'list')[] }[] = []
      for (const [key, required] of policy.targets) {
        if (!required.includes(permission)) continue
        const colon = key.indexOf(':')
        const kind = key.slice(0, colon)
        const name = key.slice(colon + 1)
        if (kind === 'tool') tools.push(name)
        else if (kind === 'prompt') prompts.push(name)
        else if (kind === 'resource') resources.push({ name, actions: ['read', 'list'] })
      }
      if (tools.length + prompts.length + resources.length === 0) continue
      rules.push({
        id: `role:${role}/${permission}`,
        effect: 'allow',
        subjects: { roles: [role] },
        targets: {
          ...(tools.length > 0 ? { tools } : {}),
          ...(prompts.length > 0 ? { prompts } : {}),
          ...(resources.length > 0 ? { resources } : {}),
        },
      })
    }
  }
  return rules
}

/** Does some role of the principal hold this permission (or `*`)? For endpoints outside MCP (`/metrics`). */
export function hasPermission(policy: RbacPolicy, principal: Principal, permission: string): boolean {
  return principal.roles.some((role) => {
    const granted = policy.roles.get(role)
    return granted !== undefined && (granted.has(ALL) || granted.has(permission))
  })
}
