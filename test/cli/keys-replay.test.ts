import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { callModern, startServer, type TestServer } from '../helpers/server.js'
import { cli, tempDir } from './run.js'

describe('keys create --expires', () => {
  it.each([
    { expires: '2099-06-30', stored: '2099-06-30T00:00:00.000Z' },
    { expires: '2099-06-30T12:00:00+02:00', stored: '2099-06-30T10:00:00.000Z' },
  ])('a date as the config takes it: $expires', ({ expires, stored }) => {
    const dir = tempDir()
    const r = cli(dir, ['keys', 'create', '--role', 'reader', '--expires', expires])
    expect(r.status).toBe(0)
    expect(r.stderr).toContain(`expires ${stored}`)
    const list = JSON.parse(cli(dir, ['keys', 'list', '--json']).stdout) as { expiresAt: string; status: string }[]
    expect(list).toMatchObject([{ expiresAt: stored, status: 'active' }])
  })

  it('a duration from now', () => {
    const dir = tempDir()
    expect(cli(dir, ['keys', 'create', '--role', 'reader', '--expires', '30d']).status).toBe(0)
    const [key] = JSON.parse(cli(dir, ['keys', 'list', '--json']).stdout) as { expiresAt: string }[]
    expect(Math.abs(Date.parse(key?.expiresAt ?? '') - Date.now() - 30 * 86_400_000)).toBeLessThan(60_000)
  })
})

describe('policy replay decides again on the principal the line recorded', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({
      roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] }, nobody: { permissions: [] }, analyst: { permissions: [] } },
      policy: { rules: [{ id: 'analysts-notes', effect: 'allow', subjects: { roles: ['analyst'] }, targets: { tools: ['read_file'] }, when: 'args.path.startsWith("notes/")' }] },
    })
  })
  afterAll(async () => {
    await server.close()
  })

  it('decision lines carry principalName and principalKind; a candidate reading principal.name replays them; an older line without them is reported, and fails --fail-on-change', async () => {
    const alice = server.bastion.keys.create({ name: 'alice', roles: ['analyst'], expiresAt: null }).key
    const bob = server.bastion.keys.create({ name: 'bob', roles: ['analyst'], expiresAt: null }).key
    for (const key of [alice, bob]) expect((await callModern(server.url, key, 'read_file', { path: 'notes/todo.txt' })).res.status).toBe(200)
    const decisions = server.audit().filter((l) => l.method === 'tools/call' && l.authz !== undefined)
    expect(decisions.map((l) => [l.principalName, l.principalKind, l.authz])).toStrictEqual([
      ['alice', 'api-key', 'allow'],
      ['bob', 'api-key', 'allow'],
    ])
    expect(decisions[0]).not.toHaveProperty('claims')
    const dir = tempDir()
    const config = join(dir, 'bastion.yaml')
    writeFileSync(config, 'roles:\n  admin: { permissions: ["*"] }\n  analyst: { permissions: [] }\n')
    const candidate = join(dir, 'alice-only.yaml')
    writeFileSync(
      candidate,
      'rules:\n  - id: alice-only\n    effect: allow\n    subjects: { roles: [analyst] }\n    targets: { tools: [read_file] }\n    when: principal.name == "alice" && args.path.startsWith("notes/")\n',
    )
    const r = cli(dir, ['policy', 'replay', '--audit', server.auditPath, '--policy', candidate, '--config', config])
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^replayed 2 decisions against policy [0-9a-f]{16}: 1 would change\n/)
    expect(r.stdout).toMatch(/ key:[0-9a-f]{16} tool read_file: allow \(analysts-notes\) → deny \(default-deny\)\n$/)
    // The same trail as an older version wrote it: no principalName or principalKind.
    const old = join(dir, 'old.jsonl')
    writeFileSync(old, `${decisions.map((l) => JSON.stringify({ ...l, principalName: undefined, principalKind: undefined })).join('\n')}\n`)
    const before = cli(dir, ['policy', 'replay', '--audit', old, '--policy', candidate, '--config', config])
    expect(before.status).toBe(0)
    expect(before.stdout).toMatch(/^replayed 0 decisions against policy [0-9a-f]{16}: 0 would change, 2 lack what the policy reads\n/)
    expect(before.stdout).toContain('tool read_file: cannot decide again: the line lacks principal.name (not recorded) (read by alice-only)\n')
    expect(cli(dir, ['policy', 'replay', '--audit', old, '--policy', candidate, '--config', config, '--fail-on-change']).status).toBe(1)
  })
})
