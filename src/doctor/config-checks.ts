import { X509Certificate } from 'node:crypto'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { KeyStore } from '../auth/key-store.js'
import { secretRefs } from '../cli/secret-refs.js'
import type { BoundConfig } from '../compose/bind.js'
import { lockPath } from '../compose/gateway.js'
import { ConfigError, type LoadedConfig, readSecret, resolvePath, statePath } from '../config/load.js'
import { isLoopback } from '../config/urls.js'
import { readPins } from '../gateway/lock-file.js'
import { parseRate } from '../limits/token-bucket.js'
import { type Finding, fail, pass, warn } from './findings.js'
import { weakSecretReason } from './weak-secret.js'

export interface DoctorContext {
  readonly loaded: LoadedConfig
  readonly env: NodeJS.ProcessEnv
  readonly now: Date
}

const DAY_MS = 86_400_000
/** A key older than this should have been rotated. */
const ROTATION_DAYS = 90
/** A certificate expiring within this many days is a warning. */
const CERT_WARN_DAYS = 30

/** `server.host` without TLS off loopback; with TLS, the certificate's expiry and key size. */
export function tlsCheck({ loaded, now, env }: DoctorContext): Finding[] {
  const { server } = loaded.config
  if (server.tls === undefined) {
    if (isLoopback(server.host)) return [pass('tls', `server.host ${server.host} is loopback: plain HTTP stays on this machine`)]
    const f = server.dangerouslyAllowPlaintext ? warn : fail
    return [f('tls', `server.host ${server.host} is not loopback and server.tls is not set: credentials cross the network in clear`, 'set server.tls.cert and server.tls.key')]
  }
  let cert: X509Certificate
  try {
    cert = new X509Certificate(readSecret(loaded, server.tls.cert, 'server.tls.cert', env))
  } catch (error) {
    return [fail('tls', error instanceof ConfigError ? error.message : 'server.tls.cert is not a PEM certificate', 'point server.tls.cert at a PEM certificate')]
  }
  const out: Finding[] = []
  const left = (Date.parse(cert.validTo) - now.getTime()) / DAY_MS
  if (left <= 0) out.push(fail('tls.expiry', `the certificate expired on ${cert.validTo}`, 'renew the certificate'))
  else if (left < CERT_WARN_DAYS) out.push(warn('tls.expiry', `the certificate expires in ${Math.floor(left)} day(s) (${cert.validTo})`, 'renew the certificate'))
  else out.push(pass('tls.expiry', `the certificate is valid until ${cert.validTo}`))
  const key = cert.publicKey
  const bits = key.asymmetricKeyDetails?.modulusLength
  if (key.asymmetricKeyType === 'rsa' && bits !== undefined && bits < 2048)
    out.push(fail('tls.key', `the certificate's RSA key has ${bits} bits`, 'use an RSA key of 2048 bits or more, or an EC key'))
  else out.push(pass('tls.key', `the certificate's key is ${key.asymmetricKeyType ?? 'unknown'}${bits === undefined ? '' : ` ${bits} bits`}`))
  return out
}

/** Every `dangerously*` option that is on, by its key path. */
export function dangerousOptions({ loaded }: DoctorContext): Finding[] {
  const on: string[] = []
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) for (const [i, v] of value.entries()) walk(v, `${path}.${i}`)
    else if (value !== null && typeof value === 'object')
      for (const [k, v] of Object.entries(value)) {
        const at = path === '' ? k : `${path}.${k}`
        if (k.startsWith('dangerously') && v === true) on.push(at)
        else walk(v, at)
      }
  }
  walk(loaded.config, '')
  if (on.length === 0) return [pass('dangerous-options', 'no dangerously* option is on')]
  return on.map((at) => warn('dangerous-options', `${at} is on: a protection is switched off`, `remove ${at} unless this deployment needs it, and say why where it is set`))
}

