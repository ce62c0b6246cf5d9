import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CompiledPolicy } from '../../src/policy/engine.js'
import { ALL, type RbacPolicy, rbacRules, type TargetKind, targetKey } from '../../src/policy/rbac.js'
import type { Principal } from '../../src/principal.js'

/** Role permissions decided the only way bastion decides: as rules of the policy engine. */
function decide(p: RbacPolicy, principal: Principal, kind: TargetKind, name: string): { allow: boolean; rule: string } {
  const names = (k: string) => [...p.targets.keys()].filter((t) => t.startsWith(`${k}:`)).map((t) => t.slice(k.length + 1))
  const engine = CompiledPolicy.compile(rbacRules(p), {
    tools: new Map(names('tool').map((n) => [n, {}])),
    prompts: new Map(names('prompt').map((n) => [n, undefined])),
    resources: new Map(names('resource').map((n) => [n, `test://${n}`])),
    templates: new Map(),
  })
  const target = kind === 'resource' ? { kind, name, uri: `test://${name}`, action: 'read' as const } : { kind, name }
  const { allow, rule } = engine.decide(principal, target, {})
  return { allow, rule }
}

function decideTool(p: RbacPolicy, principal: Principal, name: string): { allow: boolean; rule: string } {
  return decide(p, principal, 'tool', name)
}

function policy(roles: Record<string, readonly string[]>, targets: Record<string, readonly string[]>): RbacPolicy {
  return {
    roles: new Map(Object.entries(roles).map(([name, permissions]) => [name, new Set(permissions)])),
    targets: new Map(Object.entries(targets)),
  }
}

const who = (...roles: string[]): Principal => ({ id: 'key:0123456789abcdef', kind: 'api-key', name: 'test', roles })

const POLICY = policy(
  {
    admin: [ALL],
    reader: ['files:read'],
    writer: ['files:write'],
    filesAdmin: ['files:admin'],
    ops: ['files:read', 'sql:query'],
    empty: [],
    prefixy: ['files:*'],
  },
  {
    'tool:read_file': ['files:read'],
    'tool:write_file': ['files:write', 'files:admin'],
    'tool:query': ['sql:query'],
    'tool:locked': [],
    'resource:doc': ['files:read'],
    'prompt:p': ['prompts:use'],
  },
)

describe('targetKey', () => {
  it('prefixes the kind', () => {
    expect(targetKey('tool', 'read_file')).toBe('tool:read_file')
    expect(targetKey('resource', 'a:b')).toBe('resource:a:b')
  })
})

describe('decide', () => {
  const TABLE: ReadonlyArray<{ name: string; roles: string[]; kind?: TargetKind; target: string; allow: boolean; rule: string }> = [
    { name: 'wildcard allows a tool with a rule', roles: ['admin'], target: 'read_file', allow: true, rule: 'role:admin/*' },
    { name: 'wildcard allows a tool without a rule', roles: ['admin'], target: 'mystery', allow: true, rule: 'role:admin/*' },
    { name: 'wildcard allows a tool with an empty rule', roles: ['admin'], target: 'locked', allow: true, rule: 'role:admin/*' },
    { name: 'matching permission', roles: ['reader'], target: 'read_file', allow: true, rule: 'role:reader/files:read' },
    { name: 'any-of: first permission', roles: ['writer'], target: 'write_file', allow: true, rule: 'role:writer/files:write' },
    { name: 'any-of: second permission', roles: ['filesAdmin'], target: 'write_file', allow: true, rule: 'role:filesAdmin/files:admin' },
    { name: 'role with several permissions', roles: ['ops'], target: 'query', allow: true, rule: 'role:ops/sql:query' },
    { name: 'permission for another tool', roles: ['reader'], target: 'write_file', allow: false, rule: 'default-deny' },
    { name: 'tool without a rule, non-wildcard role', roles: ['ops'], target: 'mystery', allow: false, rule: 'default-deny' },
    { name: 'tool with an empty rule, non-wildcard role', roles: ['ops'], target: 'locked', allow: false, rule: 'default-deny' },
    { name: 'no roles', roles: [], target: 'read_file', allow: false, rule: 'default-deny' },
    { name: 'unknown role grants nothing', roles: ['ghost'], target: 'read_file', allow: false, rule: 'default-deny' },
    { name: 'unknown role named like a permission', roles: ['files:read'], target: 'read_file', allow: false, rule: 'default-deny' },
    { name: 'unknown role named "*"', roles: ['*'], target: 'read_file', allow: false, rule: 'default-deny' },
    { name: 'unknown role does not block a known one', roles: ['ghost', 'reader'], target: 'read_file', allow: true, rule: 'role:reader/files:read' },
    { name: 'role with no permissions', roles: ['empty'], target: 'read_file', allow: false, rule: 'default-deny' },
    { name: 'a permission ending in * is not a wildcard', roles: ['prefixy'], target: 'read_file', allow: false, rule: 'default-deny' },
    { name: 'tool names are case-sensitive', roles: ['reader'], target: 'Read_File', allow: false, rule: 'default-deny' },
    { name: 'prototype-named tool', roles: ['reader'], target: '__proto__', allow: false, rule: 'default-deny' },
    { name: 'constructor-named tool', roles: ['ops'], target: 'constructor', allow: false, rule: 'default-deny' },
    { name: 'first granting role decides', roles: ['admin', 'reader'], target: 'read_file', allow: true, rule: 'role:admin/*' },
    { name: 'resource rule', roles: ['reader'], kind: 'resource', target: 'doc', allow: true, rule: 'role:reader/files:read' },
    { name: 'a resource rule does not cover a tool of the same name', roles: ['reader'], kind: 'tool', target: 'doc', allow: false, rule: 'default-deny' },
    { name: 'a tool rule does not cover a resource of the same name', roles: ['reader'], kind: 'resource', target: 'read_file', allow: false, rule: 'default-deny' },
    { name: 'prompt needs its own permission', roles: ['ops'], kind: 'prompt', target: 'p', allow: false, rule: 'default-deny' },
    { name: 'wildcard covers prompts', roles: ['admin'], kind: 'prompt', target: 'p', allow: true, rule: 'role:admin/*' },
  ]

  it.each(TABLE)('$name → $allow ($rule)', ({ roles, kind, target, allow, rule }) => {
    expect(decide(POLICY, who(...roles), kind ?? 'tool', target)).toStrictEqual({ allow, rule })
    if (kind === undefined || kind === 'tool') expect(decideTool(POLICY, who(...roles), target)).toStrictEqual({ allow, rule })
  })

  it('an empty policy denies everyone', () => {
    expect(decideTool(policy({}, {}), who('admin'), 'read_file')).toStrictEqual({ allow: false, rule: 'default-deny' })
  })
})

