import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { CompiledPolicy, PolicyError, type PolicyTargets, type Target, type TraceEntry, uriPattern } from '../../src/policy/engine.js'
import { type PolicyRule, ruleSchema } from '../../src/policy/schema.js'
import type { Principal } from '../../src/principal.js'

const schema = (s: z.ZodType) => z.toJSONSchema(s, { io: 'output' }) as Record<string, unknown>

const TARGETS: PolicyTargets = {
  tools: new Map([
    [
      'query',
      schema(z.strictObject({ table: z.string(), owner: z.string(), limit: z.number().int().min(1), ratio: z.number().optional(), tags: z.array(z.string()).default([]) })),
    ],
    ['echo', schema(z.strictObject({ text: z.string() }))],
    ['other', schema(z.strictObject({}))],
  ]),
  prompts: new Map([
    ['summary', schema(z.strictObject({ topic: z.string() }))],
    ['plain', undefined],
  ]),
  resources: new Map([
    ['readme', 'file:///public/readme.md'],
    ['secret', 'file:///private/keys.txt'],
  ]),
  templates: new Map([['docs', 'docs://{id}']]),
}

const rules = (...rs: unknown[]): PolicyRule[] => rs.map((r) => ruleSchema.parse(r))
const compile = (...rs: unknown[]) => CompiledPolicy.compile(rules(...rs), TARGETS)

const who = (over: Partial<Principal> = {}): Principal => ({ id: 'key:aaaaaaaaaaaaaaaa', kind: 'api-key', name: 'n', roles: ['analyst'], ...over })
const tool = (name: string): Target => ({ kind: 'tool', name })
const res = (name: string, uri: string, action: 'read' | 'list' = 'read'): Target => ({ kind: 'resource', name, uri, action })

const ANALYSTS = [
  {
    id: 'analysts-own-rows',
    effect: 'allow',
    subjects: { roles: ['analyst'] },
    targets: { tools: ['query'] },
    when: 'args.owner == principal.id && args.limit <= 1000',
    output: { pii: 'mask' },
  },
  { id: 'restricted-tables', effect: 'deny', subjects: { roles: ['analyst'] }, targets: { tools: ['query'] }, when: 'args.table in ["users", "audit_logs"]' },
]

