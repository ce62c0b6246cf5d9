import { z } from 'zod'

/** A secret is never inline: it comes from an environment variable or a file. */
export const secretRef = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name') }),
  z.strictObject({ file: z.string().min(1) }),
])
export type SecretRef = z.infer<typeof secretRef>

const permissionList = z.array(z.string().min(1).max(128)).max(256)
const targetRules = z.record(z.string().min(1).max(128), z.strictObject({ permissions: permissionList })).default({})

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
      tls: z.strictObject({ cert: secretRef, key: secretRef }).optional(),
      dangerouslyAllowPlaintext: z.boolean().default(false),
      sessions: z
        .strictObject({
          maxTotal: z.number().int().min(1).default(1000),
          maxPerPrincipal: z.number().int().min(1).default(16),
          idleTimeoutSeconds: z.number().int().min(1).default(900),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Folder for keys, audit log and the demo workspace; relative paths resolve against the config file. */
  stateDir: z.string().min(1).default('.bastion'),
  audit: z.strictObject({ file: z.string().min(1).default('audit.jsonl') }).prefault({}),
  auth: z
    .strictObject({
      keysFile: z.string().min(1).default('keys.json'),
      reloadIntervalMs: z.number().int().min(0).max(60_000).default(1000),
      keys: z
        .array(
          z.strictObject({
            name: z.string().min(1).max(200),
            roles: z.array(z.string().min(1)).min(1),
            key: secretRef,
            expires: z.iso.datetime({ offset: true }).or(z.iso.date()).optional(),
          }),
        )
        .default([]),
    })
    .prefault({}),
  roles: z
    .record(z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'a role name'), z.strictObject({ permissions: permissionList }))
    .default({ admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] } }),
  tools: targetRules,
  resources: targetRules,
  prompts: targetRules,
  workspace: z
    .strictObject({
      enabled: z.boolean().default(true),
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
