#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { auditKey } from '../audit/audit-key.js'
import { AuditLog, FileAuditSink } from '../audit/audit-log.js'
import { verifyAudit } from '../audit/chain.js'
import { PostgresAuditSink } from '../audit/sinks.js'
import { KeyStore } from '../auth/key-store.js'
import { SigningKeys } from '../auth/signing-keys.js'
import { createBastion, VERSION } from '../bastion.js'
import { bindBuiltins } from '../compose/bind.js'
import { ConfigError, embeddedConfig, type LoadedConfig, loadConfigFile, readSecret, statePath } from '../config/load.js'
import { parseDuration } from '../config/state.js'
import { SecurityError } from '../errors.js'
import { rotateFileKeyring } from '../protect/keyring.js'
import { keyringFor } from '../protect/setup.js'
import { Vault } from '../protect/vault.js'
import { serveStdio } from '../transport/stdio.js'
import { PolicyUsageError, policyCommand } from './policy.js'

const HELP = `mcp-bastion ${VERSION} — a security-first MCP server

Usage:
  mcp-bastion serve [--config FILE] [--host HOST] [--port PORT] [--stdio]
  mcp-bastion keys create --role ROLE [--role ROLE…] [--name NAME] [--expires 30d] [--config FILE]
  mcp-bastion keys list [--config FILE] [--json]
  mcp-bastion keys revoke ID [--config FILE]
  mcp-bastion keys rotate-signing [--config FILE]
  mcp-bastion config check FILE
  mcp-bastion audit verify FILE [FILE…] [--config FILE]
  mcp-bastion secrets rotate [--config FILE]
  mcp-bastion policy check FILE [--config FILE]
  mcp-bastion policy explain --role ROLE [--principal ID] [--tenant T] [--scope S]
                             (--tool NAME --args JSON | --prompt NAME | --resource NAME --uri URI [--action read|list])
                             [--policy FILE] [--config FILE] [--json]
  mcp-bastion policy replay --audit FILE [--audit FILE…] --policy NEW.yaml [--config FILE] [--json] [--fail-on-change]

Config: --config, else $BASTION_CONFIG, else ./bastion.yaml if present, else the embedded default.
Overrides: $BASTION_HOST, $BASTION_PORT (flags win). stdio mode reads the API key from $MCP_API_KEY.
`

class UsageError extends Error {}

function configPath(flag: string | undefined): string | undefined {
  if (flag !== undefined) return flag
  const env = process.env.BASTION_CONFIG
  if (env !== undefined && env !== '') return env
  return existsSync('bastion.yaml') ? 'bastion.yaml' : undefined
}

function loadConfig(flag: string | undefined): LoadedConfig {
  const path = configPath(flag)
  return path === undefined ? embeddedConfig() : loadConfigFile(path)
}

function parsePort(text: string | undefined, where: string): number | undefined {
  if (text === undefined || text === '') return undefined
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new UsageError(`${where}: ${JSON.stringify(text)} is not a port number (0-65535)`)
  return Number(text)
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, stdio: { type: 'boolean' } }, strict: true })
  const path = configPath(values.config)
  if (values.stdio === true) {
    const bastion = await createBastion({ ...(path === undefined ? {} : { config: path }), announce: false })
    const handle = await serveStdio(bastion)
    const stop = async (): Promise<void> => {
      await handle.close()
      await bastion.close()
      process.exit(0)
    }
    process.once('SIGINT', () => void stop())
    process.once('SIGTERM', () => void stop())
    process.stdin.once('end', () => void stop())
    return
  }
  const port = parsePort(values.port, '--port')
  // The first-run key and the listening line go to stdout; with the audit trail there, to stderr.
  let auditOnStdout = false
  const announce = { write: (text: string) => (auditOnStdout ? process.stderr : process.stdout).write(text) }
  const bastion = await createBastion({ ...(path === undefined ? {} : { config: path }), announce })
  auditOnStdout = bastion.loaded.config.audit.sink === 'stdout'
  await bastion.listen({ ...(values.host === undefined ? {} : { host: values.host }), ...(port === undefined ? {} : { port }) })
  const stop = async (): Promise<void> => {
    await bastion.close()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop())
  process.once('SIGTERM', () => void stop())
}

function keyStoreFor(loaded: LoadedConfig): { store: KeyStore; audit: AuditLog } {
  const store = new KeyStore(statePath(loaded, loaded.config.auth.keysFile), [], 0)
  const audit = new AuditLog(new FileAuditSink(statePath(loaded, loaded.config.audit.file), { maxBytes: loaded.config.audit.maxBytes }), undefined, auditKey(loaded))
  return { store, audit }
}

