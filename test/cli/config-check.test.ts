import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BIN } from '../helpers/processes.js'
import { cli, tempDir, tree } from './run.js'

const SECRETS = `
server:
  tls: { cert: { file: tls/cert.pem }, key: { file: tls/key.pem } }
audit:
  key: { env: AUDIT_KEY }
auth:
  keys:
    - { name: ci, roles: [reader], key: { env: CI_KEY } }
    - { name: ops, roles: [admin], key: { file: secrets/ops.key } }
alerts:
  webhook: { url: https://hooks.example/x, secret: { env: HOOK_SECRET } }
limits:
  backend: redis
  redis: { url: { env: REDIS_URL } }
`

describe('config check resolves every secret reference', () => {
  it('names every missing one with its key path and variable or file, never a value; exit 1', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), SECRETS)
    mkdirSync(join(dir, 'tls'))
    writeFileSync(join(dir, 'tls', 'cert.pem'), 'CERT-CONTENT')
    const before = tree(dir)
    const r = cli(dir, ['config', 'check', 'bastion.yaml'], { CI_KEY: 'sekrit-value-1234' })
    expect(r.status).toBe(1)
    expect(r.stdout).toBe(
      [
        'bastion.yaml: FAIL (3 roles, 2 configured keys, 8 tools; secret references: 2 of 7 resolved)',
        '  missing: server.tls.key: cannot read file tls/key.pem (ENOENT)',
        '  missing: audit.key: environment variable AUDIT_KEY is not set',
        '  missing: auth.keys.1.key: cannot read file secrets/ops.key (ENOENT)',
        '  missing: limits.redis.url: environment variable REDIS_URL is not set',
        '  missing: alerts.webhook.secret: environment variable HOOK_SECRET is not set',
        '',
      ].join('\n'),
    )
    expect(r.stdout + r.stderr).not.toMatch(/sekrit|CERT-CONTENT/)
    expect(tree(dir)).toStrictEqual(before)
  })

  it('--no-env skips resolution and says so; exit 0', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), SECRETS)
    const r = cli(dir, ['config', 'check', 'bastion.yaml', '--no-env'])
    expect(r).toMatchObject({ status: 0, stdout: 'bastion.yaml: OK (3 roles, 2 configured keys, 8 tools; secret references: 7 not resolved (--no-env))\n' })
  })

  it('all present: OK', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), 'auth:\n  keys:\n    - { name: ci, roles: [reader], key: { env: CI_KEY } }\n')
    expect(cli(dir, ['config', 'check', 'bastion.yaml'], { CI_KEY: 'x' })).toMatchObject({
      status: 0,
      stdout: 'bastion.yaml: OK (3 roles, 1 configured keys, 8 tools; secret references: 1 of 1 resolved)\n',
    })
  })
})

const TYPO = 'roles:\n  admin: { permissions: ["*"] }\n  viewer: { permissions: [db:read, files:read] }\n  ops: { permissions: [metrics:read] }\n'
const WARNING = /roles\.viewer: permission "db:read" is required by no tool, resource or prompt, so it grants nothing \(permissions in use: ([^)]*)\)/

describe('a role permission nothing requires is warned about', () => {
  it('config check: a warning line naming role, permission and the permissions in use; exit still 0; * and metrics:read are not warned about', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), TYPO)
    const r = cli(dir, ['config', 'check', 'bastion.yaml'])
    expect(r.status).toBe(0)
    const warnings = r.stdout.split('\n').filter((l) => l.startsWith('warning: '))
    expect(warnings).toHaveLength(1)
    const known = WARNING.exec(warnings[0] ?? '')?.[1]?.split(', ')
    expect(known).toEqual(expect.arrayContaining(['files:read', 'sql:query', 'metrics:read']))
    expect(known).not.toContain('db:read')
    expect(r.stdout).toMatch(/\nbastion\.yaml: OK \(/)
  })

  const children: ReturnType<typeof spawn>[] = []
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL')
  })

  it('serve: the operator log warns at start-up', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), TYPO)
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } })
    children.push(child)
    let err = ''
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString()
    })
    await new Promise<void>((resolve, reject) => {
      let out = ''
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString()
        if (out.includes('listening on')) resolve()
      })
      child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)))
    })
    // The operator log and stdout are two pipes: the warning may arrive after the listening line.
    for (const deadline = Date.now() + 5000; !err.includes('db:read') && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20))
    const warn = err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.permission === 'db:read')
    expect(warn).toMatchObject({ level: 40, role: 'viewer', permission: 'db:read', msg: expect.stringMatching(WARNING) })
  })
})
