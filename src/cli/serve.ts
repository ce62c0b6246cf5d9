import { createBastion } from '../bastion.js'
import { ConfigError, statePath } from '../config/load.js'
import { serveStdio } from '../transport/stdio.js'
import { SERVE } from './commands.js'
import { configPath } from './config-path.js'
import { type Parsed, UsageError } from './usage.js'

function parsePort(text: string | undefined, where: string): number | undefined {
  if (text === undefined || text === '') return undefined
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new UsageError(SERVE, `${where}: ${JSON.stringify(text.slice(0, 40))} is not a port number (0-65535)`)
  return Number(text)
}

/** `serve`: resolves once listening; the process then runs until a signal (or stdin ends, with --stdio). */
export async function serve(p: Parsed): Promise<void> {
  const host = p.string('host') ?? (process.env.BASTION_HOST === '' ? undefined : process.env.BASTION_HOST)
  const port = parsePort(p.string('port'), '--port') ?? parsePort(process.env.BASTION_PORT, 'BASTION_PORT')
  const path = configPath(p.string('config'))
  const bastion = await createBastion(path === undefined ? {} : { config: path })
  if (p.flag('stdio')) {
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
  // With the audit trail on stdout, everything else for people goes to stderr.
  const say = bastion.loaded.config.audit.sink === 'stdout' ? process.stderr : process.stdout
  if (bastion.keys.list().length === 0) {
    const adminRole = Object.entries(bastion.loaded.config.roles).find(([, r]) => r.permissions.includes('*'))?.[0]
    if (adminRole === undefined) throw new ConfigError('no API keys exist and no role holds "*": create a key with `mcp-bastion keys create --role ROLE`')
    const { key, stored } = bastion.keys.create({ name: 'admin (first run)', roles: [adminRole], expiresAt: null })
    bastion.audit.record({ event: 'key.created', principal: `key:${stored.id}`, roles: stored.roles, decision: 'allow', reason: 'OK', cause: 'first run' })
    say.write(
      `\nFirst run: created an admin API key. It is shown only now and stored only as a hash:\n\n  ${key}\n\nUse it as "Authorization: Bearer <key>" or "X-API-Key: <key>". More keys: mcp-bastion keys create --role ROLE\n\n`,
    )
  }
  const running = await bastion.listen({ ...(host === undefined ? {} : { host }), ...(port === undefined ? {} : { port }) })
  const { audit } = bastion.loaded.config
  const auditWhere = audit.sink === 'file' ? statePath(bastion.loaded, audit.file) : audit.sink === 'stdout' ? 'stdout' : `postgres table ${audit.postgres?.table ?? ''}`
  say.write(`mcp-bastion listening on ${running.url} (config: ${bastion.loaded.source}; audit: ${auditWhere})\n`)
  const stop = async (): Promise<void> => {
    await bastion.close()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop())
  process.once('SIGTERM', () => void stop())
}
