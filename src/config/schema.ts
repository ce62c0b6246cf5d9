import { z } from 'zod'
import { parseRate } from '../limits/token-bucket.js'
import { ruleSchema } from '../policy/schema.js'

import { oauthShape } from './auth-schema.js'
import { commandsSchema } from './command-schema.js'
import { secretRef } from './secret-ref.js'
import { sqlSchema } from './sql-schema.js'
import { upstreamsSchema } from './upstream-schema.js'

export { type SecretRef, secretRef } from './secret-ref.js'

const permissionList = z.array(z.string().min(1).max(128)).max(256)
const targetRules = z
  .record(
    z.string().min(1).max(128),
    z.strictObject({
      permissions: permissionList.optional(),
      /** OAuth scopes a token must hold (all of them) to use the target; API keys are governed by roles. */
      scopes: z.array(z.string().min(1).max(128)).max(64).optional(),
    }),
  )
  .default({})

const rateSpec = z.strictObject({
  /** Refill rate: `<count>/<s|min|h|day>`, e.g. `30/min`. */
  rate: z.string().refine((t) => parseRate(t) !== undefined, 'a rate such as "30/min" (count / s, min, h or day)'),
  /** Bucket capacity: how many may come at once. Default: the rate's count. */
  burst: z.number().int().min(1).max(1_000_000_000).optional(),
})
const scopedRateSpec = rateSpec.extend({
  /** One bucket per principal (default), or one bucket for everyone. */
  scope: z.enum(['principal', 'global']).default('principal'),
})
const limitName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a name of letters, digits and _ . : -')

const limitsSchema = z
  .strictObject({
    /** Where buckets live: this process (`memory`), or Redis shared by every replica. */
    backend: z.enum(['memory', 'redis']).default('memory'),
    redis: z
      .strictObject({
        /** `redis://[user:password@]host:port[/db]`, from the environment or a file (it may hold a password). */
        url: secretRef,
        keyPrefix: z.string().max(64).default('bastion:'),
        /** A Redis answer slower than this is an outage (fail closed). */
        timeoutMs: z.number().int().min(10).max(10_000).default(500),
      })
      .optional(),
    /** Admit requests when the backend is down instead of refusing them. */
    dangerouslyFailOpen: z.boolean().default(false),
    /** Per client address, checked before any credential is verified; charged by failed authentication. */
    anonymous: rateSpec.default({ rate: '60/min' }),
    /** Every principal, unless one of its roles sets a rate (the most generous role wins). */
    principal: rateSpec.default({ rate: '600/min' }),
    roles: z.record(limitName, rateSpec).default({}),
    /** Per tenant, for principals that carry one. */
    tenant: rateSpec.optional(),
    /** Server-wide: every authenticated request. */
    global: rateSpec.optional(),
    /** Named buckets tools share ("database queries: 30/min"). */
    tiers: z.record(limitName, scopedRateSpec).default({}),
    tools: z
      .record(
        z.string().min(1).max(128),
        z.strictObject({
          tier: limitName.optional(),
          /** Tokens one call takes from every bucket it is charged to. */
          cost: z.number().int().min(1).max(1_000_000).default(1),
          /** The tool's own bucket. */
          rate: scopedRateSpec.optional(),
          timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
          maxOutputBytes: z
            .number()
            .int()
            .min(1)
            .max(256 * 1024 * 1024)
            .optional(),
          /** Isolated tools only: memory cap (MiB) of the tool's process. */
          memoryMb: z.number().int().min(32).max(65_536).optional(),
          /** Isolated tools only: CPU time cap (ms) of the tool's process. */
          cpuMs: z.number().int().min(10).max(3_600_000).optional(),
        }),
      )
      .default({}),
    concurrency: z
      .strictObject({
        /** Tool calls one principal may have running at once, in this process. */
        perPrincipal: z.number().int().min(1).max(100_000).default(8),
        /** Tool calls running at once in this process. */
        global: z.number().int().min(1).max(1_000_000).default(64),
      })
      .prefault({}),
    /** Default tool timeout; a tool may set its own, config `limits.tools.<name>.timeoutMs` overrides. */
    timeoutMs: z.number().int().min(1).max(3_600_000).default(30_000),
    /** Default cap on one tool result (bytes of text and data). */
    maxOutputBytes: z
      .number()
      .int()
      .min(1)
      .max(256 * 1024 * 1024)
      .default(4 * 1024 * 1024),
  })
  .superRefine((limits, ctx) => {
    if (limits.backend === 'redis' && limits.redis === undefined) ctx.addIssue({ code: 'custom', path: ['redis'], message: 'required when backend is redis' })
    for (const [name, tool] of Object.entries(limits.tools)) {
      if (tool.tier !== undefined && !Object.hasOwn(limits.tiers, tool.tier))
        ctx.addIssue({ code: 'custom', path: ['tools', name, 'tier'], message: `tier ${JSON.stringify(tool.tier)} is not defined under limits.tiers` })
    }
  })

