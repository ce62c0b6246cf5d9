import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { auditKey } from '../../src/audit/audit-key.js'
import { AuditLog, FileAuditSink } from '../../src/audit/audit-log.js'
import { embeddedConfig } from '../../src/config/load.js'
import { cli, tempDir, tree } from './run.js'

const AUDIT_KEY = 'k'.repeat(40)

/** A state folder with an audit trail (and its key) written by the CLI itself. */
function stateWithTrail(): { dir: string; state: string; file: string } {
  const dir = tempDir('bastion-av-')
  expect(cli(dir, ['keys', 'create', '--role', 'admin']).status).toBe(0)
  expect(cli(dir, ['keys', 'create', '--role', 'reader']).status).toBe(0)
  const state = join(dir, '.bastion')
  return { dir, state, file: join(state, 'audit.jsonl') }
}

describe('audit verify finds the key the trail was written with, and never creates one', () => {
  it('run from another folder: the key beside the file verifies it (no false tamper alarm), and nothing is created', () => {
    const { state, file } = stateWithTrail()
    const elsewhere = tempDir('bastion-elsewhere-')
    const before = tree(state)
    const r = cli(elsewhere, ['audit', 'verify', file])
    expect(r).toMatchObject({ status: 0, stdout: 'OK: 6 lines from 2 writer(s) verify\n', stderr: '' })
    expect(tree(elsewhere)).toStrictEqual([])
    expect(tree(state)).toStrictEqual(before)
  })

  it('rotated files beside audit.jsonl verify with the same key, oldest first', () => {
    const dir = tempDir('bastion-rot-')
    const loaded = embeddedConfig({}, dir)
    const path = join(dir, '.bastion', 'audit.jsonl')
    const log = new AuditLog(new FileAuditSink(path, { maxBytes: 64 * 1024 }), undefined, auditKey(loaded))
    for (let i = 0; i < 400; i++) log.record({ event: 'test.line', decision: 'allow', reason: 'OK', i, pad: 'x'.repeat(300) })
    log.close()
    const names = readdirSync(join(dir, '.bastion')).filter((n) => n.startsWith('audit.jsonl.'))
    expect(names.length).toBeGreaterThan(1)
    const files = [...names.sort(), 'audit.jsonl'].map((n) => join(dir, '.bastion', n))
    const r = cli(tempDir(), ['audit', 'verify', ...files])
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^OK: 40\d lines from 1 writer\(s\) verify\n$/)
  })

  it('moved away from its key: exit 3 naming the file and where it looked; --key FILE verifies it; a missing --key file is a usage error', () => {
    const { state, file } = stateWithTrail()
    const archive = tempDir('bastion-archive-')
    const moved = join(archive, 'audit.jsonl')
    renameSync(file, moved)
    const keyFile = join(tempDir('bastion-keys-'), 'audit.key')
    copyFileSync(join(state, 'audit.key'), keyFile)
    const cwd = tempDir()
    const none = cli(cwd, ['audit', 'verify', moved])
    expect(none.status).toBe(3)
    expect(none.stdout).toBe('')
    expect(none.stderr).toBe(`mcp-bastion audit verify: no audit key found for ${moved} (looked for ${join(archive, 'audit.key')}); pass --key FILE or --config FILE\n`)
    expect(tree(cwd)).toStrictEqual([])
    expect(readdirSync(archive)).toStrictEqual(['audit.jsonl'])
    expect(cli(cwd, ['audit', 'verify', moved, '--key', keyFile])).toMatchObject({ status: 0, stdout: 'OK: 6 lines from 2 writer(s) verify\n' })
    const missing = cli(cwd, ['audit', 'verify', moved, '--key', join(archive, 'nope.key')])
    expect(missing.status).toBe(2)
    expect(missing.stderr.split('\n')[0]).toBe(`mcp-bastion audit verify: --key ${join(archive, 'nope.key')}: no such file`)
  })

  it('--config: its audit.key (from the environment); without it the trail has no key beside it (exit 3); an unset variable is a config error naming it', () => {
    const dir = tempDir('bastion-avc-')
    writeFileSync(join(dir, 'bastion.yaml'), 'stateDir: state\naudit:\n  key: { env: AUDIT_KEY }\n')
    expect(cli(dir, ['keys', 'create', '--role', 'admin'], { AUDIT_KEY }).status).toBe(0)
    const file = join(dir, 'state', 'audit.jsonl')
    expect(readdirSync(join(dir, 'state'))).not.toContain('audit.key')
    const cwd = tempDir()
    expect(cli(cwd, ['audit', 'verify', file, '--config', join(dir, 'bastion.yaml')], { AUDIT_KEY })).toMatchObject({ status: 0, stdout: 'OK: 3 lines from 1 writer(s) verify\n' })
    expect(cli(cwd, ['audit', 'verify', file], { AUDIT_KEY }).status).toBe(3)
    const unset = cli(cwd, ['audit', 'verify', file, '--config', join(dir, 'bastion.yaml')])
    expect(unset.status).toBe(2)
    expect(unset.stderr).toBe(`mcp-bastion: config ${join(dir, 'bastion.yaml')}: audit.key: environment variable AUDIT_KEY is not set\n`)
    expect(tree(cwd)).toStrictEqual([])
  })

  it('--config without audit.key: <stateDir>/audit.key, read, not created', () => {
    const { dir, file } = stateWithTrail()
    writeFileSync(join(dir, 'bastion.yaml'), 'stateDir: .bastion\n')
    const elsewhere = tempDir()
    mkdirSync(join(elsewhere, 'conf'))
    writeFileSync(join(elsewhere, 'conf', 'bastion.yaml'), 'stateDir: empty-state\n')
    expect(cli(elsewhere, ['audit', 'verify', file, '--config', join(dir, 'bastion.yaml')]).status).toBe(0)
    const other = cli(elsewhere, ['audit', 'verify', file, '--config', 'conf/bastion.yaml'])
    expect(other.status).toBe(3)
    expect(other.stderr).toContain(`(looked for ${join(elsewhere, 'conf', 'empty-state', 'audit.key')})`)
    expect(tree(elsewhere)).toStrictEqual(['conf/', expect.stringMatching(/^conf\/bastion\.yaml /)])
  })

  it('an edited line is exit 1, naming the file and line', () => {
    const { file } = stateWithTrail()
    writeFileSync(file, readFileSync(file, 'utf8').replace('"roles":["reader"]', '"roles":["admin"]'))
    const r = cli(tempDir(), ['audit', 'verify', file])
    expect(r.status).toBe(1)
    expect(r.stdout).toMatch(new RegExp(`^FAIL ${file.replaceAll('.', '\\.')}:5: MAC does not match`))
  })
})
