import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { bindBuiltins } from '../../src/compose/bind.js'
import { describeUnusedPermission, ENDPOINT_PERMISSIONS, unusedPermissions } from '../../src/compose/unused-permissions.js'
import { validateConfig } from '../../src/config/load.js'
import type { BastionConfigInput } from '../../src/config/schema.js'
import type { RbacPolicy } from '../../src/policy/rbac.js'

const grants = (roles: Record<string, string[]>, targets: Record<string, string[]>): RbacPolicy => ({
  roles: new Map(Object.entries(roles).map(([r, ps]) => [r, new Set(ps)])),
  targets: new Map(Object.entries(targets)),
})

describe('unusedPermissions: role permissions that open nothing', () => {
  it.each([
    { name: 'a typo', roles: { viewer: ['db:read'] }, targets: { 'tool:query': ['sql:query'] }, unused: [['viewer', 'db:read']] },
    { name: 'the wildcard', roles: { admin: ['*'] }, targets: {}, unused: [] },
    { name: 'a permission a tool requires', roles: { analyst: ['sql:query'] }, targets: { 'tool:query': ['sql:query'] }, unused: [] },
    { name: 'a resource or prompt permission', roles: { r: ['docs:read', 'p:get'] }, targets: { 'resource:docs': ['docs:read'], 'prompt:p': ['p:get'] }, unused: [] },
    { name: 'an endpoint permission (metrics)', roles: { ops: ['metrics:read'] }, targets: {}, unused: [] },
    { name: 'one bad among good', roles: { mixed: ['sql:query', 'sql:querry'] }, targets: { 'tool:query': ['sql:query'] }, unused: [['mixed', 'sql:querry']] },
  ])('$name', ({ roles, targets, unused }) => {
    expect(unusedPermissions(grants(roles, targets)).map((u) => [u.role, u.permission])).toStrictEqual(unused)
  })

  it('lists the permissions in use, sorted, endpoints included', () => {
    const [u] = unusedPermissions(grants({ viewer: ['db:read'] }, { 'tool:b': ['z:z'], 'tool:a': ['a:a', 'z:z'] }))
    expect(u?.known).toStrictEqual(['a:a', ...ENDPOINT_PERMISSIONS, 'z:z'].sort())
    expect(u === undefined ? '' : describeUnusedPermission(u)).toBe(
      `roles.viewer: permission "db:read" is required by no tool, resource or prompt, so it grants nothing (permissions in use: ${['a:a', 'console:admin', 'console:read', 'metrics:read', 'z:z'].join(', ')})`,
    )
  })

  it('against the built-in tools: the default roles hold none; viewer: [db:read] is reported (query needs sql:query); a config tools override counts', () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-unused-')))
    const bind = (config: BastionConfigInput) => bindBuiltins(validateConfig(config, 'test', dir))
    expect(unusedPermissions(bind({}).grants)).toStrictEqual([])
    const [typo] = unusedPermissions(bind({ roles: { viewer: { permissions: ['db:read'] } } }).grants)
    expect(typo).toMatchObject({ role: 'viewer', permission: 'db:read' })
    expect(typo?.known).toContain('sql:query')
    expect(unusedPermissions(bind({ roles: { viewer: { permissions: ['db:read'] } }, tools: { query: { permissions: ['db:read'] } } }).grants)).toStrictEqual([])
  })
})
