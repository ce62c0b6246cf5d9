import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { ConfigError, type LoadedConfig, readSecret, resolvePath } from '../config/load.js'
import { isStdioUpstream, type UpstreamConfig } from '../config/upstream-schema.js'
import { isLoopback } from '../config/urls.js'
import type { PromptPin, ResourcePin, ToolDefinitionPin } from '../gateway/definitions.js'
import { LOCK_FILE, type Pins } from '../gateway/lock-file.js'
import { redactText } from '../protect/redact.js'
import { UpstreamConnection, type UpstreamStatus, type UpstreamTarget } from '../transport/upstream/connection.js'

export type PinMode = 'enforce' | 'warn' | 'off'

/** The lock file of a config: beside it (an object config: in its base folder). */
export const lockPath = (loaded: LoadedConfig): string => resolvePath(loaded, LOCK_FILE)

/** A config error naming the key. */
export const failConfig = (loaded: LoadedConfig, where: string, why: string): never => {
  throw new ConfigError(`config ${loaded.source}: ${where}: ${why}`)
}

/** The pin mode of an upstream. @throws ConfigError for an unpinned upstream with no mode named */
export function pinMode(loaded: LoadedConfig, name: string, u: UpstreamConfig, pins: Pins): PinMode {
  if (u.pin !== undefined) return u.pin
  if (pins.has(name)) return 'enforce'
  return failConfig(
    loaded,
    `upstreams.${name}`,
    `not pinned in ${LOCK_FILE}: run "mcp-bastion upstreams pin ${name}" (then review and commit the lock file), or set pin: warn or pin: off to serve it unpinned`,
  )
}

/** What an upstream process may see of bastion's environment, besides what its config gives it. */
const INHERITED = ['PATH', 'LANG', 'HOME']

/** How to reach an upstream, its secrets read now. @throws ConfigError naming the key */
export function upstreamTarget(loaded: LoadedConfig, name: string, u: UpstreamConfig, env: NodeJS.ProcessEnv): UpstreamTarget {
  const where = `upstreams.${name}`
  if (isStdioUpstream(u)) {
    const childEnv: Record<string, string> = {}
    for (const key of [...INHERITED, ...u.inheritEnv]) {
      const value = env[key]
      if (value !== undefined) childEnv[key] = value
    }
    const configured: Record<string, string> = {}
    for (const [key, ref] of Object.entries(u.env)) configured[key] = readSecret(loaded, ref, `${where}.env.${key}`, env)
    Object.assign(childEnv, configured)
    if (u.maxMemoryMb !== undefined) childEnv.NODE_OPTIONS = `${childEnv.NODE_OPTIONS ?? ''} --max-old-space-size=${u.maxMemoryMb}`.trim()
    const command = u.maxOpenFiles === undefined ? u.command : 'prlimit'
    const args = u.maxOpenFiles === undefined ? u.args : [`--nofile=${u.maxOpenFiles}:${u.maxOpenFiles}`, '--', u.command, ...u.args]
    return {
      kind: 'stdio',
      process: { command, args, cwd: u.cwd === undefined ? dirname(lockPath(loaded)) : resolvePath(loaded, u.cwd), env: childEnv, maxMessageBytes: u.maxMessageBytes },
      configured,
      maxRestarts: u.maxRestarts,
      restartWindowSeconds: u.restartWindowSeconds,
    }
  }
  const url = new URL(u.url)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname)))
    failConfig(loaded, `${where}.url`, 'must be https (plain http only to a loopback address)')
  if (url.username !== '' || url.password !== '') failConfig(loaded, `${where}.url`, 'no credentials in the URL: give them under headers or oauth')
  const headers: Record<string, string> = {}
  for (const [key, ref] of Object.entries(u.headers)) headers[key] = readSecret(loaded, ref, `${where}.headers.${key}`, env)
  return {
    kind: 'http',
    url,
    headers,
    ...(u.oauth === undefined
      ? {}
      : {
          oauth: {
            issuer: u.oauth.issuer,
            clientId: u.oauth.clientId,
            clientSecret: readSecret(loaded, u.oauth.clientSecret, `${where}.oauth.clientSecret`, env),
            ...(u.oauth.scope === undefined ? {} : { scope: u.oauth.scope }),
          },
        }),
    connectTimeoutMs: u.connectTimeoutMs,
    maxMessageBytes: u.maxMessageBytes,
  }
}

/** The values read from secret references for an upstream (its configured env, headers, OAuth secret). */
export function secretValues(target: UpstreamTarget): string[] {
  const values = target.kind === 'stdio' ? Object.values(target.configured) : [...Object.values(target.headers), ...(target.oauth === undefined ? [] : [target.oauth.clientSecret])]
  // Short values would redact ordinary words; the shape detectors still apply to every line.
  return values.filter((v) => v.length >= 6).sort((a, b) => b.length - a.length)
}

export function withoutSecrets(line: string, secrets: readonly string[]): string {
  let out = line
  for (const secret of secrets) out = out.split(secret).join('[REDACTED]')
  return out
}

/** What one upstream lists now, for the CLI (`upstreams pin | diff | status`): connected, listed, closed. */
export interface UpstreamListing {
  readonly name: string
  readonly status: UpstreamStatus
  /** Undefined when it could not be listed within its `startTimeoutMs`. */
  readonly tools: readonly ToolDefinitionPin[] | undefined
  readonly resources: readonly ResourcePin[]
  readonly prompts: readonly PromptPin[]
  readonly invalid: readonly string[]
}

/** Connect to an upstream, list its tools, disconnect (stopping its process). @throws ConfigError for a missing secret */
export async function listUpstream(loaded: LoadedConfig, name: string, env: NodeJS.ProcessEnv, log: Logger): Promise<UpstreamListing> {
  const config = loaded.config.upstreams[name]
  if (config === undefined) return failConfig(loaded, 'upstreams', `no upstream named ${JSON.stringify(name)}`)
  let tools: ToolDefinitionPin[] | undefined
  let resources: ResourcePin[] = []
  let prompts: PromptPin[] = []
  let invalid: readonly string[] = []
  const conn = new UpstreamConnection({
    name,
    target: { ...upstreamTarget(loaded, name, config, env), ...(isStdioUpstream(config) ? { maxRestarts: 0 } : {}) } as UpstreamTarget,
    breakerFailures: config.breakerFailures,
    breakerSeconds: config.breakerSeconds,
    relistMs: 0,
    onEvent: () => {},
    onStderr: (line) => log.debug({ upstream: name, stderr: redactText(line) }, 'upstream stderr'),
    onWarning: (message) => log.debug({ upstream: name, why: redactText(message) }, 'upstream message refused or connection error'),
    onTools: (listed, bad) => {
      tools = listed.filter((t) => !config.hide.includes(t.name))
      invalid = [...invalid, ...bad]
    },
    onCatalog: (listed, bad) => {
      resources = listed.resources.filter((r) => !config.hide.includes(r.name))
      prompts = listed.prompts.filter((p) => !config.hide.includes(p.name))
      invalid = [...invalid, ...bad]
    },
  })
  try {
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, config.startTimeoutMs).unref())
    await Promise.race([conn.start(), timeout])
    // Listed only once the connection is up: tools first, then resources and prompts.
    return { name, status: conn.status(), tools: conn.status().state === 'up' ? tools : undefined, resources, prompts, invalid }
  } finally {
    await conn.close()
  }
}
