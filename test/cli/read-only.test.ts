import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli, tempDir, tree } from './run.js'

/** An audit trail written by `keys create` in its own folder (state in .bastion, with the key beside it). */
function recordedTrail(): string {
  const dir = tempDir('bastion-trail-')
  expect(cli(dir, ['keys', 'create', '--role', 'reader']).status).toBe(0)
  return join(dir, '.bastion', 'audit.jsonl')
}

const CANDIDATE = 'rules:\n  - id: notes\n    effect: allow\n    subjects: "*"\n    targets: { tools: [read_file] }\n    when: args.path.startsWith("notes/")\n'

/** Every read-only command, given where its inputs are. */
function readOnlyCommands(inputs: { trail: string; keyless: string; candidate: string; config: string[]; configFile: string }): { name: string; args: string[]; status: number }[] {
  const { trail, keyless, candidate, config, configFile } = inputs
  return [
    { name: 'audit verify (key beside the file)', args: ['audit', 'verify', trail], status: 0 },
    { name: 'audit verify (no key anywhere)', args: ['audit', 'verify', keyless], status: 3 },
    { name: 'policy explain', args: ['policy', 'explain', '--role', 'reader', '--tool', 'read_file', '--args', '{"path":"notes/a.txt"}', ...config], status: 0 },
    { name: 'policy check', args: ['policy', 'check', candidate, ...config], status: 0 },
    { name: 'policy replay', args: ['policy', 'replay', '--audit', trail, '--policy', candidate, ...config], status: 0 },
    { name: 'config check', args: ['config', 'check', configFile], status: 0 },
    { name: 'keys list', args: ['keys', 'list', ...config], status: 0 },
    { name: 'keys list --json', args: ['keys', 'list', '--json', ...config], status: 0 },
    { name: 'grants list', args: ['grants', 'list', ...config], status: 0 },
    { name: 'grants list --json', args: ['grants', 'list', '--json', ...config], status: 0 },
  ]
}

describe('read-only commands write nothing: no .bastion/, no key, no audit line, no file', () => {
  const trail = recordedTrail()
  const keylessDir = tempDir('bastion-keyless-')
  const keyless = join(keylessDir, 'audit.jsonl')
  writeFileSync(keyless, '')
  const inputs = tempDir('bastion-inputs-')
  const candidate = join(inputs, 'candidate.yaml')
  writeFileSync(candidate, CANDIDATE)
  // A config whose state folder does not exist (and must not be created).
  const configDir = tempDir('bastion-conf-')
  const configFile = join(configDir, 'bastion.yaml')
  writeFileSync(configFile, 'stateDir: state-not-here\nroles:\n  admin: { permissions: ["*"] }\n  reader: { permissions: [files:read] }\n')
  mkdirSync(join(configDir, 'sub'))
  const everything = [inputs, configDir, keylessDir, join(trail, '..', '..')]

  it.each([
    ...readOnlyCommands({ trail, keyless, candidate, config: [], configFile }).map((c) => ({ ...c, where: 'an empty folder, the embedded default' })),
    ...readOnlyCommands({ trail, keyless, candidate, config: ['--config', configFile], configFile }).map((c) => ({ ...c, where: 'a config whose stateDir does not exist' })),
  ])('$name in $where', ({ args, status }) => {
    const cwd = tempDir('bastion-cwd-')
    const before = everything.map(tree)
    const r = cli(cwd, args)
    expect(r.stderr.split('\n')[0] ?? '').not.toMatch(/unexpected|TypeError/)
    expect(r.status).toBe(status)
    expect(tree(cwd)).toStrictEqual([])
    expect(everything.map(tree)).toStrictEqual(before)
  })

  it.each([
    { name: 'policy explain', args: ['policy', 'explain', '--role', 'reader', '--tool', 'read_file', '--args', '{"path":"notes/a.txt"}'] },
    { name: 'keys list', args: ['keys', 'list'] },
    { name: 'config check', args: ['config', 'check', 'bastion.yaml'] },
  ])('$name with ./bastion.yaml in the working folder: its stateDir is not created', ({ args }) => {
    const before = tree(configDir)
    expect(cli(configDir, args).status).toBe(0)
    expect(tree(configDir)).toStrictEqual(before)
  })
})