/** Each secret reference resolves; a secret file is not readable by others; HS256 secrets are not guessable. */
export function secretsCheck({ loaded, env }: DoctorContext): Finding[] {
  const out: Finding[] = []
  for (const { path, ref } of secretRefs(loaded.config)) {
    let value: string
    try {
      value = readSecret(loaded, ref, path, env)
    } catch (error) {
      out.push(
        fail(
          'secrets',
          error instanceof ConfigError ? error.message.replace(`config ${loaded.source}: `, '') : `${path}: unreadable`,
          `set ${'env' in ref ? `the variable ${ref.env}` : `the file ${ref.file}`}`,
        ),
      )
      continue
    }
    if ('file' in ref) {
      const mode = statSync(resolvePath(loaded, ref.file)).mode & 0o777
      if (mode & 0o004) out.push(fail('secrets', `${path}: the file ${ref.file} is readable by every user (mode ${mode.toString(8)})`, `chmod 600 ${ref.file}`))
      else if (mode & 0o070) out.push(warn('secrets', `${path}: the file ${ref.file} is readable by its group (mode ${mode.toString(8)})`, `chmod 600 ${ref.file}`))
    }
    const issuer = /^auth\.issuers\.(\d+)\.secret$/.exec(path)
    if (issuer !== null) {
      const weak = weakSecretReason(value)
      if (weak !== undefined) out.push(fail('secrets', `${path}: the HS256 secret is guessable: ${weak}`, 'replace it with a random one (openssl rand -base64 32)'))
    }
  }
  if (out.length === 0) out.push(pass('secrets', 'every secret comes from the environment or a private file (the config cannot hold one inline), and resolves'))
  return out
}

// The files in the state folder that hold keys or secrets.
const PRIVATE_FILES = /(^|\.)(key|keys|pem)$|keys\.json$|keyring|vault|signing|secret|tokens|clients|grants/

/** The state folder is the owner's alone (0700), and so is every key file in it (0600). */
export function stateCheck({ loaded }: DoctorContext): Finding[] {
  const dir = statePath(loaded, '.')
  if (!existsSync(dir)) return [pass('state', `the state folder ${loaded.config.stateDir} does not exist yet: serve creates it with mode 700`)]
  const out: Finding[] = []
  const mode = statSync(dir).mode & 0o777
  if (mode & 0o077)
    out.push(fail('state', `the state folder ${loaded.config.stateDir} has mode ${mode.toString(8)}: other users may reach its keys`, `chmod 700 ${loaded.config.stateDir}`))
  for (const name of readdirSync(dir)) {
    const file = join(dir, name)
    const s = statSync(file)
    if (!s.isFile() || !PRIVATE_FILES.test(name)) continue
    const m = s.mode & 0o777
    if (m & 0o077)
      out.push(fail('state', `${join(loaded.config.stateDir, name)} has mode ${m.toString(8)}: readable beyond its owner`, `chmod 600 ${join(loaded.config.stateDir, name)}`))
  }
  if (out.length === 0) out.push(pass('state', `the state folder ${loaded.config.stateDir} and its key files are private to their owner`))
  return out
}

/** Roles holding `*` besides admin; tools no role's permission names (only `*` reaches them). */
export function grantsCheck(bound: BoundConfig): Finding[] {
  const out: Finding[] = []
  for (const [role, permissions] of bound.grants.roles)
    if (permissions.has('*') && role !== 'admin')
      out.push(warn('roles', `role ${role} holds * (every tool, resource and prompt)`, `give ${role} the permissions it needs instead of *`))
  const unguarded = bound.registry
    .all()
    .map((t) => t.definition.name)
    .filter((name) => (bound.grants.targets.get(`tool:${name}`) ?? []).length === 0)
  if (unguarded.length > 0)
    out.push(warn('tools', `no permission names ${unguarded.join(', ')}: only roles holding * may call ${unguarded.length === 1 ? 'it' : 'them'}`, 'set tools.<name>.permissions'))
  if (out.length === 0) out.push(pass('roles', 'only admin holds *, and every tool has a permission'))
  return out
}

