import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import type { z } from 'zod'
import { type BastionConfig, type BastionConfigInput, configSchema, type SecretRef } from './schema.js'

/** A configuration error: names the file, the key path and the reason. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

export function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length === 0 ? '(top level)' : issue.path.map(String).join('.')
  if (issue.code === 'unrecognized_keys')
    return `${where === '(top level)' ? '' : `${where}: `}unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')} (a typo must not silently disable a protection)`
  return `${where}: ${issue.message}`
}

/** A loaded configuration: validated, frozen, with the directory relative paths resolve against. */
export interface LoadedConfig {
  readonly config: BastionConfig
  readonly baseDir: string
  /** Where it came from: a file path, or `embedded default`. */
  readonly source: string
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/** Validate a config object. @throws ConfigError listing every problem with its key path. */
export function validateConfig(input: unknown, source: string, baseDir: string): LoadedConfig {
  const parsed = configSchema.safeParse(input ?? {})
  if (!parsed.success) {
    throw new ConfigError(`config ${source}:\n${parsed.error.issues.map((i) => `  - ${describeIssue(i)}`).join('\n')}`)
  }
  return deepFreeze({ config: parsed.data, baseDir, source })
}

/** Read and validate a YAML config file. @throws ConfigError */
export function loadConfigFile(path: string): LoadedConfig {
  const file = resolve(path)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new ConfigError(`config ${path}: no such file; give an existing file, or no config for the embedded default`)
    throw new ConfigError(`config ${path}: cannot read (${code ?? 'error'})`)
  }
  const parsed = parseYaml(text)
  if ('error' in parsed) throw new ConfigError(`config ${path}: ${parsed.error}`)
  return validateConfig(parsed.value, path, dirname(file))
}

/**
 * YAML as bastion reads it everywhere (config and policy files): duplicate keys are errors, and
 * alias expansion is bounded (an alias bomb is an error, not a hang). Returns the value, or a
 * description of every problem with its line.
 */
export function parseYaml(text: string): { value: unknown } | { error: string } {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true })
  if (doc.errors.length > 0) return { error: `invalid YAML:\n${doc.errors.map((e) => `  - line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`).join('\n')}` }
  try {
    return { value: doc.toJS({ maxAliasCount: 100 }) }
  } catch (error) {
    return { error: `invalid YAML: ${error instanceof Error ? error.message : 'cannot be converted'}` }
  }
}

/** The embedded default: no file, everything under `.bastion/` in the working directory. */
export function embeddedConfig(overrides: BastionConfigInput = {}, baseDir = process.cwd()): LoadedConfig {
  return validateConfig(overrides, 'embedded default', baseDir)
}

/** Resolve a path from the config against the config's directory. */
export function resolvePath(loaded: LoadedConfig, path: string): string {
  return isAbsolute(path) ? path : resolve(loaded.baseDir, path)
}

/** Paths under the state directory. */
export function statePath(loaded: LoadedConfig, path: string): string {
  return isAbsolute(path) ? path : resolve(resolvePath(loaded, loaded.config.stateDir), path)
}

/**
 * Read a secret reference. @throws ConfigError naming the missing variable or unreadable file
 * (never the value).
 */
export function readSecret(loaded: LoadedConfig, ref: SecretRef, where: string, env: NodeJS.ProcessEnv = process.env): string {
  if ('env' in ref) {
    const value = env[ref.env]
    if (value === undefined || value === '') throw new ConfigError(`config ${loaded.source}: ${where}: environment variable ${ref.env} is not set`)
    return value
  }
  const file = resolvePath(loaded, ref.file)
  try {
    return readFileSync(file, 'utf8').trim()
  } catch (error) {
    throw new ConfigError(`config ${loaded.source}: ${where}: cannot read file ${ref.file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}
