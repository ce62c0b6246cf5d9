import { describe, expect, it } from 'vitest'
import { ALL_COMMANDS, GROUPS } from '../../src/cli/commands.js'
import { cli, tempDir, tree } from './run.js'

const dir = tempDir()

describe('--help, -h and help <command>: usage, one line per flag, an example; stdout, exit 0', () => {
  it.each(ALL_COMMANDS.map((s) => ({ name: s.name, spec: s })))('$name', ({ name, spec }) => {
    const words = name.split(' ')
    const outs = [cli(dir, [...words, '--help']), cli(dir, [...words, '-h']), cli(dir, ['help', ...words])]
    for (const r of outs) {
      expect(r).toMatchObject({ status: 0, stderr: '' })
      expect(r.stdout).toBe(outs[0]?.stdout)
    }
    const text = outs[0]?.stdout ?? ''
    expect(text).toMatch(new RegExp(`^Usage: mcp-bastion ${name} `))
    for (const f of spec.flags) expect(text).toMatch(new RegExp(`\\n  --${f.name}\\b[^\\n]* {2}\\S`))
    expect(text).toMatch(/\n {2}--help +show this help/)
    expect(text).toMatch(new RegExp(`\\nExamples?:\\n  mcp-bastion ${name}`))
  })

  it.each([...GROUPS.keys()])('%s --help lists its subcommands', (group) => {
    for (const r of [cli(dir, [group, '--help']), cli(dir, [group, '-h']), cli(dir, ['help', group])]) {
      expect(r).toMatchObject({ status: 0, stderr: '' })
      for (const sub of GROUPS.get(group)?.subcommands.keys() ?? []) expect(r.stdout).toContain(`mcp-bastion ${group} ${sub}`)
    }
  })

  it('mcp-bastion, --help and help list every command and the exit codes', () => {
    for (const r of [cli(dir, []), cli(dir, ['--help']), cli(dir, ['help'])]) {
      expect(r.status).toBe(0)
      for (const s of ALL_COMMANDS) expect(r.stdout).toContain(`  ${s.name} `)
      expect(r.stdout).toMatch(/Exit status: 0 ok; 1 the check failed/)
    }
  })

  it('help never runs the command: serve --help binds nothing and creates no state', () => {
    const empty = tempDir()
    expect(cli(empty, ['serve', '--port', '1', '--help']).status).toBe(0)
    expect(cli(empty, ['keys', 'create', '--role', 'admin', '-h']).status).toBe(0)
    expect(tree(empty)).toStrictEqual([])
  })
})

/** A usage mistake: one line naming it, then the command's usage; exit 2; nothing written. */
const MISTAKES = [
  { name: 'unknown option', args: ['keys', 'create', '--rol', 'admin'], line: 'mcp-bastion keys create: unknown option --rol (did you mean --role?)', usage: 'keys create' },
  { name: 'unknown option, nothing close', args: ['keys', 'list', '--frobnicate'], line: 'mcp-bastion keys list: unknown option --frobnicate', usage: 'keys list' },
  { name: 'a short option', args: ['audit', 'verify', '-k', 'x'], line: 'mcp-bastion audit verify: unknown option -k', usage: 'audit verify' },
  { name: 'missing value at the end', args: ['keys', 'create', '--role'], line: 'mcp-bastion keys create: option --role needs a value (ROLE)', usage: 'keys create' },
  {
    name: 'missing value before another option',
    args: ['keys', 'create', '--role', '--name', 'x'],
    line: 'mcp-bastion keys create: option --role needs a value (ROLE)',
    usage: 'keys create',
  },
  { name: 'empty value', args: ['serve', '--port='], line: 'mcp-bastion serve: option --port needs a value (PORT), not an empty string', usage: 'serve' },
  { name: 'a value for a boolean', args: ['keys', 'list', '--json=yes'], line: 'mcp-bastion keys list: option --json takes no value', usage: 'keys list' },
  {
    name: 'an option given twice',
    args: ['policy', 'check', 'p.yaml', '--config', 'a', '--config', 'b'],
    line: 'mcp-bastion policy check: option --config is given twice',
    usage: 'policy check',
  },
  { name: 'an extra argument', args: ['keys', 'list', 'extra'], line: 'mcp-bastion keys list: unexpected argument "extra"', usage: 'keys list' },
  { name: 'a missing argument', args: ['config', 'check'], line: 'mcp-bastion config check: missing FILE', usage: 'config check' },
  { name: 'a missing required option', args: ['keys', 'create'], line: 'mcp-bastion keys create: missing --role ROLE', usage: 'keys create' },
  { name: 'replay without --policy', args: ['policy', 'replay', '--audit', 'a.jsonl'], line: 'mcp-bastion policy replay: missing --policy FILE', usage: 'policy replay' },
  { name: 'audit verify without files', args: ['audit', 'verify'], line: 'mcp-bastion audit verify: missing FILE (or --postgres)', usage: 'audit verify' },
  { name: 'a bad port', args: ['serve', '--port', '99999'], line: 'mcp-bastion serve: --port: "99999" is not a port number (0-65535)', usage: 'serve' },
  {
    name: 'a malformed key id',
    args: ['keys', 'revoke', 'nope'],
    line: 'mcp-bastion keys revoke: "nope" is not a key id (16 hex characters, see keys list)',
    usage: 'keys revoke',
  },
  {
    name: 'a malformed --expires',
    args: ['keys', 'create', '--role', 'admin', '--expires', 'soon'],
    line: 'mcp-bastion keys create: --expires: "soon" is neither a duration (30d, 12h, 2w) nor a date (2027-06-30 or 2027-06-30T12:00:00Z)',
    usage: 'keys create',
  },
  {
    name: 'an impossible date',
    args: ['keys', 'create', '--role', 'admin', '--expires', '2027-02-30'],
    line: 'mcp-bastion keys create: --expires: "2027-02-30" is neither a duration (30d, 12h, 2w) nor a date (2027-06-30 or 2027-06-30T12:00:00Z)',
    usage: 'keys create',
  },
  {
    name: 'a date in the past',
    args: ['keys', 'create', '--role', 'admin', '--expires', '2020-01-01'],
    line: 'mcp-bastion keys create: --expires: 2020-01-01 is not in the future',
    usage: 'keys create',
  },
  {
    name: 'an unknown duration unit',
    args: ['keys', 'create', '--role', 'admin', '--expires', '3y'],
    line: 'mcp-bastion keys create: --expires: invalid duration "3y": use a number and one of s, m, h, d, w (e.g. 30d)',
    usage: 'keys create',
  },
] as const

