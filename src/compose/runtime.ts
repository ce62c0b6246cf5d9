import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { AlertEngine, type Webhook } from '../audit/alerts.js'
import { fileTrailTail, keptAuditKeys, sinkTrailTail, writerAuditKey } from '../audit/audit-key.js'
import { AuditLog, type AuditSink, FileAuditSink } from '../audit/audit-log.js'
import { operatorLog } from '../audit/operator-log.js'
import { PostgresAuditSink, StdoutAuditSink } from '../audit/sinks.js'
import { hashApiKey, parseApiKey } from '../auth/api-key.js'
import { KeyStore, type StoredKey } from '../auth/key-store.js'
import { type AuthSetup, setupAuth } from '../auth/setup.js'
import { ConfigError, type LoadedConfig, readSecret, statePath } from '../config/load.js'
import { ensureState } from '../config/state.js'
import { secureUrl } from '../config/urls.js'
import { FileTrailReader } from '../console/file-trail.js'
import { PostgresTrailReader } from '../console/postgres-trail.js'
import type { TrailReader } from '../console/trail.js'
import { ConcurrencyCaps } from '../limits/concurrency.js'
import { MemoryRateLimiter, type RateLimiter } from '../limits/memory-limiter.js'
import { RedisRateLimiter } from '../limits/redis-limiter.js'
import { Metrics } from '../pipeline/metrics.js'
import { type Keyring, type KeyringSignals, watchedKeyring } from '../protect/keyring.js'
import { DEFAULT_SECRET_KEYS, redactor } from '../protect/redact.js'
import { keyringFor } from '../protect/setup.js'
import { startTracing, type Tracing } from '../telemetry/tracing.js'
import { openToolResources, type ToolResources } from '../tools/setup.js'
import { ResourceUri } from './address.js'
import type { CheckedConfig } from './bind.js'

export interface RuntimeOptions {
  /** Audit sink instead of the configured one. */
  readonly auditSink?: AuditSink
  /** Operator log (pino). Default: JSON to stderr. */
  readonly logger?: Logger
  /** Environment to read secret references from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv
  /** A rate-limit backend instead of the configured one; the runtime closes it. */
  readonly rateLimiter?: RateLimiter
}

/**
 * What a bastion holds open whatever is registered, opened from the checked config by
 * {@link openRuntime}: the state folder, audit trail, key store, alerts, rate-limit backend,
 * authentication, keyring and what the built-in tools use.
 */
export interface Runtime {
  readonly loaded: LoadedConfig
  readonly log: Logger
  readonly audit: AuditLog
  readonly keys: KeyStore
  readonly alerts: AlertEngine
  readonly limiter: RateLimiter
  readonly caps: ConcurrencyCaps
  readonly metrics: Metrics
  readonly auth: AuthSetup
  /** Configured, or fixed when serving starts. */
  readonly resource: ResourceUri
  /** The keyring for encryption at rest, read again when `mcp-bastion secrets rotate` changes its file. @throws ConfigError */
  readonly keyring: () => Keyring
  readonly tools: ToolResources
  /** OpenTelemetry traces, when `telemetry.otlp` is configured. */
  readonly tracing: Tracing | undefined
  /** The audit trail as the console reads it: the file or PostgreSQL table (none for stdout, a caller's sink, or with the console off). */
  readonly trail: TrailReader | undefined
  /** Close the backends, authentication, the tools' resources, then the audit trail. */
  close(): Promise<void>
}

/** The keys declared in config, their secrets read from the environment. @throws ConfigError naming the key */
function configuredKeys(loaded: LoadedConfig, env: NodeJS.ProcessEnv): StoredKey[] {
  return loaded.config.auth.keys.map((k, i): StoredKey => {
    const where = `auth.keys.${i}.key`
    const key = readSecret(loaded, k.key, where, env)
    const parsed = parseApiKey(key)
    if (parsed === undefined) throw new ConfigError(`config ${loaded.source}: ${where}: the value is not a bastion API key (bst_<id>_<secret>)`)
    return {
      id: parsed.id,
      name: k.name,
      roles: k.roles,
      ...(k.tenant === undefined ? {} : { tenant: k.tenant }),
      hash: hashApiKey(key),
      createdAt: new Date(0).toISOString(),
      expiresAt: k.expires === undefined ? null : new Date(k.expires).toISOString(),
      revokedAt: null,
      source: 'config',
    }
  })
}

