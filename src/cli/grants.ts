import { listGrants, revokeGrant } from '../auth/grants.js'
import { authorizationStores } from '../auth/setup.js'
import { GRANTS_REVOKE } from './commands.js'
import { loadConfig } from './config-path.js'
import { auditTrail } from './keys.js'
import { EXIT, type Parsed, UsageError } from './usage.js'

const iso = (ms: number): string => new Date(ms).toISOString()

export async function grantsList(p: Parsed): Promise<number> {
  const loaded = loadConfig(p.string('config'))
  const stores = authorizationStores(loaded, process.env)
  try {
    const grants = await listGrants(stores.oauth)
    const rows = grants.map((g) => ({
      id: g.id,
      user: g.user.sub,
      name: g.user.name,
      via: g.user.via,
      roles: g.user.roles,
      client: g.clientId,
      clientName: g.clientName,
      scopes: g.scopes,
      createdAt: iso(g.createdAt),
      lastUsedAt: iso(g.lastUsedAt),
    }))
    if (p.flag('json')) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    else if (rows.length === 0) process.stdout.write('no grants\n')
    else
      for (const r of rows)
        process.stdout.write(
          `${r.id}  ${r.user}  (${r.name})  → ${r.clientName} <${r.client}>  scopes: ${r.scopes.join(' ') || '-'}  since ${r.createdAt}, last used ${r.lastUsedAt}\n`,
        )
    return EXIT.ok
  } finally {
    await stores.refresh.close()
    await stores.oauth.close()
  }
}

export async function grantsRevoke(p: Parsed): Promise<number> {
  const id = p.positionals[0] ?? ''
  if (!/^[0-9a-f]{32}$/.test(id)) throw new UsageError(GRANTS_REVOKE, `${JSON.stringify(id.slice(0, 40))} is not a grant id (32 hex characters, see grants list)`)
  const loaded = loadConfig(p.string('config'))
  const stores = authorizationStores(loaded, process.env)
  try {
    // Opened first: a trail sealed under another key refuses before anything changes.
    const audit = auditTrail(loaded)
    const { tokenService } = loaded.config.auth
    const grant = await revokeGrant(stores.oauth, stores.refresh, id, tokenService)
    if (grant === undefined) {
      audit.close()
      throw new UsageError(GRANTS_REVOKE, `no grant with id ${id}`)
    }
    audit.record({
      event: 'grant.revoked',
      principal: grant.user.via === 'api-key' ? `key:${grant.user.sub}` : grant.user.sub,
      client: grant.clientId,
      grant: id,
      families: grant.families.length,
      decision: 'allow',
      reason: 'OK',
      transport: 'cli',
    })
    audit.close()
    process.stdout.write(
      `revoked grant ${id} (${grant.user.name} → ${grant.clientName}); ${grant.families.length} refresh token famil${grant.families.length === 1 ? 'y' : 'ies'} revoked\n`,
    )
    return EXIT.ok
  } finally {
    await stores.refresh.close()
    await stores.oauth.close()
  }
}
