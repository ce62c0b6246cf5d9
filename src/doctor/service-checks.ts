import { readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import pg from 'pg'
import { keptAuditKeys, readAuditKey, trailFiles } from '../audit/audit-key.js'
import { verifyAudit } from '../audit/chain.js'
import { PostgresAuditSink } from '../audit/sinks.js'
import { ConfigError, readSecret, statePath } from '../config/load.js'
import { connectRedis, redisReady } from '../config/redis.js'
import type { SecretRef } from '../config/secret-ref.js'
import type { DoctorContext } from './config-checks.js'
import { type Finding, fail, pass, warn } from './findings.js'

/** How long a service may take to answer before it counts as unreachable. */
const REACH_MS = 3000

function secretOf(ctx: DoctorContext, ref: SecretRef, where: string): string | undefined {
  try {
    return readSecret(ctx.loaded, ref, where, ctx.env)
  } catch (error) {
    if (error instanceof ConfigError) return undefined
    throw error
  }
}

/**
 * The audit trail: its key is present, and every line verifies under it (the same verifier as
 * `audit verify`); a PostgreSQL sink is read from its table. Reads only: a missing key is not made.
 */
export async function auditCheck(ctx: DoctorContext, read?: (texts: readonly { name: string; text: string }[]) => void): Promise<Finding[]> {
  const { audit } = ctx.loaded.config
  if (audit.sink === 'stdout')
    return [
      warn(
        'audit',
        'audit.sink is stdout: the trail is only as durable and as protected as what reads it',
        'use the file or postgres sink, or make sure a collector stores every line',
      ),
    ]
  const key = (() => {
    try {
      return readAuditKey(ctx.loaded, ctx.env)
    } catch (error) {
      if (error instanceof ConfigError) return undefined
      throw error
    }
  })()
  let texts: { name: string; text: string }[]
  if (audit.sink === 'postgres') {
    const url = audit.postgres === undefined ? undefined : secretOf(ctx, audit.postgres.url, 'audit.postgres.url')
    if (url === undefined || audit.postgres === undefined) return [fail('audit', 'audit.postgres.url does not resolve', 'set the variable or file audit.postgres.url names')]
    try {
      texts = [{ name: audit.postgres.table, text: await withTimeout(PostgresAuditSink.readAll(url, audit.postgres.table), 'PostgreSQL') }]
    } catch {
      return [
        fail(
          'audit',
          `the audit table ${audit.postgres.table} cannot be read (PostgreSQL unreachable, or no such table yet)`,
          'check audit.postgres.url and that PostgreSQL is up',
        ),
      ]
    }
  } else {
    const files = trailFiles(statePath(ctx.loaded, audit.file)).reverse()
    texts = files.map((name) => ({ name, text: readFileSync(name, 'utf8') }))
  }
  read?.(texts)
  const lines = texts.reduce((n, t) => n + (t.text.length === 0 ? 0 : t.text.split('\n').length - 1), 0)
  if (key === undefined) {
    if (lines === 0) return [pass('audit', 'no audit trail and no audit key yet: serve creates both')]
    return [
      fail('audit', `the audit trail has ${lines} line(s) but no audit key was found: it cannot be verified`, 'restore audit.key to the state folder (or audit.key in the config)'),
    ]
  }
  if (lines === 0) return [pass('audit', 'the audit key is present; the trail is empty')]
  const keys = [key, ...keptAuditKeys(dirname(statePath(ctx.loaded, 'audit.key')))]
  const report = verifyAudit(texts, keys)
  if (!report.ok) {
    const first = report.problems[0]
    return [
      fail(
        'audit',
        `the audit trail does not verify: ${report.problems.length} problem(s)${first === undefined ? '' : `, first at ${first.file}:${first.line}: ${first.reason}`}`,
        'run mcp-bastion audit verify to see every problem; restore the file or the key',
      ),
    ]
  }
  return [pass('audit', `${report.lines} audit line(s) from ${report.writers} writer(s) verify under the audit key`)]
}

/**
 * The principals that made requests in a trail, each with the time of its last one (which key was
 * used, and when). Lines about a key (`key.created`, `key.revoked`) are not its use.
 */
export function principalsOf(texts: readonly { text: string }[]): Map<string, string> {
  const seen = new Map<string, string>()
  for (const { text } of texts)
    for (const line of text.split('\n')) {
      if (!line.includes('"principal":"')) continue
      try {
        const l = JSON.parse(line) as { principal?: unknown; ts?: unknown; event?: unknown }
        if (typeof l.event === 'string' && l.event.startsWith('key.')) continue
        if (typeof l.principal === 'string' && typeof l.ts === 'string') seen.set(l.principal, l.ts)
      } catch {
        // A torn or edited line: the verifier reports it.
      }
    }
  return seen
}

/** Redis and PostgreSQL the config names answer (within a few seconds). */
export async function servicesCheck(ctx: DoctorContext): Promise<Finding[]> {
  const { config } = ctx.loaded
  const redis: [string, SecretRef][] = []
  if (config.limits.backend === 'redis' && config.limits.redis !== undefined) redis.push(['limits.redis.url', config.limits.redis.url])
  const tokenRedis = config.auth.tokenService?.redis
  if (config.auth.tokenService?.store === 'redis' && tokenRedis !== undefined) redis.push(['auth.tokenService.redis.url', tokenRedis.url])
  const postgres: [string, SecretRef][] = []
  if (config.sql.url !== undefined) postgres.push(['sql.url', config.sql.url])
  const out: Finding[] = []
  for (const [where, ref] of redis) {
    const url = secretOf(ctx, ref, where)
    if (url === undefined) continue // the secrets check says why
    const client = connectRedis(url, { timeoutMs: REACH_MS, label: where })
    try {
      const up = await redisReady(client, REACH_MS)
      out.push(
        up ? pass('services', `Redis at ${where} answers`) : fail('services', `Redis at ${where} does not answer within ${REACH_MS / 1000} s`, 'start Redis, or fix the URL'),
      )
    } finally {
      client.disconnect()
    }
  }
  for (const [where, ref] of postgres) {
    const url = secretOf(ctx, ref, where)
    if (url === undefined) continue
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: REACH_MS })
    client.on('error', () => undefined)
    try {
      await client.connect()
      await client.query('SELECT 1')
      out.push(pass('services', `PostgreSQL at ${where} answers`))
    } catch {
      out.push(fail('services', `PostgreSQL at ${where} does not answer`, 'start PostgreSQL, or fix the URL'))
    } finally {
      await client.end().catch(() => undefined)
    }
  }
  return out
}

