import { mkdtempSync, readdirSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { bindBuiltins, bindConfig, builtinRegistrations, checkConfig, type Registrations } from '../../src/compose/bind.js'
import { ConfigError, validateConfig } from '../../src/config/load.js'
import type { BastionConfigInput } from '../../src/config/schema.js'

const tempDir = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'bastion-bind-')))

/** A test tool, a resource and a prompt, registered without any built-in tool. */
function registrations(dir: string, config: BastionConfigInput): { checked: ReturnType<typeof checkConfig>; regs: Registrations } {
  const loaded = validateConfig(config, 'test', dir)
  const regs = builtinRegistrations(loaded, [])
  regs.registry.register({
    name: 'inline',
    description: 'x',
    input: z.strictObject({ n: z.number().int() }),
    permissions: ['inline:use'],
    scopes: ['mcp:inline'],
    pii: 'allow',
    run: async () => ({ content: [] }),
  })
  regs.catalog.addResource({ name: 'doc', uri: 'doc://one', permissions: ['docs:read'], read: async () => ({ contents: [] }) })
  regs.catalog.addPrompt({ name: 'hello', get: async () => ({ messages: [] }) })
  return { checked: checkConfig(loaded), regs }
}

function bindError(config: BastionConfigInput): string {
  try {
    const { checked, regs } = registrations(tempDir(), config)
    bindConfig(checked, regs)
  } catch (error) {
    if (error instanceof ConfigError) return error.message
    throw error
  }
  throw new Error('expected a ConfigError')
}