/** Limits on anonymous callers and on principals that limit something. */
export function limitsCheck({ loaded }: DoctorContext): Finding[] {
  const { limits } = loaded.config
  const perMinute = (rate: string): number => {
    const r = parseRate(rate)
    return r === undefined ? Number.POSITIVE_INFINITY : r.perMs * 60_000
  }
  const out: Finding[] = []
  if (perMinute(limits.anonymous.rate) > 600)
    out.push(warn('limits', `limits.anonymous is ${limits.anonymous.rate}: failed authentication is barely slowed`, 'keep limits.anonymous at or below 600/min'))
  if (perMinute(limits.principal.rate) > 60_000)
    out.push(warn('limits', `limits.principal is ${limits.principal.rate}: effectively no limit`, 'set limits.principal to what one caller needs'))
  if (out.length === 0) out.push(pass('limits', `anonymous ${limits.anonymous.rate}, principal ${limits.principal.rate} (${limits.backend})`))
  return out
}

/** API keys without expiry or past their rotation age. Reads the key store; writes nothing. */
export function keysCheck({ loaded, now }: DoctorContext, lastSeen?: ReadonlyMap<string, string>): Finding[] {
  const file = statePath(loaded, loaded.config.auth.keysFile)
  if (!existsSync(file)) return [pass('keys', 'no key store yet')]
  const live = new KeyStore(file, [], 0).list().filter((k) => k.revokedAt === null && (k.expiresAt === null || Date.parse(k.expiresAt) > now.getTime()))
  const out: Finding[] = []
  const old = live.filter((k) => now.getTime() - Date.parse(k.createdAt) > ROTATION_DAYS * DAY_MS)
  if (old.length > 0)
    out.push(warn('keys', `${old.length} key(s) older than ${ROTATION_DAYS} days: ${old.map((k) => k.id).join(', ')}`, 'rotate them: keys create, then keys revoke ID'))
  const forever = live.filter((k) => k.expiresAt === null)
  if (forever.length > 0) out.push(warn('keys', `${forever.length} key(s) never expire: ${forever.map((k) => k.id).join(', ')}`, 'create keys with --expires'))
  // Use is read from the audit trail (a key is not written to when used): no line of it, never used.
  if (lastSeen !== undefined) {
    const unused = live.filter((k) => !lastSeen.has(`key:${k.id}`))
    if (unused.length > 0)
      out.push(
        warn('keys', `${unused.length} key(s) never used (no line of theirs in the audit trail): ${unused.map((k) => k.id).join(', ')}`, 'revoke keys nobody uses: keys revoke ID'),
      )
  }
  if (out.length === 0) out.push(pass('keys', `${live.length} active key(s), each expiring and younger than ${ROTATION_DAYS} days`))
  return out
}

/** Each upstream has pinned tool definitions, enforced: unpinned with `pin: warn`/`off` serves whatever the upstream says. */
export function upstreamsCheck({ loaded }: DoctorContext): Finding[] {
  const entries = Object.entries(loaded.config.upstreams)
  if (entries.length === 0) return []
  const pins = readPins(lockPath(loaded))
  const out: Finding[] = []
  for (const [name, u] of entries) {
    if (!pins.has(name)) {
      const f = u.pin === undefined || u.pin === 'enforce' ? fail : warn
      out.push(
        f(
          'upstreams',
          `upstream ${name} has no pinned tool definitions${u.pin === undefined ? ': start-up refuses it' : ` and pin: ${u.pin}`}`,
          `mcp-bastion upstreams pin ${name}, then review and commit the lock file`,
        ),
      )
    } else if (u.pin === 'warn' || u.pin === 'off')
      out.push(warn('upstreams', `upstream ${name} is pinned but pin: ${u.pin} lets a changed definition through`, `remove pin: ${u.pin} from upstreams.${name}`))
  }
  if (out.length === 0) out.push(pass('upstreams', `${entries.length} upstream(s), each pinned and enforced`))
  return out
}