async function keys(args: string[]): Promise<void> {
  const [sub, ...rest] = args
  if (sub === 'create') {
    const { values } = parseArgs({
      args: rest,
      options: { role: { type: 'string', multiple: true }, name: { type: 'string' }, expires: { type: 'string' }, config: { type: 'string' } },
      strict: true,
    })
    const roles = values.role ?? []
    if (roles.length === 0) throw new UsageError('keys create: --role is required')
    const loaded = loadConfig(values.config)
    for (const role of roles) {
      if (!Object.hasOwn(loaded.config.roles, role))
        throw new UsageError(`keys create: role ${JSON.stringify(role)} is not defined (defined: ${Object.keys(loaded.config.roles).join(', ')})`)
    }
    let expiresAt: Date | null = null
    if (values.expires !== undefined) {
      try {
        expiresAt = new Date(Date.now() + parseDuration(values.expires))
      } catch (error) {
        throw new UsageError(`keys create: --expires: ${(error as Error).message}`)
      }
    }
    const { store, audit } = keyStoreFor(loaded)
    const { key, stored } = store.create({ name: values.name ?? roles.join('+'), roles, expiresAt })
    audit.record({ event: 'key.created', principal: `key:${stored.id}`, roles: stored.roles, decision: 'allow', reason: 'OK', expiresAt: stored.expiresAt, transport: 'cli' })
    audit.close()
    process.stderr.write(
      `Created key ${stored.id} (${stored.name}; roles ${stored.roles.join(', ')}${stored.expiresAt === null ? '' : `; expires ${stored.expiresAt}`}). It is shown only now:\n`,
    )
    process.stdout.write(`${key}\n`)
    return
  }
  if (sub === 'list') {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string' }, json: { type: 'boolean' } }, strict: true })
    const loaded = loadConfig(values.config)
    const { store, audit } = keyStoreFor(loaded)
    audit.close()
    const now = Date.now()
    const rows = store.list().map(({ hash: _hash, source: _source, ...k }) => ({
      ...k,
      status: k.revokedAt !== null ? 'revoked' : k.expiresAt !== null && Date.parse(k.expiresAt) <= now ? 'expired' : 'active',
    }))
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
      return
    }
    if (rows.length === 0) process.stdout.write('no keys\n')
    for (const r of rows)
      process.stdout.write(
        `${r.id}  ${r.status.padEnd(7)}  ${r.roles.join(',').padEnd(16)}  ${r.name}  created ${r.createdAt}${r.expiresAt === null ? '' : `  expires ${r.expiresAt}`}\n`,
      )
    return
  }
  if (sub === 'revoke') {
    const { values, positionals } = parseArgs({ args: rest, options: { config: { type: 'string' } }, allowPositionals: true, strict: true })
    const id = positionals[0]
    if (id === undefined || positionals.length !== 1 || !/^[0-9a-f]{16}$/.test(id))
      throw new UsageError('keys revoke: give exactly one key id (16 hex characters, see `keys list`)')
    const loaded = loadConfig(values.config)
    const { store, audit } = keyStoreFor(loaded)
    if (!store.revoke(id)) {
      audit.close()
      throw new UsageError(`keys revoke: no stored key with id ${id}`)
    }
    audit.record({ event: 'key.revoked', principal: `key:${id}`, decision: 'allow', reason: 'OK', transport: 'cli' })
    audit.close()
    process.stdout.write(`revoked ${id}\n`)
    return
  }
  if (sub === 'rotate-signing') {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string' } }, strict: true })
    const loaded = loadConfig(values.config)
    const { tokenService } = loaded.config.auth
    const keys = new SigningKeys(statePath(loaded, tokenService.signingKeysFile), tokenService.accessTokenSeconds, () => keyringFor(loaded))
    await keys.init()
    const kid = await keys.rotate()
    const { audit } = keyStoreFor(loaded)
    audit.record({ event: 'signing-key.rotated', kid, decision: 'allow', reason: 'OK', transport: 'cli' })
    audit.close()
    process.stdout.write(`signing key ${kid} now signs; older keys verify for ${tokenService.accessTokenSeconds} s more\n`)
    return
  }
  throw new UsageError(`keys: unknown subcommand ${JSON.stringify(sub ?? '')} (create, list, revoke, rotate-signing)`)
}

function config(args: string[]): void {
  const [sub, file, ...extra] = args
  if (sub !== 'check' || file === undefined || extra.length > 0) throw new UsageError('usage: mcp-bastion config check FILE')
  // Bound to the built-in tools' definitions, as serve would bind it: nothing is opened or created.
  const bound = bindBuiltins(loadConfigFile(file))
  const { config } = bound.loaded
  process.stdout.write(`${file}: OK (${Object.keys(config.roles).length} roles, ${config.auth.keys.length} configured keys, ${bound.registry.all().length} tools)\n`)
}