describe('decisions', () => {
  const policy = compile(
    ...ANALYSTS,
    { id: 'admins', effect: 'allow', subjects: { roles: ['admin'] }, targets: { tools: ['*'], prompts: ['*'], resources: [{ uri: '**' }] } },
    { id: 'public-read', effect: 'allow', subjects: '*', targets: { resources: [{ uri: 'file:///public/**', actions: ['read'] }] } },
    { id: 'public-list', effect: 'allow', subjects: '*', targets: { resources: [{ uri: 'file:///public/*', actions: ['list'] }] } },
    { id: 'no-secret', effect: 'deny', subjects: '*', targets: { resources: [{ name: 'secret' }] } },
    { id: 'ops-by-id', effect: 'allow', subjects: { principals: ['key:0000000000000001'] }, targets: { tools: ['echo'] } },
    { id: 'scoped', effect: 'allow', subjects: { scopes: ['echo:use'] }, targets: { tools: ['echo'] } },
    { id: 'tenant-acme', effect: 'allow', subjects: { tenants: ['acme'] }, targets: { tools: ['other'] } },
    { id: 'claims-dept', effect: 'allow', subjects: { claims: { dept: ['finance'], level: [3] } }, targets: { prompts: ['summary'] } },
    { id: 'prompt-topic', effect: 'deny', subjects: '*', targets: { prompts: ['summary'] }, when: 'args.topic == "salaries"' },
    { id: 'both-roles', effect: 'allow', subjects: { roles: ['a', 'b'], tenants: ['t1'] }, targets: { tools: ['other'] } },
  )
  const me = who()
  const TABLE: { name: string; principal: Principal; target: Target; args?: unknown; allow: boolean; rule: string }[] = [
    {
      name: 'own rows under the limit',
      principal: me,
      target: tool('query'),
      args: { table: 'orders', owner: me.id, limit: 1000, tags: [] },
      allow: true,
      rule: 'analysts-own-rows',
    },
    { name: 'own rows over the limit', principal: me, target: tool('query'), args: { table: 'orders', owner: me.id, limit: 1001, tags: [] }, allow: false, rule: 'default-deny' },
    { name: "someone else's rows", principal: me, target: tool('query'), args: { table: 'orders', owner: 'key:bbbb', limit: 5, tags: [] }, allow: false, rule: 'default-deny' },
    {
      name: 'restricted table: deny wins over a matching allow',
      principal: me,
      target: tool('query'),
      args: { table: 'users', owner: me.id, limit: 5, tags: [] },
      allow: false,
      rule: 'restricted-tables',
    },
    {
      name: 'admin: wildcard tools',
      principal: who({ roles: ['admin'] }),
      target: tool('query'),
      args: { table: 'x', owner: 'y', limit: 1, tags: [] },
      allow: true,
      rule: 'admins',
    },
    {
      name: 'deny binds admins too when it names them',
      principal: who({ roles: ['admin', 'analyst'] }),
      target: tool('query'),
      args: { table: 'users', owner: 'y', limit: 1, tags: [] },
      allow: false,
      rule: 'restricted-tables',
    },
    { name: 'no rule for the tool', principal: me, target: tool('echo'), args: { text: 'x' }, allow: false, rule: 'default-deny' },
    { name: 'principal by id', principal: who({ id: 'key:0000000000000001', roles: [] }), target: tool('echo'), args: { text: 'x' }, allow: true, rule: 'ops-by-id' },
    { name: 'scope', principal: who({ roles: [], scopes: ['echo:use'] }), target: tool('echo'), args: { text: 'x' }, allow: true, rule: 'scoped' },
    { name: 'tenant', principal: who({ roles: [], tenant: 'acme' }), target: tool('other'), args: {}, allow: true, rule: 'tenant-acme' },
    { name: 'other tenant', principal: who({ roles: [], tenant: 'zeta' }), target: tool('other'), args: {}, allow: false, rule: 'default-deny' },
    {
      name: 'every dimension must match: role but not tenant',
      principal: who({ roles: ['a'], tenant: 't2' }),
      target: tool('other'),
      args: {},
      allow: false,
      rule: 'default-deny',
    },
    { name: 'every dimension must match: role and tenant', principal: who({ roles: ['b'], tenant: 't1' }), target: tool('other'), args: {}, allow: true, rule: 'both-roles' },
    {
      name: 'claims: all claims match (list claim)',
      principal: who({ claims: { dept: ['hr', 'finance'], level: 3 } }),
      target: { kind: 'prompt', name: 'summary' },
      args: { topic: 'q3' },
      allow: true,
      rule: 'claims-dept',
    },
    {
      name: 'claims: one claim differs',
      principal: who({ claims: { dept: 'finance', level: 2 } }),
      target: { kind: 'prompt', name: 'summary' },
      args: { topic: 'q3' },
      allow: false,
      rule: 'default-deny',
    },
    {
      name: 'prompt deny by argument',
      principal: who({ claims: { dept: 'finance', level: 3 } }),
      target: { kind: 'prompt', name: 'summary' },
      args: { topic: 'salaries' },
      allow: false,
      rule: 'prompt-topic',
    },
    { name: 'resource by pattern: read', principal: me, target: res('readme', 'file:///public/readme.md'), allow: true, rule: 'public-read' },
    { name: 'resource by pattern: ** crosses segments', principal: me, target: res('readme', 'file:///public/a/b/c.md'), allow: true, rule: 'public-read' },
    { name: 'resource by pattern: list only within one segment', principal: me, target: res('readme', 'file:///public/a/b.md', 'list'), allow: false, rule: 'default-deny' },
    { name: 'resource list action', principal: me, target: res('readme', 'file:///public/readme.md', 'list'), allow: true, rule: 'public-list' },
    { name: 'pattern is anchored', principal: me, target: res('readme', 'file:///publicity/x'), allow: false, rule: 'default-deny' },
    { name: 'resource deny by name beats admin allow', principal: who({ roles: ['admin'] }), target: res('secret', 'file:///private/keys.txt'), allow: false, rule: 'no-secret' },
  ]
  it.each(TABLE)('$name → $allow ($rule)', ({ principal, target, args, allow, rule }) => {
    const decision = policy.decide(principal, target, args)
    expect({ allow: decision.allow, rule: decision.rule }).toStrictEqual({ allow, rule })
    expect(decision.version).toBe(policy.version)
  })

  it('an allow carries its output settings for later layers', () => {
    expect(policy.decide(me, tool('query'), { table: 'orders', owner: me.id, limit: 1, tags: [] }).output).toStrictEqual({ pii: 'mask' })
  })

  it('a condition that cannot be evaluated denies, naming the rule and the error', () => {
    const p = compile({ id: 'needs-ratio', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'args.ratio < 0.5' })
    const decision = p.decide(me, tool('query'), { table: 'x', owner: 'y', limit: 1, tags: [] })
    expect(decision).toMatchObject({ allow: false, rule: 'needs-ratio' })
    expect(decision.error).toMatch(/No such key: ratio/)
    expect(p.decide(me, tool('query'), { table: 'x', owner: 'y', limit: 1, tags: [], ratio: 0.25 }).allow).toBe(true)
  })

  it('a deny whose condition fails to evaluate still denies (fail closed)', () => {
    const p = compile(
      { id: 'all', effect: 'allow', subjects: '*', targets: { tools: ['query'] } },
      { id: 'low-ratio', effect: 'deny', subjects: '*', targets: { tools: ['query'] }, when: 'args.ratio < 0.5' },
    )
    expect(p.decide(me, tool('query'), { table: 'x', owner: 'y', limit: 1, tags: [] })).toMatchObject({ allow: false, rule: 'low-ratio' })
  })

  it('explain: the trace lists denies first, with why each rule did or did not apply', () => {
    const trace: TraceEntry[] = []
    policy.decide(me, tool('query'), { table: 'orders', owner: me.id, limit: 5, tags: [] }, trace)
    expect(trace).toStrictEqual([
      { rule: 'restricted-tables', effect: 'deny', result: 'condition-false' },
      { rule: 'analysts-own-rows', effect: 'allow', result: 'matched' },
    ])
  })

  it('reachable: for lists and early refusal, before arguments exist', () => {
    expect(policy.reachable(me, tool('query'))).toStrictEqual({ allow: true, rule: 'analysts-own-rows' })
    expect(policy.reachable(me, tool('echo'))).toStrictEqual({ allow: false, rule: 'default-deny' })
    const p = compile({ id: 'a', effect: 'allow', subjects: '*', targets: { tools: ['echo'] } }, { id: 'd', effect: 'deny', subjects: '*', targets: { tools: ['echo'] } })
    expect(p.reachable(me, tool('echo'))).toStrictEqual({ allow: false, rule: 'd' })
  })

  it('templates are listed when a rule can reach their URIs', () => {
    const p = compile({ id: 'docs', effect: 'allow', subjects: '*', targets: { resources: [{ uri: 'docs://**' }] } })
    expect(p.templateReachable(me, 'docs', 'docs://{id}')).toBe(true)
    expect(compile({ id: 'pub', effect: 'allow', subjects: '*', targets: { resources: [{ uri: 'file:///public/**' }] } }).templateReachable(me, 'docs', 'docs://{id}')).toBe(false)
  })
})

