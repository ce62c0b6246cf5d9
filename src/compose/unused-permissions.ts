import { ALL, type RbacPolicy } from '../policy/rbac.js'
import { CONSOLE_ADMIN, CONSOLE_READ } from '../transport/http/console-routes.js'
import { METRICS_PERMISSION } from '../transport/http/metrics-route.js'

/** Permissions that endpoints outside MCP check by name (`hasPermission`), not a registration. */
export const ENDPOINT_PERMISSIONS: readonly string[] = [METRICS_PERMISSION, CONSOLE_READ, CONSOLE_ADMIN]

/** A role permission that opens nothing. */
export interface UnusedPermission {
  readonly role: string
  readonly permission: string
  /** Every permission something requires, sorted: what the operator may have meant. */
  readonly known: readonly string[]
}

/**
 * Role permissions that no tool, resource or prompt requires and no endpoint checks: most often a
 * typo (`db:read` for `sql:query`), which grants nothing and fails closed, but silently. `*` is
 * never reported. Pure.
 * Does not check: permissions that something registered later would require.
 */
export function unusedPermissions(grants: RbacPolicy, endpoints: readonly string[] = ENDPOINT_PERMISSIONS): UnusedPermission[] {
  const known = new Set(endpoints)
  for (const required of grants.targets.values()) for (const p of required) known.add(p)
  const sorted = [...known].sort()
  const unused: UnusedPermission[] = []
  for (const [role, permissions] of grants.roles) {
    for (const permission of permissions) if (permission !== ALL && !known.has(permission)) unused.push({ role, permission, known: sorted })
  }
  return unused
}

/** The warning line for one unused permission (operator log and `config check`). */
export function describeUnusedPermission(u: UnusedPermission): string {
  return `roles.${u.role}: permission ${JSON.stringify(u.permission)} is required by no tool, resource or prompt, so it grants nothing (permissions in use: ${u.known.join(', ') || 'none'})`
}