// Small alphabets so generated principals and policies actually overlap.
const roleName = fc.constantFrom('admin', 'reader', 'writer', 'ops', 'ghost', '*', 'files:read')
const permission = fc.constantFrom(ALL, 'files:read', 'files:write', 'sql:query', 'files:*', 'admin')
const toolName = fc.constantFrom('read_file', 'write_file', 'query', 'mystery', '__proto__')
const kind = fc.constantFrom<TargetKind>('tool', 'resource', 'prompt')
const arbPolicy = fc
  .record({
    roles: fc.dictionary(roleName, fc.array(permission, { maxLength: 4 }), { maxKeys: 5, noNullPrototype: true }),
    targets: fc.array(fc.tuple(kind, toolName, fc.array(permission, { maxLength: 3 })), { maxLength: 8 }),
  })
  .map(({ roles, targets }) => policy(roles, Object.fromEntries(targets.map(([k, n, p]) => [targetKey(k, n), p]))))

/** Reference model: allow iff some defined role holds `*` or one of the target's permissions. */
function reference(p: RbacPolicy, roles: readonly string[], k: TargetKind, name: string): boolean {
  const required = p.targets.get(targetKey(k, name)) ?? []
  return roles.some((r) => {
    const granted = p.roles.get(r)
    return granted !== undefined && (granted.has(ALL) || required.some((perm) => granted.has(perm)))
  })
}

describe('decide properties', () => {
  it('adding a role to a principal never turns allow into deny', () => {
    fc.assert(
      fc.property(arbPolicy, fc.array(roleName, { maxLength: 4 }), roleName, fc.nat(), kind, toolName, (p, roles, extra, at, k, name) => {
        const before = decide(p, who(...roles), k, name)
        const withExtra = [...roles]
        withExtra.splice(at % (roles.length + 1), 0, extra)
        const after = decide(p, who(...withExtra), k, name)
        if (before.allow) expect(after.allow).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })

  it('agrees with the reference model, and names a rule that really grants', () => {
    fc.assert(
      fc.property(arbPolicy, fc.array(roleName, { maxLength: 4 }), kind, toolName, (p, roles, k, name) => {
        const decision = decide(p, who(...roles), k, name)
        expect(decision.allow).toBe(reference(p, roles, k, name))
        if (!decision.allow) {
          expect(decision.rule).toBe('default-deny')
          return
        }
        const match = /^role:(.+)\/(.+)$/.exec(decision.rule)
        const [, role = '', perm = ''] = match ?? []
        expect(roles).toContain(role)
        expect(p.roles.get(role)?.has(perm)).toBe(true)
        expect(perm === ALL || (p.targets.get(targetKey(k, name)) ?? []).includes(perm)).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })
})