describe('bindConfig: config × registrations, checked once', () => {
  it.each([
    { name: 'tools naming no tool', config: { tools: { nope: {} } }, says: /: tools\.nope: no tool named "nope" is registered$/ },
    { name: 'resources naming no resource', config: { resources: { nope: {} } }, says: /: resources\.nope: no resource named "nope" is registered$/ },
    { name: 'prompts naming no prompt', config: { prompts: { nope: {} } }, says: /: prompts\.nope: no prompt named "nope" is registered$/ },
    { name: 'pii.tools naming no tool', config: { pii: { tools: { nope: 'block' } } }, says: /: pii\.tools\.nope: no tool named "nope" is registered$/ },
    { name: 'limits.tools naming no tool', config: { limits: { tools: { nope: { cost: 1 } } } }, says: /: limits\.tools\.nope: no tool named "nope" is registered$/ },
    {
      name: 'memory caps on an in-process tool',
      config: { limits: { tools: { inline: { memoryMb: 64 } } } },
      says: /: limits\.tools\.inline: memoryMb and cpuMs apply only to isolated tools$/,
    },
    {
      name: 'a rule for a tool that is not registered',
      config: { policy: { rules: [{ id: 'r', effect: 'allow', subjects: '*', targets: { tools: ['ghost'] } }] } },
      says: /^config test: policy: rule r \(#1\): targets\.tools: no tool named "ghost" is registered/,
    },
    {
      name: 'a condition on an argument of the wrong type',
      config: { policy: { rules: [{ id: 'r', effect: 'allow', subjects: '*', targets: { tools: ['inline'] }, when: 'args.n == "x"' }] } },
      says: /^config test: policy: rule r \(#1\): when \(for tool inline\): /,
    },
  ] as const)('$name', ({ config, says }) => {
    expect(bindError(config as BastionConfigInput)).toMatch(says)
  })

  it('grants: roles from config; target permissions from registrations, overridden by config', () => {
    const { checked, regs } = registrations(tempDir(), {
      roles: { reader: { permissions: ['docs:read'] }, user: { permissions: ['tools:all'] } },
      tools: { inline: { permissions: ['tools:all'] } },
    })
    const bound = bindConfig(checked, regs)
    expect(bound.grants.roles.get('reader')).toStrictEqual(new Set(['docs:read']))
    expect(bound.grants.targets.get('tool:inline')).toStrictEqual(['tools:all'])
    expect(bound.grants.targets.get('resource:doc')).toStrictEqual(['docs:read'])
    expect(bound.grants.targets.has('prompt:hello')).toBe(false)
    expect([...bound.targets.tools.keys()]).toStrictEqual(['inline'])
    const who = (role: string) => ({ id: 'p', kind: 'api-key' as const, name: 'p', roles: [role] })
    expect(bound.policy.decide(who('user'), { kind: 'tool', name: 'inline' }, { n: 1 })).toMatchObject({ allow: true, rule: 'role:user/tools:all' })
    expect(bound.policy.decide(who('reader'), { kind: 'tool', name: 'inline' }, { n: 1 })).toMatchObject({ allow: false, rule: 'default-deny' })
    expect(Object.isFrozen(bound)).toBe(true)
  })

  it('scopes and PII modes are decided at binding: config, then the tool, then the default', () => {
    const { checked, regs } = registrations(tempDir(), { tools: { inline: { scopes: ['mcp:admin'] } }, pii: { mode: 'block' } })
    const bound = bindConfig(checked, regs)
    expect(bound.scopes.required('tool', 'inline')).toStrictEqual(['mcp:admin'])
    expect(bound.scopes.required('prompt', 'hello')).toStrictEqual([])
    expect(bound.piiMode('inline', undefined)).toBe('allow')
    expect(bound.piiMode('inline', 'mask')).toBe('mask')
    expect(bound.piiMode('unknown', undefined)).toBe('block')
    const { checked: c2, regs: r2 } = registrations(tempDir(), { pii: { tools: { inline: 'mask' } } })
    expect(bindConfig(c2, r2).piiMode('inline', undefined)).toBe('mask')
  })
})

describe('checkConfig: what the config alone decides, before anything is opened', () => {
  it.each([
    {
      name: 'a configured key with an undefined role (its secret is not even read)',
      config: { auth: { keys: [{ name: 'ci', roles: ['wizard'], key: { env: 'NOT_SET_ANYWHERE' } }] } },
      says: /: auth\.keys\.0\.roles: role "wizard" is not defined under roles$/,
    },
    { name: 'limits for an undefined role', config: { limits: { roles: { ghost: { rate: '1/s' } } } }, says: /: limits\.roles\.ghost: role "ghost" is not defined under roles$/ },
    { name: 'a row cap for an undefined role', config: { sql: { maxRows: { roles: { wizard: 5 } } } }, says: /: sql\.maxRows\.roles\.wizard: not a role defined under roles$/ },
    {
      name: 'commands without the workspace',
      config: { workspace: { enabled: false }, commands: { ls: { description: 'list', executable: '/bin/ls' } } },
      says: /: commands: run_command needs the workspace/,
    },
  ] as const)('$name', ({ config, says }) => {
    expect(() => checkConfig(validateConfig(config, 'test', tempDir()))).toThrow(says)
  })
})

describe('bindBuiltins: the built-in tools, from their definitions alone', () => {
  it('knows every enabled built-in tool and creates nothing, even with Redis and a policy file configured', () => {
    const dir = tempDir()
    writeFileSync(
      join(dir, 'policy.yaml'),
      'rules:\n  - id: notes\n    effect: allow\n    subjects: "*"\n    targets: { tools: [read_file] }\n    when: args.path.startsWith("notes/")\n',
    )
    const loaded = validateConfig(
      {
        limits: { backend: 'redis', redis: { url: { env: 'NOT_SET_ANYWHERE' } } },
        policy: { file: 'policy.yaml' },
        commands: { ls: { description: 'list', executable: '/bin/ls' } },
      },
      'test',
      dir,
    )
    const bound = bindBuiltins(loaded)
    expect(bound.registry.all().map((t) => t.definition.name)).toStrictEqual([
      'delete_records',
      'get_secret',
      'list_files',
      'query',
      'read_file',
      'run_command',
      'run_query',
      'store_secret',
      'write_file',
    ])
    expect(bound.policy.rules[0]?.id).toBe('notes')
    expect(readdirSync(dir)).toStrictEqual(['policy.yaml'])
  })

  it('a disabled section defines no tools', () => {
    const bound = bindBuiltins(validateConfig({ workspace: { enabled: false }, vault: { enabled: false }, sql: { enabled: false } }, 'test', tempDir()))
    expect(bound.registry.all()).toStrictEqual([])
  })
})