describe('usage mistakes: one line on stderr naming the problem, then the usage; exit 2; nothing written', () => {
  it.each(MISTAKES)('$name', ({ args, line, usage }) => {
    const cwd = tempDir()
    const r = cli(cwd, args)
    expect(r.status).toBe(2)
    expect(r.stdout).toBe('')
    const [first, ...rest] = r.stderr.split('\n')
    expect(first).toBe(line)
    expect(rest.join('\n')).toMatch(new RegExp(`^Usage: mcp-bastion ${usage} [^\\n]*\\n(?: [^\\n]*\\n)*Run 'mcp-bastion ${usage} --help' for the options\\.\\n$`))
    expect(r.stderr).not.toMatch(/ERR_PARSE_ARGS|TypeError|at .*\.js:\d+/)
    expect(tree(cwd)).toStrictEqual([])
  })

  it.each([
    { args: ['keys'], line: 'mcp-bastion keys: missing subcommand (create, list, revoke, rotate-signing)' },
    { args: ['keys', 'delete'], line: 'mcp-bastion keys: unknown subcommand "delete" (create, list, revoke, rotate-signing)' },
    { args: ['policy', 'simulate'], line: 'mcp-bastion policy: unknown subcommand "simulate" (check, explain, replay)' },
    { args: ['audit', '--frob'], line: 'mcp-bastion audit: unknown subcommand "--frob" (verify, rotate-key)' },
  ])('$args.0 $args.1: the subcommands, exit 2', ({ args, line }) => {
    const r = cli(dir, args)
    expect(r.status).toBe(2)
    expect(r.stderr.split('\n')[0]).toBe(line)
    expect(r.stderr).toContain(`\nUsage:\n  mcp-bastion ${args[0]} `)
  })

  it.each([
    { args: ['frobnicate'], line: 'mcp-bastion: unknown command "frobnicate"' },
    { args: ['help', 'frobnicate'], line: 'mcp-bastion: help: no command "frobnicate"' },
  ])('$args: exit 2', ({ args, line }) => {
    const r = cli(dir, args)
    expect(r.status).toBe(2)
    expect(r.stderr).toBe(`${line}\nRun 'mcp-bastion --help' for the commands.\n`)
  })

  it('a config error is exit 2 too, naming the file and key', () => {
    const cwd = tempDir()
    const r = cli(cwd, ['keys', 'list', '--config', 'missing.yaml'])
    expect(r).toMatchObject({ status: 2, stderr: 'mcp-bastion: config missing.yaml: no such file; give an existing file, or no config for the embedded default\n' })
  })
})