function webhookOf(loaded: LoadedConfig, env: NodeJS.ProcessEnv): Webhook | undefined {
  const hook = loaded.config.alerts.webhook
  if (hook === undefined) return undefined
  const url = secureUrl(loaded, 'alerts.webhook.url', hook.url)
  return { url, timeoutMs: hook.timeoutMs, secret: hook.secret === undefined ? undefined : readSecret(loaded, hook.secret, 'alerts.webhook.secret', env) }
}

async function rateLimiterFor(loaded: LoadedConfig, env: NodeJS.ProcessEnv, log: Logger): Promise<RateLimiter> {
  const { limits } = loaded.config
  if (limits.backend !== 'redis' || limits.redis === undefined) return new MemoryRateLimiter()
  const url = readSecret(loaded, limits.redis.url, 'limits.redis.url', env)
  if (!/^rediss?:\/\//.test(url)) throw new ConfigError(`config ${loaded.source}: limits.redis.url: not a redis:// or rediss:// URL`)
  const redis = new RedisRateLimiter({
    url,
    keyPrefix: limits.redis.keyPrefix,
    timeoutMs: limits.redis.timeoutMs,
    onError: (e) => log.warn({ err: { message: e.message } }, 'rate limiter backend'),
  })
  // Commands are not queued while disconnected: wait for the first connection, so that the first
  // requests are not refused for a race. Unreachable at start: serve, and fail closed until it is.
  await redis.ready(Math.max(2000, limits.redis.timeoutMs)).catch(() => log.warn('rate limiter: Redis is not reachable; requests fail closed until it is'))
  return redis
}

/** The configured audit sink; undefined means the file. @throws ConfigError */
async function auditSinkFor(loaded: LoadedConfig, env: NodeJS.ProcessEnv, log: Logger): Promise<AuditSink | undefined> {
  const { audit } = loaded.config
  if (audit.sink === 'file') return undefined
  if (audit.sink === 'stdout') return new StdoutAuditSink(audit.stdoutBufferBytes)
  if (audit.postgres === undefined) throw new ConfigError(`config ${loaded.source}: audit.postgres: required for sink postgres`)
  const url = readSecret(loaded, audit.postgres.url, 'audit.postgres.url', env)
  try {
    const { table, maxQueueBytes, maxQueueLines } = audit.postgres
    return await PostgresAuditSink.open(url, table, (e) => log.error({ err: { message: e.message } }, 'audit database'), { maxQueueBytes, maxQueueLines })
  } catch (error) {
    // Fail closed at start: no audit trail, no service.
    throw new ConfigError(
      `config ${loaded.source}: audit.postgres: cannot open the audit table (${error instanceof Error ? error.message.replace(/postgres(ql)?:\/\/[^\s]*/gi, '[url]') : 'error'})`,
    )
  }
}

/** The console's reader of the configured trail: the file (and its rotated siblings) or the PostgreSQL table; none for stdout. */
async function trailReaderFor(loaded: LoadedConfig, env: NodeJS.ProcessEnv, key: Buffer, auditFile: string): Promise<TrailReader | undefined> {
  const { audit } = loaded.config
  // Old keys `audit rotate-key` kept verify the lines sealed before a rotation.
  const keys = [key, ...keptAuditKeys(dirname(statePath(loaded, 'audit.key')))]
  if (audit.sink === 'file') return new FileTrailReader({ file: auditFile, keys })
  if (audit.sink !== 'postgres' || audit.postgres === undefined) return undefined
  try {
    return await PostgresTrailReader.open({ url: readSecret(loaded, audit.postgres.url, 'audit.postgres.url', env), table: audit.postgres.table, keys })
  } catch (error) {
    throw new ConfigError(
      `config ${loaded.source}: console: cannot read the audit table (${error instanceof Error ? error.message.replace(/postgres(ql)?:\/\/[^\s]*/gi, '[url]') : 'error'}); set console.enabled: false to serve without the console`,
    )
  }
}

/** The keyring, rebuilt when its file changes (`secrets rotate` in another process); a change that does not load is refused and signalled. */
function keyringSource(loaded: LoadedConfig, env: NodeJS.ProcessEnv, signals: KeyringSignals): () => Keyring {
  const { secrets } = loaded.config
  return watchedKeyring(secrets.keys === undefined ? statePath(loaded, secrets.keyringFile) : undefined, () => keyringFor(loaded, env), signals)
}

/**
 * Open the runtime, in one pass: secrets first (a missing one fails before anything is created),
 * then the rate-limit backend, the audit sink, the state folder, audit log, key store, alerts,
 * authentication and the built-in tools' resources. What was opened is closed again when a later
 * step fails. @throws ConfigError for an unusable setting or a missing secret
 */
export async function openRuntime(checked: CheckedConfig, options: RuntimeOptions): Promise<Runtime> {
  const { loaded } = checked
  const { config } = loaded
  const env = options.env ?? process.env
  const configKeys = configuredKeys(loaded, env)
  const webhook = webhookOf(loaded, env)
  const log = options.logger ?? operatorLog(config.audit.redactKeys)
  let limiter: RateLimiter | undefined = options.rateLimiter
  let audit: AuditLog | undefined
  let auth: AuthSetup | undefined
  let tools: { resources: ToolResources; close(): Promise<void> } | undefined
  let tracing: Tracing | undefined
  let reader: TrailReader | undefined
  const close = async (): Promise<void> => {
    await reader?.close().catch(() => undefined)
    // Spans still buffered are sent (within the exporter's timeout); a collector that is down delays nothing else.
    await tracing?.shutdown().catch(() => undefined)
    await limiter?.close()
    await auth?.close()
    await tools?.close()
    audit?.close()
    await audit?.closed()
  }
  try {
    limiter ??= await rateLimiterFor(loaded, env, log)
    if (config.limits.dangerouslyFailOpen) log.warn('limits.dangerouslyFailOpen: requests are admitted without rate limits while the rate-limit backend is down')
    const sink = options.auditSink ?? (await auditSinkFor(loaded, env, log))
    // Before anything is created: an existing trail sealed under another key refuses the start.
    const auditFile = statePath(loaded, config.audit.file)
    const where = config.audit.sink === 'postgres' && options.auditSink === undefined ? `postgres table ${config.audit.postgres?.table ?? ''}` : 'the audit sink'
    let chainKey: Buffer
    try {
      chainKey = writerAuditKey(loaded, env, sink === undefined ? fileTrailTail(auditFile) : sinkTrailTail(where, sink.lastLine?.()))
    } catch (error) {
      // No AuditLog owns the sink yet: close the one opened here (a caller's sink stays theirs).
      if (options.auditSink === undefined) sink?.close()
      await sink?.whenClosed?.()
      throw error
    }
    ensureState(statePath(loaded, '.'), undefined)
    const trail = new AuditLog(
      sink ?? new FileAuditSink(auditFile, { maxBytes: config.audit.maxBytes, fsync: config.audit.fsync, fsyncIntervalMs: config.audit.fsyncIntervalMs }),
      undefined,
      chainKey,
      redactor([...DEFAULT_SECRET_KEYS, ...config.audit.redactKeys]),
    )
    audit = trail
    trail.checkpointEvery(config.audit.checkpointEvery)
    const keys = new KeyStore(statePath(loaded, config.auth.keysFile), configKeys, config.auth.reloadIntervalMs, { log, audit: trail })
    const alerts = new AlertEngine(config.alerts.rules, webhook, log)
    alerts.attach((fields) => trail.record(fields))
    trail.observe((fields) => alerts.observe(fields))
    const resource = new ResourceUri(config.auth.resource)
    const keyring = keyringSource(loaded, env, { log, audit: trail })
    auth = await setupAuth({ loaded, env, keys, audit: trail, log, resource: () => resource.get(), keyring })
    tools = await openToolResources({ loaded, env, log, keyring })
    tracing = await startTracing(loaded, env)
    if (config.console.enabled && options.auditSink === undefined) reader = await trailReaderFor(loaded, env, chainKey, auditFile)
    return {
      loaded,
      log,
      audit: trail,
      keys,
      alerts,
      limiter,
      caps: new ConcurrencyCaps(config.limits.concurrency),
      metrics: new Metrics(),
      auth,
      resource,
      keyring,
      tools: tools.resources,
      tracing,
      trail: reader,
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}
