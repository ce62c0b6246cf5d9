import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { CompiledPolicy, type PolicyTargets } from '../../src/policy/engine.js'
import { decisionPrincipal, replay } from '../../src/policy/replay.js'
import { ruleSchema } from '../../src/policy/schema.js'
import type { Principal } from '../../src/principal.js'
import { redact } from '../../src/protect/redact.js'

const TARGETS: PolicyTargets = {
  tools: new Map([['query', z.toJSONSchema(z.strictObject({ table: z.string() }), { io: 'output' }) as Record<string, unknown>]]),
  prompts: new Map(),
  resources: new Map(),
  templates: new Map(),
}
const compile = (...rs: unknown[]) =>
  CompiledPolicy.compile(
    rs.map((r) => ruleSchema.parse(r)),
    TARGETS,
  )

const ALICE: Principal = { id: 'jwt:alice', kind: 'jwt', name: 'Alice', roles: ['analyst'], scopes: ['sql'], tenant: 'acme', claims: { dept: 'finance', level: 3 } }

/** The decision line the server writes for this principal (the fields the exchange and the decision stage add). */
function line(p: Principal, authz: 'allow' | 'deny', extra: Record<string, unknown> = {}): Record<string, unknown> {
  const fields = {
    ...decisionPrincipal(p),
    event: 'tool.call',
    requestId: 'r1',
    principal: p.id,
    roles: p.roles,
    tenant: p.tenant,
    scopes: p.scopes,
    method: 'tools/call',
    tool: 'query',
    args: { table: 'sales' },
    rule: 'recorded',
    policy: 'p0',
    authz,
    ...extra,
  }
  // What the audit log stores: redacted, undefined fields dropped.
  return JSON.parse(JSON.stringify(redact(fields))) as Record<string, unknown>
}

const byName = { id: 'alice-only', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'principal.name == "Alice"' }
const byClaim = { id: 'finance', effect: 'allow', subjects: { claims: { dept: ['finance'] } }, targets: { tools: ['query'] } }
const byClaimInCel = { id: 'senior', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'principal.claims.level >= 3 && principal.kind == "jwt"' }

describe('replay rebuilds the principal from its decision line', () => {
  it.each([
    { name: 'principal.name in a condition', rule: byName },
    { name: 'a claim as a subject', rule: byClaim },
    { name: 'a claim and the kind in a condition', rule: byClaimInCel },
  ])('$name: the recorded allow is allowed again (no change)', ({ rule }) => {
    const report = replay([{ where: 'a:1', record: line(ALICE, 'allow') }], compile(rule))
    expect(report).toMatchObject({ replayed: 1, skipped: 0, changes: [], incomplete: [] })
  })

  it('another principal whose name does not match would be denied: a change', () => {
    const bob: Principal = { ...ALICE, id: 'jwt:bob', name: 'Bob', claims: { dept: 'sales' } }
    const report = replay([{ where: 'a:2', record: line(bob, 'allow') }], compile(byName))
    expect(report.changes).toStrictEqual([
      {
        where: 'a:2',
        requestId: 'r1',
        ts: undefined,
        principal: 'jwt:bob',
        target: 'tool query',
        before: { allow: true, rule: 'recorded', policy: 'p0' },
        after: { allow: false, rule: 'default-deny' },
      },
    ])
  })

  it('an API key line (no claims recorded, because it has none) replays a claim rule as a denial, not as incomplete', () => {
    const key: Principal = { id: 'key:0123456789abcdef', kind: 'api-key', name: 'ci', roles: ['analyst'] }
    const report = replay([{ where: 'a:3', record: line(key, 'deny') }], compile(byClaim))
    expect(report).toMatchObject({ replayed: 1, changes: [], incomplete: [] })
  })

  it.each([
    { name: 'a line written before names and claims were recorded', strip: ['principalName', 'principalKind', 'claims'], rule: byName, missing: ['principal.name (not recorded)'] },
    { name: 'the same line, a claim rule', strip: ['principalName', 'principalKind', 'claims'], rule: byClaim, missing: ['principal.claims (not recorded)'] },
    {
      name: 'the same line, a condition on claims and kind',
      strip: ['principalName', 'principalKind', 'claims'],
      rule: byClaimInCel,
      missing: ['principal.kind (not recorded)', 'principal.claims (not recorded)'],
    },
  ])('$name: reported as incomplete, not decided', ({ strip, rule, missing }) => {
    const record = line(ALICE, 'allow')
    for (const k of strip) delete record[k]
    const report = replay([{ where: 'old:1', record }], compile(rule))
    expect(report.replayed).toBe(0)
    expect(report.changes).toStrictEqual([])
    expect(report.incomplete).toStrictEqual([{ where: 'old:1', requestId: 'r1', ts: undefined, principal: 'jwt:alice', target: 'tool query', missing, rules: [rule.id] }])
  })

  it('an old line still replays under rules that read only what it holds (roles, arguments)', () => {
    const record = line(ALICE, 'allow')
    for (const k of ['principalName', 'principalKind', 'claims']) delete record[k]
    const rule = { id: 'analysts', effect: 'allow', subjects: { roles: ['analyst'] }, targets: { tools: ['query'] }, when: 'args.table != "users"' }
    expect(replay([{ where: 'old:2', record }], compile(rule))).toMatchObject({ replayed: 1, changes: [], incomplete: [] })
  })

  it('a claim the redactor replaced, and claims omitted as too large, are reported', () => {
    const secretive: Principal = { ...ALICE, claims: { dept: 'finance', password: 'hunter2' } }
    const redacted = line(secretive, 'allow')
    expect(JSON.stringify(redacted)).not.toContain('hunter2')
    const whole = { id: 'whole', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'principal.claims.dept == "finance"' }
    expect(replay([{ where: 'r:1', record: redacted }], compile(whole)).incomplete[0]?.missing).toStrictEqual(['principal.claims (redacted)'])
    const big = line({ ...ALICE, claims: { blob: 'x'.repeat(5000) } }, 'allow')
    expect(big).toMatchObject({ claimsOmitted: 'over 4096 bytes' })
    expect(big).not.toHaveProperty('claims')
    expect(replay([{ where: 'r:2', record: big }], compile(whole)).incomplete[0]?.missing).toStrictEqual(['principal.claims (omitted as too large)'])
  })

  it('a rule whose subject does not match reads only its subject: its condition fields do not count', () => {
    const record = line(ALICE, 'allow')
    for (const k of ['principalName', 'principalKind', 'claims']) delete record[k]
    const others = { id: 'admins-by-name', effect: 'allow', subjects: { roles: ['admin'] }, targets: { tools: ['query'] }, when: 'principal.name == "root"' }
    const analysts = { id: 'analysts', effect: 'allow', subjects: { roles: ['analyst'] }, targets: { tools: ['query'] } }
    expect(replay([{ where: 'old:3', record }], compile(others, analysts))).toMatchObject({ replayed: 1, incomplete: [] })
  })

  it('a field read by index counts too', () => {
    const record = line(ALICE, 'allow')
    delete record.principalName
    const whole = { id: 'whole', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'principal["name"] == "Alice"' }
    expect(replay([{ where: 'w:1', record }], compile(whole)).incomplete[0]?.missing).toStrictEqual(['principal.name (not recorded)'])
  })
})
