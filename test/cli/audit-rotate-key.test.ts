import { randomBytes } from 'node:crypto'
import { copyFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { auditKeyId } from '../../src/audit/key-id.js'
import { serveProcess } from '../helpers/processes.js'
import { cli, tempDir } from './run.js'

/** A folder whose trail the CLI wrote (`keys create`), with its key beside it. */
function withTrail(): { dir: string; state: string; file: string; keyFile: string } {
  const dir = tempDir('bastion-ark-')
  expect(cli(dir, ['keys', 'create', '--role', 'admin']).status).toBe(0)
  const state = join(dir, '.bastion')
  return { dir, state, file: join(state, 'audit.jsonl'), keyFile: join(state, 'audit.key') }
}

const kidOf = (file: string): string => auditKeyId(Buffer.from(readFileSync(file, 'utf8').trim(), 'utf8'))

describe('serve and the CLI writers refuse a trail sealed under another key (exit 2)', () => {
  it('key deleted: serve exits 2 with one line naming the key file and both fixes; no key is made', () => {
    const { dir, file, keyFile } = withTrail()
    const kid = kidOf(keyFile)
    rmSync(keyFile)
    const r = cli(dir, ['serve', '--port', '0'])
    expect(r.status).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe(
      `mcp-bastion: audit key ${keyFile} is missing, but the audit trail ${file} holds lines sealed under audit key ${kid}; a new key would make every earlier line fail audit verify. Restore ${keyFile} from a backup, or start a new key deliberately with mcp-bastion audit rotate-key (lines before it then verify only with the old key)\n`,
    )
    expect(readdirSync(join(dir, '.bastion'))).not.toContain('audit.key')
  })

  it('key replaced: serve exits 2, and keys create changes nothing', () => {
    const { dir, state, keyFile } = withTrail()
    writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`)
    const r = cli(dir, ['serve', '--port', '0'])
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(
      /^mcp-bastion: audit key .* \(ak_[0-9a-f]{16}\) is not the key the audit trail .* is sealed under \(audit key ak_[0-9a-f]{16}, or its last line was edited/,
    )
    const keys = readFileSync(join(state, 'keys.json'), 'utf8')
    expect(cli(dir, ['keys', 'create', '--role', 'admin']).status).toBe(2)
    expect(readFileSync(join(state, 'keys.json'), 'utf8')).toBe(keys)
  })
})

describe('audit rotate-key', () => {
  it('then serve starts, and audit verify follows the whole trail across the hand-over', async () => {
    const { dir, state, file, keyFile } = withTrail()
    const oldKid = kidOf(keyFile)
    const r = cli(dir, ['audit', 'rotate-key'])
    expect(r.status).toBe(0)
    const newKid = kidOf(keyFile)
    const kept = join(state, `audit.key.${oldKid}.old`)
    expect(r.stdout).toBe(`audit key ${newKid} is active (after ${oldKid}); the previous key is kept as ${kept}\n`)
    expect(statSync(kept).mode & 0o777).toBe(0o600)
    expect(statSync(keyFile).mode & 0o777).toBe(0o600)
    const server = await serveProcess(dir, [])
    await server.stop()
    expect(cli(dir, ['keys', 'create', '--role', 'admin']).status).toBe(0)
    const verified = cli(tempDir(), ['audit', 'verify', file])
    expect(verified.stdout).toMatch(/^OK: \d+ lines from 4 writer\(s\) verify/)
    expect(verified.status).toBe(0)
    // Only the new key: the lines before the rotation are "wrong key", not forged.
    const onlyNew = join(tempDir(), 'audit.key')
    copyFileSync(keyFile, onlyNew)
    const wrong = cli(tempDir(), ['audit', 'verify', file, '--key', onlyNew])
    expect(wrong.status).toBe(1)
    const fails = wrong.stdout.split('\n').filter((l) => l.startsWith(`FAIL ${file}:`))
    expect(fails.length).toBeGreaterThan(0)
    // Every line before the hand-over is a wrong key, none forged; the lines after it verify.
    for (const line of fails)
      expect(line).toMatch(
        new RegExp(
          `^FAIL ${file}:\\d+: wrong key: the line is sealed under audit key ${oldKid}, which is not among the keys given \\(${newKid}\\); pass that key \\(a rotation keeps it as audit\\.key\\.${oldKid}\\.old\\)$`,
        ),
      )
    expect(wrong.stdout).toMatch(/\ntrusted: .* lines \d+-\d+\n/)
    // Both keys by --key: OK; a line forged after the rotation is still forged.
    expect(cli(tempDir(), ['audit', 'verify', file, '--key', onlyNew, '--key', kept]).status).toBe(0)
    const lines = readFileSync(file, 'utf8').split('\n')
    const at = lines.length - 3
    writeFileSync(file, lines.map((l, i) => (i === at ? l.replace('"decision":"allow"', '"decision":"deny"') : l)).join('\n'))
    const forged = cli(tempDir(), ['audit', 'verify', file])
    expect(forged.status).toBe(1)
    expect(forged.stdout).toMatch(new RegExp(`^FAIL ${file.replaceAll('.', '\\.')}:${at + 1}: MAC does not match under audit key ${newKid}: the line was edited or forged`))
  })

  it('with the key lost: a new key deliberately, a warning that earlier lines need the old key; serve then starts', async () => {
    const { dir, keyFile } = withTrail()
    const oldKid = kidOf(keyFile)
    rmSync(keyFile)
    const r = cli(dir, ['audit', 'rotate-key'])
    expect(r.status).toBe(0)
    expect(r.stderr).toBe(
      `mcp-bastion audit rotate-key: the key the trail was sealed under (${oldKid}) is not here: the hand-over is sealed under the new key only, and lines before it verify only with the old key (put it beside audit.key as audit.key.<kid>.old, or pass it with --key)\n`,
    )
    const server = await serveProcess(dir, [])
    await server.stop()
  })

  it('a configured audit.key is a config error (exit 2): rotate-key manages only <stateDir>/audit.key', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), 'audit:\n  key: { env: AUDIT_KEY }\n')
    const r = cli(dir, ['audit', 'rotate-key', '--config', 'bastion.yaml'], { AUDIT_KEY: 'k'.repeat(40) })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/audit\.key is set in the config: audit rotate-key makes and keeps only <stateDir>\/audit\.key/)
  })
})