/** The clock of each issuer with a JWKS URL, by its `Date` header, against this machine's. */
export async function issuerClockCheck(ctx: DoctorContext): Promise<Finding[]> {
  const out: Finding[] = []
  for (const [i, issuer] of ctx.loaded.config.auth.issuers.entries()) {
    if (issuer.jwksUri === undefined) continue
    const where = `auth.issuers.${i}`
    let date: string | null
    try {
      const res = await fetch(issuer.jwksUri, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(REACH_MS) })
      await res.body?.cancel()
      date = res.headers.get('date')
    } catch {
      out.push(fail('issuers', `${where}: the JWKS URL does not answer`, `check ${where}.jwksUri and the network`))
      continue
    }
    const at = date === null ? Number.NaN : Date.parse(date)
    if (Number.isNaN(at)) {
      out.push(warn('issuers', `${where}: the JWKS answer has no Date header: clock skew unknown`, 'check the issuer clock by other means'))
      continue
    }
    // The Date header has whole seconds: a skew under 2 s is not measurable this way.
    const skew = Math.abs(ctx.now.getTime() - at) / 1000
    if (skew > issuer.clockSkewSeconds)
      out.push(
        fail(
          'issuers',
          `${where}: the issuer's clock is ${Math.round(skew)} s off this machine's, more than clockSkewSeconds (${issuer.clockSkewSeconds})`,
          'synchronise both clocks (NTP)',
        ),
      )
    else out.push(pass('issuers', `${where}: the issuer's clock is within ${Math.max(2, Math.round(skew))} s of this machine's`))
  }
  return out
}

async function withTimeout<T>(run: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([run, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} timed out`)), REACH_MS)))])
  } finally {
    clearTimeout(timer)
  }
}