describe('load errors name the rule and the position', () => {
  const LOAD: { name: string; rule: unknown; says: RegExp }[] = [
    {
      name: 'an argument the tool does not have',
      rule: { id: 'r1', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'args.nope == 1' },
      says: /rule r1 \(#1\): when \(for tool query\): No such key: nope at line 1, column 6/,
    },
    {
      name: 'a number compared to a string',
      rule: { id: 'r2', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'args.table == 1' },
      says: /rule r2.*no such overload: string == int at line 1, column 1/,
    },
    {
      name: 'a type error on a later line',
      rule: { id: 'r3', effect: 'deny', subjects: '*', targets: { tools: ['query'] }, when: 'args.limit > 5 &&\n  args.owner > 3' },
      says: /rule r3.*at line 2, column 3/,
    },
    {
      name: 'checked against every target tool',
      rule: { id: 'r4', effect: 'allow', subjects: '*', targets: { tools: ['query', 'echo'] }, when: 'args.table == "x"' },
      says: /rule r4.*\(for tool echo\): No such key: table/,
    },
    { name: 'syntax error', rule: { id: 'r5', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'args.limit <' }, says: /rule r5.*Unexpected token/ },
    { name: 'not a boolean', rule: { id: 'r6', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'args.limit + 1' }, says: /rule r6.*of type int, not bool/ },
    {
      name: 'nested comprehension',
      rule: { id: 'r7', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'args.tags.all(a, args.tags.exists(b, a == b))' },
      says: /rule r7.*nested exists\(\) is not allowed/,
    },
    {
      name: 'regular expressions',
      rule: { id: 'r8', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: 'args.table.matches("^(a+)+$")' },
      says: /rule r8.*matches\(\) is not allowed/,
    },
    {
      name: 'an unknown tool (a typo must not silently disable a rule)',
      rule: { id: 'r9', effect: 'deny', subjects: '*', targets: { tools: ['qeury'] } },
      says: /rule r9.*no tool named "qeury"/,
    },
    { name: 'an unknown prompt', rule: { id: 'r10', effect: 'deny', subjects: '*', targets: { prompts: ['nope'] } }, says: /rule r10.*no prompt named "nope"/ },
    {
      name: 'an unknown resource name',
      rule: { id: 'r11', effect: 'deny', subjects: '*', targets: { resources: [{ name: 'nope' }] } },
      says: /rule r11.*no resource named "nope"/,
    },
    {
      name: 'a resource condition naming tool arguments',
      rule: { id: 'r12', effect: 'allow', subjects: '*', targets: { resources: [{ uri: '**' }] }, when: 'args.table == "x"' },
      says: /rule r12.*\(for resources\): No such key: table/,
    },
    {
      name: 'an oversized expression (cost bound)',
      rule: { id: 'r13', effect: 'allow', subjects: '*', targets: { tools: ['query'] }, when: Array.from({ length: 200 }, (_, i) => `args.limit != ${i}`).join(' && ') },
      says: /rule r13/,
    },
  ]
  it.each(LOAD)('$name', ({ rule, says }) => {
    expect(() => compile(rule)).toThrow(PolicyError)
    expect(() => compile(rule)).toThrow(says)
  })

  it('duplicate rule ids', () => {
    expect(() =>
      compile({ id: 'x', effect: 'allow', subjects: '*', targets: { tools: ['echo'] } }, { id: 'x', effect: 'deny', subjects: '*', targets: { tools: ['echo'] } }),
    ).toThrow(/rule x \(#2\): duplicate rule id/)
  })

  it('a wildcard target types args dynamically: a missing field denies at run time instead', () => {
    const p = compile({ id: 'w', effect: 'allow', subjects: '*', targets: { tools: ['*'] }, when: 'args.text == "hi"' })
    expect(p.decide(who(), tool('echo'), { text: 'hi' }).allow).toBe(true)
    expect(p.decide(who(), tool('other'), {})).toMatchObject({ allow: false, rule: 'w' })
  })
})

describe('uriPattern', () => {
  it.each([
    ['file:///public/**', 'file:///public/a/b', true],
    ['file:///public/*', 'file:///public/a/b', false],
    ['file:///public/*.md', 'file:///public/a.md', true],
    ['file:///p.b/*', 'file:///pXb/a', false],
    ['docs://(x)+/*', 'docs://(x)+/a', true],
    ['docs://a', 'docs://a\n', false],
  ])('%s ~ %j → %s', (glob, uri, match) => {
    expect(uriPattern(glob).test(uri)).toBe(match)
  })
})

// Small alphabets so that generated rules, principals and calls overlap.
const roleA = fc.constantFrom('analyst', 'admin', 'ops')
const toolA = fc.constantFrom('query', 'echo', 'other', '*')
const conditionA = fc.constantFrom(undefined, 'args.limit <= 10', 'args.table == "users"', 'principal.tenant == "acme"', 'args.owner == principal.id')
const ruleA = fc.record({ effect: fc.constantFrom('allow', 'deny'), roles: fc.array(roleA, { minLength: 1, maxLength: 2 }), tool: toolA, when: conditionA })
const callA = fc.record({
  roles: fc.array(roleA, { maxLength: 2 }),
  tenant: fc.constantFrom(undefined, 'acme'),
  args: fc.record({
    table: fc.constantFrom('users', 'orders'),
    owner: fc.constantFrom('key:aaaaaaaaaaaaaaaa', 'key:b'),
    limit: fc.integer({ min: 1, max: 20 }),
    tags: fc.constant([]),
  }),
})

function build(generated: { effect: string; roles: string[]; tool: string; when: string | undefined }[], offset = 0): PolicyRule[] {
  return generated.map((g, i) => {
    const tool = g.tool === '*' || g.tool === 'query' ? g.tool : 'query'
    // Conditions are written for query's arguments; other tools get unconditional rules.
    return ruleSchema.parse({
      id: `r${i + offset}`,
      effect: g.effect,
      subjects: { roles: g.roles },
      targets: { tools: [tool] },
      ...(g.when === undefined || tool === '*' ? {} : { when: g.when }),
    })
  })
}

describe('properties', () => {
  const principalOf = (c: { roles: string[]; tenant: string | undefined }): Principal => who({ roles: c.roles, ...(c.tenant === undefined ? {} : { tenant: c.tenant }) })

  it('a matching deny is never overridden, and no match denies', () => {
    fc.assert(
      fc.property(fc.array(ruleA, { maxLength: 8 }), callA, (generated, call) => {
        const rs = build(generated)
        const p = CompiledPolicy.compile(rs, TARGETS)
        const trace: TraceEntry[] = []
        const decision = p.decide(principalOf(call), tool('query'), call.args, trace)
        const matched = trace.filter((t) => t.result === 'matched')
        if (matched.some((t) => t.effect === 'deny')) expect(decision.allow).toBe(false)
        if (matched.length === 0) expect(decision).toMatchObject({ allow: false, rule: 'default-deny' })
        if (decision.allow) expect(matched.some((t) => t.effect === 'allow' && t.rule === decision.rule)).toBe(true)
      }),
      { numRuns: 500 },
    )
  })

  it('adding an allow rule never turns an allow into a deny', () => {
    fc.assert(
      fc.property(fc.array(ruleA, { maxLength: 8 }), ruleA, fc.nat(), callA, (generated, extra, at, call) => {
        const before = CompiledPolicy.compile(build(generated), TARGETS).decide(principalOf(call), tool('query'), call.args)
        const withExtra = [...generated]
        withExtra.splice(at % (generated.length + 1), 0, { ...extra, effect: 'allow' })
        const after = CompiledPolicy.compile(build(withExtra), TARGETS).decide(principalOf(call), tool('query'), call.args)
        if (before.allow) expect(after.allow).toBe(true)
      }),
      { numRuns: 500 },
    )
  })

  it('reachable never hides a tool that some arguments would allow', () => {
    fc.assert(
      fc.property(fc.array(ruleA, { maxLength: 8 }), callA, (generated, call) => {
        const p = CompiledPolicy.compile(build(generated), TARGETS)
        if (p.decide(principalOf(call), tool('query'), call.args).allow) expect(p.reachable(principalOf(call), tool('query')).allow).toBe(true)
      }),
      { numRuns: 500 },
    )
  })
})

describe('the per-target rule index', () => {
  // Rules naming any mix of tools, or every tool; conditions only where every named tool has the fields.
  const indexedRuleA = fc.record({
    effect: fc.constantFrom('allow', 'deny'),
    roles: fc.array(roleA, { minLength: 1, maxLength: 2 }),
    tools: fc.oneof(fc.constant<string[]>(['*']), fc.subarray(['query', 'echo', 'other'], { minLength: 1 })),
    when: fc.constantFrom(undefined, 'principal.tenant == "acme"', 'args.limit <= 10'),
  })
  const buildIndexed = (generated: { effect: string; roles: string[]; tools: readonly string[]; when: string | undefined }[]): PolicyRule[] =>
    generated.map((g, i) =>
      ruleSchema.parse({
        id: `r${i}`,
        effect: g.effect,
        subjects: { roles: g.roles },
        targets: { tools: g.tools },
        // An args condition only on rules for query alone (the other tools have no such field).
        ...(g.when === undefined || (g.when.startsWith('args') && (g.tools.length !== 1 || g.tools[0] !== 'query')) ? {} : { when: g.when }),
      }),
    )

  it('decides and lists exactly as every rule read in order would (the rule alone says whether it applies)', () => {
    fc.assert(
      fc.property(fc.array(indexedRuleA, { maxLength: 10 }), callA, fc.constantFrom('query', 'echo', 'other', 'ghost'), (generated, call, name) => {
        const rs = buildIndexed(generated)
        const p = CompiledPolicy.compile(rs, TARGETS)
        const principal = who({ roles: call.roles, ...(call.tenant === undefined ? {} : { tenant: call.tenant }) })
        const args = name === 'query' ? call.args : {}
        // The reference: each rule compiled alone, read in order, denies first.
        const applies = rs.map((r) => {
          const alone = CompiledPolicy.compile([r], TARGETS).decide(principal, tool(name), args)
          return alone.rule === r.id
        })
        const deny = rs.findIndex((r, i) => r.effect === 'deny' && applies[i])
        const allow = rs.findIndex((r, i) => r.effect === 'allow' && applies[i])
        const expected = deny >= 0 ? { allow: false, rule: rs[deny]?.id } : allow >= 0 ? { allow: true, rule: rs[allow]?.id } : { allow: false, rule: 'default-deny' }
        expect(p.decide(principal, tool(name), args)).toMatchObject(expected)
        // reachable: some allow covers it for this principal and no unconditional deny does.
        const covers = (r: PolicyRule) =>
          (r.targets.tools ?? []).some((t) => t === '*' || t === name) && r.subjects !== '*' && (r.subjects.roles ?? []).some((x) => principal.roles.includes(x))
        const blocked = rs.find((r) => r.effect === 'deny' && r.when === undefined && covers(r))
        const granted = rs.find((r) => r.effect === 'allow' && covers(r))
        expect(p.reachable(principal, tool(name))).toEqual(
          blocked !== undefined ? { allow: false, rule: blocked.id } : granted === undefined ? { allow: false, rule: 'default-deny' } : { allow: true, rule: granted.id },
        )
      }),
      { numRuns: 1000 },
    )
  })
})