/**
 * `secrets rotate`: a new active key (the state directory's keyring; with configured keys, the
 * configured `active` one), then everything stored encrypted is re-encrypted under it.
 */
async function secretsCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string' } }, allowPositionals: true, strict: true })
  if (positionals[0] !== 'rotate' || positionals.length !== 1) throw new UsageError('usage: mcp-bastion secrets rotate [--config FILE]')
  const loaded = loadConfig(values.config)
  const keyring = loaded.config.secrets.keys === undefined ? rotateFileKeyring(statePath(loaded, loaded.config.secrets.keyringFile)) : keyringFor(loaded)
  const vault = new Vault(statePath(loaded, loaded.config.vault.file), () => keyring).reencrypt(keyring)
  const { tokenService } = loaded.config.auth
  const signing = new SigningKeys(statePath(loaded, tokenService.signingKeysFile), tokenService.accessTokenSeconds, () => keyring).reencrypt(keyring)
  const { audit } = keyStoreFor(loaded)
  audit.record({ event: 'secrets.rotated', key: keyring.activeId, decision: 'allow', reason: 'OK', transport: 'cli', vaultEntries: vault, signingKeys: signing })
  audit.close()
  process.stdout.write(`key ${keyring.activeId} is active; re-encrypted ${vault} vault entr${vault === 1 ? 'y' : 'ies'} and ${signing} signing key(s)\n`)
}

async function auditCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string' }, postgres: { type: 'boolean' } }, allowPositionals: true, strict: true })
  const [sub, ...files] = positionals
  if (sub !== 'verify' || (files.length === 0) === (values.postgres !== true))
    throw new UsageError('usage: mcp-bastion audit verify FILE [FILE…] | --postgres  [--config FILE]  (files oldest first)')
  const loaded = loadConfig(values.config)
  const pgConfig = loaded.config.audit.postgres
  if (values.postgres === true && pgConfig === undefined) throw new UsageError('audit verify --postgres: audit.postgres is not configured')
  const texts =
    values.postgres === true && pgConfig !== undefined
      ? [{ name: pgConfig.table, text: await PostgresAuditSink.readAll(readSecret(loaded, pgConfig.url, 'audit.postgres.url'), pgConfig.table) }]
      : readAuditFiles(files)
  reportVerify(texts, auditKey(loaded))
}

function readAuditFiles(files: readonly string[]): { name: string; text: string }[] {
  return files.map((name) => {
    try {
      return { name, text: readFileSync(name, 'utf8') }
    } catch (error) {
      throw new UsageError(`audit verify: cannot read ${name} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
  })
}

function reportVerify(texts: readonly { name: string; text: string }[], key: Buffer): void {
  const report = verifyAudit(texts, key)
  if (!report.ok) {
    const p = report.problem
    process.stdout.write(`FAIL ${p?.file}:${p?.line}: ${p?.reason} (${report.lines} lines verified before it)\n`)
    process.exitCode = 1
    return
  }
  const open = report.open.length === 0 ? '' : `; ${report.open.length} writer(s) without audit.closed (running, crashed, or the tail was cut): ${report.open.join(', ')}`
  process.stdout.write(`OK: ${report.lines} lines from ${report.writers} writer(s) verify${open}\n`)
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  switch (command) {
    case 'serve':
      return serve(rest)
    case 'keys':
      return keys(rest)
    case 'config':
      return config(rest)
    case 'policy':
      return policyCommand(rest, loadConfig)
    case 'audit':
      return auditCommand(rest)
    case 'secrets':
      return secretsCommand(rest)
    case '--version':
    case '-v':
      process.stdout.write(`${VERSION}\n`)
      return
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP)
      return
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}\n\n${HELP}`)
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ConfigError || error instanceof UsageError || error instanceof PolicyUsageError) process.stderr.write(`mcp-bastion: ${error.message}\n`)
  else if (error instanceof SecurityError) process.stderr.write(`mcp-bastion: refused: ${error.code}\n`)
  else if (error instanceof Error && 'code' in error && typeof error.code === 'string' && error.code.startsWith('ERR_PARSE_ARGS'))
    process.stderr.write(`mcp-bastion: ${error.message}\n`)
  else process.stderr.write(`mcp-bastion: unexpected error: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(error instanceof UsageError || error instanceof ConfigError || error instanceof PolicyUsageError ? 2 : 1)
})
