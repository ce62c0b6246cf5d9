import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { keptAuditKeys, readAuditKey, readAuditKeyFile } from '../audit/audit-key.js'
import { type TrustedRange, verifyAudit } from '../audit/chain.js'
import { rotateAuditKey } from '../audit/key-rotation.js'
import { PostgresAuditSink } from '../audit/sinks.js'
import { ConfigError, type LoadedConfig, loadConfigFile, readSecret, statePath } from '../config/load.js'
import { AUDIT_VERIFY } from './commands.js'
import { loadConfig } from './config-path.js'
import { EXIT, type Parsed, UsageError } from './usage.js'

/** The keys found, the current one first; or where the key was looked for, when none was found (for the one line `audit verify` prints). */
type KeyLookup = { readonly keys: readonly Buffer[] } | { readonly looked: string }

/** The key a config names: `audit.key`, else `<stateDir>/audit.key` if it exists, and the old keys kept in the state folder. Creates nothing. */
function keyOfConfig(loaded: LoadedConfig): KeyLookup {
  const key = readAuditKey(loaded)
  const file = statePath(loaded, 'audit.key')
  return key === undefined ? { looked: file } : { keys: [key, ...keptAuditKeys(dirname(file))] }
}

/**
 * `--key FILE`, else `--config FILE`, else the audit.key beside the first audit file: the writer
 * keeps `audit.jsonl` and its rotated files in the state folder that holds `audit.key` (the
 * default layout). Never creates a key: a key made now could only report an intact log as forged.
 */
function findKey(p: Parsed, firstFile: string | undefined, pgConfig: LoadedConfig | undefined): KeyLookup {
  const keyFiles = p.strings('key')
  if (keyFiles.length > 0) {
    // Exactly the keys given: no kept old keys are added beside them.
    return {
      keys: keyFiles.map((keyFile) => {
        const key = readAuditKeyFile(keyFile)
        if (key === undefined) throw new UsageError(AUDIT_VERIFY, `--key ${keyFile}: no such file`)
        return key
      }),
    }
  }
  const configFile = p.string('config')
  if (configFile !== undefined) return keyOfConfig(loadConfigFile(configFile))
  if (pgConfig !== undefined) return keyOfConfig(pgConfig)
  const beside = join(dirname(firstFile ?? '.'), 'audit.key')
  const key = readAuditKeyFile(beside)
  return key === undefined ? { looked: beside } : { keys: [key, ...keptAuditKeys(dirname(beside))] }
}

function readAuditFiles(files: readonly string[]): { name: string; text: string }[] {
  return files.map((name) => {
    try {
      return { name, text: readFileSync(name, 'utf8') }
    } catch (error) {
      throw new UsageError(AUDIT_VERIFY, `cannot read ${name} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
  })
}

/**
 * `audit verify FILE… | --postgres`: every problem (`FAIL file:line: …`), every recorded gap
 * (`GAP file:line: …`), the lines that verify; exit 0 intact, 1 any problem, 3 no key found. Reads only.
 */
export async function auditVerify(p: Parsed): Promise<number> {
  const files = p.positionals
  const postgres = p.flag('postgres')
  if (postgres && files.length > 0) throw new UsageError(AUDIT_VERIFY, 'give audit FILEs or --postgres, not both')
  if (!postgres && files.length === 0) throw new UsageError(AUDIT_VERIFY, 'missing FILE (or --postgres)')
  // --postgres needs the config's table: --config, else the config serve would use.
  const pgLoaded = postgres ? loadConfig(p.string('config')) : undefined
  const pgConfig = pgLoaded?.config.audit.postgres
  if (pgLoaded !== undefined && pgConfig === undefined) throw new ConfigError(`config ${pgLoaded.source}: audit.postgres is not configured (audit verify --postgres)`)
  const texts = files.length > 0 ? readAuditFiles(files) : []
  const found = findKey(p, files[0], pgLoaded)
  const what = files[0] ?? `postgres table ${pgConfig?.table ?? ''}`
  if (!('keys' in found)) {
    process.stderr.write(`mcp-bastion audit verify: no audit key found for ${what} (looked for ${found.looked}); pass --key FILE or --config FILE\n`)
    return EXIT.noAuditKey
  }
  if (pgLoaded !== undefined && pgConfig !== undefined)
    texts.push({ name: pgConfig.table, text: await PostgresAuditSink.readAll(readSecret(pgLoaded, pgConfig.url, 'audit.postgres.url'), pgConfig.table) })
  const report = verifyAudit(texts, found.keys)
  // Problems and gaps in file order: oldest file first, then by line.
  const order = new Map(texts.map((t, i) => [t.name, i]))
  const findings = [
    ...report.problems.map((p) => ({ file: p.file, line: p.line, text: `FAIL ${p.file}:${p.line}: ${p.reason}` })),
    ...report.gaps.map((g) => ({ file: g.file, line: g.line, text: `GAP ${g.file}:${g.line}: ${g.detail} (audit.repaired, writer ${g.writer})` })),
  ].sort((a, b) => (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) || a.line - b.line)
  const out = findings.map((f) => f.text)
  const open = report.open.length === 0 ? '' : `; ${report.open.length} writer(s) without audit.closed (running, crashed, or the tail was cut): ${report.open.join(', ')}`
  const recorded = report.gaps.length === 0 ? '' : `; ${report.gaps.length} recorded gap(s) above`
  if (!report.ok) {
    out.push(`trusted: ${trustedRanges(report.trusted)}`)
    out.push(`FAIL: ${report.problems.length} problem(s); ${report.lines} line(s) from ${report.writers} writer(s) verify${recorded}${open}`)
  } else out.push(`OK: ${report.lines} lines from ${report.writers} writer(s) verify${recorded}${open}`)
  process.stdout.write(`${out.join('\n')}\n`)
  return report.ok ? EXIT.ok : EXIT.failed
}

/** `audit.jsonl lines 1-4, 6-9; audit.jsonl.1 lines 1-3`, or `none`. */
function trustedRanges(ranges: readonly TrustedRange[]): string {
  const byFile = new Map<string, string[]>()
  for (const { file, from, to } of ranges) byFile.set(file, [...(byFile.get(file) ?? []), from === to ? `${from}` : `${from}-${to}`])
  return byFile.size === 0 ? 'none' : [...byFile].map(([file, runs]) => `${file} lines ${runs.join(', ')}`).join('; ')
}

/**
 * `audit rotate-key`: a new audit key and a hand-over line in the trail (audit/key-rotation.ts).
 * Exit 0; a configured `audit.key` is a config error (2).
 */
export function auditRotateKey(p: Parsed): number {
  const r = rotateAuditKey(loadConfig(p.string('config')))
  const kept = r.kept === undefined ? '' : `; the previous key is kept as ${r.kept}`
  process.stdout.write(`audit key ${r.newKid} is active${r.oldKid === null ? '' : ` (after ${r.oldKid})`}${kept}\n`)
  if (r.oldKey === 'lost')
    process.stderr.write(
      `mcp-bastion audit rotate-key: the key the trail was sealed under${r.oldKid === null ? '' : ` (${r.oldKid})`} is not here: the hand-over is sealed under the new key only, and lines before it verify only with the old key (put it beside audit.key as audit.key.<kid>.old, or pass it with --key)\n`,
    )
  return EXIT.ok
}