export type LimitsConfig = z.output<typeof limitsSchema>
export type RateSpec = z.output<typeof rateSpec>

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      path: z
        .string()
        .regex(/^\/[A-Za-z0-9/_-]*$/, 'an absolute URL path')
        .default('/mcp'),
      /** Hostnames the Host header may name; loopback names are added when bound to loopback. */
      allowedHosts: z.array(z.string().min(1)).default([]),
      /** Origins (scheme://host[:port]) browsers may call from, besides the server's own. */
      allowedOrigins: z.array(z.url()).default([]),
      maxBodyBytes: z
        .number()
        .int()
        .min(1024)
        .max(64 * 1024 * 1024)
        .default(1024 * 1024),
      maxJsonDepth: z.number().int().min(4).max(1000).default(64),
      /** Bytes of request bodies read or being answered at once, all clients; a body past it is refused (429) unread. */
      maxBodyBytesInFlight: z
        .number()
        .int()
        .min(1024)
        .max(4 * 1024 * 1024 * 1024)
        .default(32 * 1024 * 1024),
      /** Open TCP connections; more are closed as they arrive (Node's `server.maxConnections`). */
      maxConnections: z.number().int().min(1).max(1_000_000).default(1024),
      /** Open TCP connections from one client address (IPv6 by /64); more are closed as they arrive. */
      maxConnectionsPerAddress: z.number().int().min(1).max(1_000_000).default(128),
      /** A request whose headers have not all arrived this long after its first byte is closed. */
      headersTimeoutSeconds: z.number().int().min(1).max(3600).default(30),
      /** A request not received in full (headers and body) this long after its first byte is closed. */
      requestTimeoutSeconds: z.number().int().min(1).max(3600).default(120),
      /** An idle keep-alive connection is closed after this long. */
      keepAliveTimeoutSeconds: z.number().int().min(1).max(3600).default(5),
      tls: z.strictObject({ cert: secretRef, key: secretRef }).optional(),
      dangerouslyAllowPlaintext: z.boolean().default(false),
      /** MCP over WebSocket (off by default): every message through the same stage list as HTTP and stdio. */
      websocket: z
        .strictObject({
          enabled: z.boolean().default(false),
          path: z
            .string()
            .regex(/^\/[A-Za-z0-9/._-]{0,200}$/, 'a path such as /mcp/ws')
            .default('/mcp/ws'),
          /** A connection without a credential in its upgrade request must send one in its first message within this. */
          authTimeoutMs: z.number().int().min(100).max(60_000).default(5000),
          /** A connection that does not answer a ping within this is closed. */
          idleTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
          maxConnections: z.number().int().min(1).max(100_000).default(1000),
          /** Per connection, besides the principal's own limits: messages per second (a bucket of `burst`). */
          messagesPerSecond: z.number().int().min(1).max(1_000_000).default(100),
          burst: z.number().int().min(1).max(1_000_000).default(200),
          /** Requests of one connection waiting for their answers at once. */
          maxInFlight: z.number().int().min(1).max(100_000).default(32),
        })
        .prefault({}),
      sessions: z
        .strictObject({
          maxTotal: z.number().int().min(1).default(1000),
          maxPerPrincipal: z.number().int().min(1).default(16),
          idleTimeoutSeconds: z.number().int().min(1).default(900),
        })
        .prefault({}),
    })
    .superRefine((server, ctx) => {
      // Node refuses a headers timeout longer than the request timeout.
      if (server.headersTimeoutSeconds > server.requestTimeoutSeconds)
        ctx.addIssue({ code: 'custom', path: ['headersTimeoutSeconds'], message: 'must not exceed server.requestTimeoutSeconds' })
    })
    .prefault({}),
  /** Folder for keys, audit log and the demo workspace; relative paths resolve against the config file. */
  stateDir: z.string().min(1).default('.bastion'),
  audit: z
    .strictObject({
      /** Where lines go: a file (default), standard output, or a PostgreSQL table shared by replicas. */
      sink: z.enum(['file', 'stdout', 'postgres']).default('file'),
      file: z.string().min(1).default('audit.jsonl'),
      /** stdout only: bytes that may wait for a slow reader before requests fail closed. */
      stdoutBufferBytes: z
        .number()
        .int()
        .min(0)
        .max(256 * 1024 * 1024)
        .default(1024 * 1024),
      postgres: z
        .strictObject({
          url: secretRef,
          table: z
            .string()
            .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'lower-case letters, digits and _')
            .default('bastion_audit'),
          /** Bytes of lines that may wait for the database (an outage, a slow commit) before requests fail closed (503). */
          maxQueueBytes: z
            .number()
            .int()
            .min(64 * 1024)
            .max(1024 * 1024 * 1024)
            .default(8 * 1024 * 1024),
          /** Lines that may wait for the database before requests fail closed (503). */
          maxQueueLines: z.number().int().min(100).max(10_000_000).default(10_000),
        })
        .optional(),
      /** Key names redacted from every audit line, besides the built-in ones (password, token, …). */
      redactKeys: z.array(z.string().min(2).max(64)).max(256).default([]),
      /** MAC key of the hash chain; default: `<stateDir>/audit.key`, created on first start. */
      key: secretRef.optional(),
      /** A signed `audit.checkpoint` line after this many lines of a writer (0: none). */
      checkpointEvery: z.number().int().min(0).max(1_000_000).default(1000),
      /**
       * file only: when lines are forced to disk (fsync). `always`: before each request is answered;
       * `interval`: every `fsyncIntervalMs`, off the request path (a power cut loses at most that
       * much); `rotate`: at rotation and close only (the operating system decides).
       */
      fsync: z.enum(['always', 'interval', 'rotate']).default('interval'),
      fsyncIntervalMs: z.number().int().min(10).max(60_000).default(1000),
      /** Past this size the file is renamed with a timestamp and a new one started; chains continue. */
      maxBytes: z
        .number()
        .int()
        .min(64 * 1024)
        .default(64 * 1024 * 1024),
    })
    .refine((a) => a.sink !== 'postgres' || a.postgres !== undefined, 'sink: postgres needs postgres.url')
    .prefault({}),
  auth: z
    .strictObject({
      keysFile: z.string().min(1).default('keys.json'),
      reloadIntervalMs: z.number().int().min(0).max(60_000).default(1000),
      keys: z
        .array(
          z.strictObject({
            name: z.string().min(1).max(200),
            roles: z.array(z.string().min(1)).min(1),
            tenant: limitName.optional(),
            key: secretRef,
            expires: z.iso.datetime({ offset: true }).or(z.iso.date()).optional(),
          }),
        )
        .default([]),
      ...oauthShape,
    })
    .prefault({}),
  roles: z
    .record(z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a role name'), z.strictObject({ permissions: permissionList }))
    .default({ admin: { permissions: ['*'] }, analyst: { permissions: ['sql:query'] }, reader: { permissions: ['files:read'] } }),
  tools: targetRules,
  resources: targetRules,
  prompts: targetRules,
  limits: limitsSchema.prefault({}),
  /** Thresholds over the audit trail that raise an `alert` line and, if configured, a webhook POST. */
  alerts: z
    .strictObject({
      rules: z
        .array(
          z.strictObject({
            id: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits, _ . : -'),
            event: z.string().min(1).max(64),
            reason: z.string().min(1).max(64).optional(),
            by: z.enum(['remote', 'principal', 'upstream']),
            threshold: z.number().int().min(1).max(1_000_000),
            windowSeconds: z.number().int().min(1).max(86_400),
          }),
        )
        .max(100)
        .default([
          { id: 'auth-failures', event: 'auth.failure', by: 'remote', threshold: 10, windowSeconds: 60 },
          { id: 'denials', event: 'authz.denied', by: 'principal', threshold: 20, windowSeconds: 60 },
          { id: 'upstream-drift', event: 'upstream.drift', by: 'upstream', threshold: 1, windowSeconds: 60 },
        ]),
      webhook: z.strictObject({ url: z.url(), timeoutMs: z.number().int().min(100).max(30_000).default(3000), secret: secretRef.optional() }).optional(),
    })
    .prefault({}),
  /** Keys for encryption at rest (AES-256-GCM): configured, or `<stateDir>/keyring.json` created on first start. */
  secrets: z
    .strictObject({
      keys: z
        .array(z.strictObject({ id: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ and -'), key: secretRef }))
        .max(64)
        .optional(),
      /** The key that encrypts; the others only decrypt. Required with `keys`. */
      active: z.string().optional(),
      keyringFile: z.string().min(1).default('keyring.json'),
    })
    .refine((s) => (s.keys === undefined) === (s.active === undefined), 'give keys and active together')
    .prefault({}),
  /** The `store_secret` and `get_secret` tools (permissions vault:write, vault:read). Unset `enabled`: see `builtinFeatures`. */
  vault: z.strictObject({ enabled: z.boolean().optional(), file: z.string().min(1).default('vault.json') }).prefault({}),
  /** Personal data in tool results: masked by default; per tool here, per role through a policy rule's `output: { pii: … }`. */
  pii: z
    .strictObject({
      mode: z.enum(['mask', 'block', 'allow']).default('mask'),
      tools: z.record(z.string().min(1).max(128), z.enum(['mask', 'block', 'allow'])).default({}),
    })
    .prefault({}),
  /**
   * Policy rules on top of the role permissions above: inline, or in a separate file that is
   * watched and reloaded. Deny wins over allow; no match is deny.
   */
  policy: z
    .strictObject({
      file: z.string().min(1).optional(),
      rules: z.array(ruleSchema).max(10_000).default([]),
      /** How often the policy file is checked for changes. */
      reloadIntervalMs: z.number().int().min(50).max(60_000).default(1000),
    })
    .refine((p) => p.file === undefined || p.rules.length === 0, 'give rules inline or in a file, not both')
    .prefault({}),
  /** OpenTelemetry traces (off unless `otlp.endpoint` is set); Prometheus `/metrics` is separate. */
  telemetry: z
    .strictObject({
      serviceName: z.string().min(1).max(128).default('mcp-bastion'),
      otlp: z
        .strictObject({
          /** The OTLP/HTTP traces endpoint, e.g. `https://collector:4318/v1/traces` (plain HTTP only to loopback). */
          endpoint: z.url(),
          /** OTLP/HTTP metrics endpoint; default: the traces endpoint with `/v1/metrics` for `/v1/traces` (none otherwise). */
          metricsEndpoint: z.url().optional(),
          /** Headers for the collector (an API key): secret references. */
          headers: z.record(z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name'), secretRef).default({}),
          timeoutMs: z.number().int().min(100).max(60_000).default(10_000),
          /** Spans are sent in batches at most this far apart. */
          flushIntervalMs: z.number().int().min(50).max(60_000).default(5000),
        })
        .optional(),
    })
    .prefault({}),
  /** The SQL tools (`query`, `run_query`, `delete_records`) over the embedded database or PostgreSQL. */
  sql: sqlSchema.prefault({}),
  /** Allowlisted executables for `run_command` (permission `commands:run`); none: no such tool. */
  commands: commandsSchema.default({}),
  /** MCP servers bastion fronts (gateway): their tools join the catalog behind every layer; pinned in `bastion.lock.json`. */
  upstreams: upstreamsSchema,
  /**
   * The operator console (a web page and its JSON API): served on loopback binds and over TLS; on a
   * plain-HTTP non-loopback bind it is off. Sign-in with an API key whose role holds `console:read`
   * (look) or `console:admin` (act).
   */
  console: z
    .strictObject({
      enabled: z.boolean().default(true),
      path: z
        .string()
        .regex(/^\/[A-Za-z0-9_-]{1,64}$/, 'one path segment such as /console')
        .default('/console'),
      /** A session unused this long ends. */
      idleMinutes: z.number().int().min(1).max(1440).default(30),
      /** A session ends this long after sign-in, used or not. */
      absoluteHours: z.number().int().min(1).max(168).default(12),
      /** Signed-in sessions at once (all principals); the oldest ends when a new one would pass it. */
      maxSessions: z.number().int().min(1).max(10_000).default(100),
    })
    .prefault({}),
  /** The workspace tools (`read_file`, `list_files`, `write_file`). Unset `enabled`: see `builtinFeatures`. */
  workspace: z
    .strictObject({
      enabled: z.boolean().optional(),
      root: z.string().min(1).default('workspace'),
      maxFileBytes: z
        .number()
        .int()
        .min(1)
        .max(64 * 1024 * 1024)
        .default(1024 * 1024),
    })
    .prefault({}),
})

export type BastionConfigInput = z.input<typeof configSchema>
export type BastionConfig = z.output<typeof configSchema>
