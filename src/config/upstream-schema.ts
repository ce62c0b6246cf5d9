import { z } from 'zod'
import { secretRef } from './secret-ref.js'

/** An upstream's name: the default prefix of its tools (`<name>__<tool>`), so tool-name characters only. */
export const UPSTREAM_NAME = /^[A-Za-z0-9_-]{1,48}$/

const permissionList = z.array(z.string().min(1).max(128)).max(256)
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Settings both kinds share. */
const common = {
  /** Prefix of its tools' names in bastion's catalog. Default `<name>__`. */
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{0,64}$/, 'letters, digits and _ . -')
    .optional(),
  /** Permissions that may call its tools (any of), unless `tools.<prefix><tool>.permissions` says otherwise. None: only `*`. */
  permissions: permissionList.optional(),
  /**
   * What a tool definition that differs from `bastion.lock.json` does: `enforce` blocks it until an
   * operator re-pins, `warn` serves it and raises `upstream.drift`, `off` compares nothing. Unset:
   * `enforce` when the lock file pins this upstream; without pins, start-up is refused until
   * `upstreams pin` ran or a mode is named here (no silent trust on first use).
   */
  pin: z.enum(['enforce', 'warn', 'off']).optional(),
  /** Its tools (names as the upstream gives them) that change things: every call asks the user first. Tools annotated `destructiveHint: true` ask too. */
  confirm: z.array(z.string().min(1).max(128)).max(1000).default([]),
  /** Its tools (upstream names) bastion never serves. */
  hide: z.array(z.string().min(1).max(128)).max(1000).default([]),
  /** How long start-up waits for it (connect, initialize, first tool list) before serving without it. */
  startTimeoutMs: z.number().int().min(100).max(300_000).default(15_000),
  /** Largest message accepted from it (bytes): a larger answer is refused, never forwarded. */
  maxMessageBytes: z
    .number()
    .int()
    .min(1024)
    .max(256 * 1024 * 1024)
    .default(16 * 1024 * 1024),
  /** Consecutive failed calls or connections after which it is not tried for `breakerSeconds`. */
  breakerFailures: z.number().int().min(1).max(1000).default(5),
  breakerSeconds: z.number().int().min(1).max(3600).default(30),
  /** How often its tools, resources and prompts are listed again and compared with the pins (an upstream may change them without a list_changed); 0: never. */
  relistSeconds: z.number().int().min(0).max(86_400).default(60),
}

const stdioUpstream = z.strictObject({
  /** The executable (looked up on `PATH`), e.g. `npx` or `node`. */
  command: z.string().min(1).max(4096),
  args: z.array(z.string().max(8192)).max(256).default([]),
  /** Working directory, relative to the config file. Default: the config file's folder. */
  cwd: z.string().min(1).optional(),
  /** Its environment, values from the environment or a file only (they are often credentials). */
  env: z.record(z.string().regex(ENV_NAME, 'an environment variable name'), secretRef).default({}),
  /** Variables of bastion's own environment it inherits besides `PATH`, `LANG` and `HOME`. */
  inheritEnv: z.array(z.string().regex(ENV_NAME, 'an environment variable name')).max(256).default([]),
  /** Node upstreams: V8 heap cap in MiB (`--max-old-space-size`, through `NODE_OPTIONS`). */
  maxMemoryMb: z.number().int().min(16).max(65_536).optional(),
  /** Open-file cap (`RLIMIT_NOFILE`, set with `prlimit`). */
  maxOpenFiles: z.number().int().min(16).max(1_048_576).optional(),
  /** Restarts allowed within `restartWindowSeconds`; past it, the upstream is down until bastion restarts. */
  maxRestarts: z.number().int().min(0).max(1000).default(5),
  restartWindowSeconds: z.number().int().min(1).max(86_400).default(60),
  ...common,
})

const httpUpstream = z.strictObject({
  /** Its Streamable HTTP endpoint: HTTPS, or plain HTTP to a loopback address. */
  url: z.url(),
  /** Headers bastion sends it (its own credential to the upstream), values from the environment or a file. */
  headers: z.record(z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name'), secretRef).default({}),
  /** Bastion's own OAuth client (RFC 6749 §4.4, client credentials) at the upstream's authorization server. */
  oauth: z
    .strictObject({
      /** The authorization server's issuer: the credentials are sent to it only, whatever the upstream advertises. */
      issuer: z.url(),
      clientId: z.string().min(1).max(256),
      clientSecret: secretRef,
      scope: z.string().min(1).max(1024).optional(),
    })
    .optional(),
  /**
   * Tell the upstream who called: a short-lived JWT (HS256 under `secret`, audience the upstream's
   * name) in this header, with the caller's id as `sub` and its roles. The caller's own credential
   * is never sent.
   */
  forwardIdentity: z.strictObject({ header: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name'), secret: secretRef }).optional(),
  /** Time allowed for a connection and the first byte of an answer. */
  connectTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  ...common,
})

export const upstreamSchema = z.union([stdioUpstream, httpUpstream])

/** `upstreams:`: the MCP servers bastion fronts, by name. */
export const upstreamsSchema = z
  .record(z.string().regex(UPSTREAM_NAME, 'an upstream name: letters, digits, _ and -, at most 48'), upstreamSchema)
  .default({})
  .superRefine((upstreams, ctx) => {
    const seen = new Map<string, string>()
    for (const [name, u] of Object.entries(upstreams)) {
      const prefix = u.prefix ?? `${name}__`
      const other = seen.get(prefix)
      if (other !== undefined) ctx.addIssue({ code: 'custom', path: [name, 'prefix'], message: `the prefix ${JSON.stringify(prefix)} is also upstream ${other}'s` })
      seen.set(prefix, name)
    }
  })

export type UpstreamConfig = z.output<typeof upstreamSchema>
export type StdioUpstreamConfig = z.output<typeof stdioUpstream>
export type HttpUpstreamConfig = z.output<typeof httpUpstream>

export const isStdioUpstream = (u: UpstreamConfig): u is StdioUpstreamConfig => 'command' in u

/** The prefix of an upstream's tools in the catalog. */
export const prefixOf = (name: string, u: UpstreamConfig): string => u.prefix ?? `${name}__`
