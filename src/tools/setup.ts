import type { Logger } from 'pino'
import type { z } from 'zod'
import { ConfigError, type LoadedConfig, readSecret, statePath } from '../config/load.js'
import { connectRedis } from '../config/redis.js'
import type { NamedQueryConfig, TableConfig } from '../config/sql-schema.js'
import { ensureState } from '../config/state.js'
import { SecurityError } from '../errors.js'
import type { Keyring } from '../protect/keyring.js'
import { Vault } from '../protect/vault.js'
import { runCommandTool } from './command.js'
import { Workspace } from './confine.js'
import { Confirmations, MemoryNonceStore, type NonceStore, RedisNonceStore } from './confirm.js'
import { listFilesTool, readFileTool } from './files.js'
import type { ToolDefinition } from './registry.js'
import { EmbeddedDatabase, PostgresDatabase, type SqlDatabase } from './sql/database.js'
import { DEMO_QUERIES, DEMO_TABLES, seedDemo } from './sql/demo.js'
import { deleteRecordsTool, queryTool, runQueryTool } from './sql/tools.js'
import { getSecretTool, storeSecretTool } from './vault.js'
import { writeFileTool } from './write-file.js'

/** What the built-in tools use when they run: nothing here is touched to define them. */
export interface ToolResources {
  /** Undefined when `workspace.enabled` is false. */
  readonly workspace: Workspace | undefined
  /** Undefined when `vault.enabled` is false. */
  readonly vault: Vault | undefined
  /** Undefined when `sql.enabled` is false. */
  readonly database: SqlDatabase | undefined
  /** One confirmation service for every destructive tool. */
  readonly confirmations: Confirmations
}

/** The tables and queries the SQL tools serve: the configured ones, else (embedded database) the demo's. */
interface SqlSettings {
  readonly tables: Readonly<Record<string, TableConfig>>
  readonly queries: Readonly<Record<string, NamedQueryConfig>>
}

function fail(loaded: LoadedConfig, where: string, why: string): never {
  throw new ConfigError(`config ${loaded.source}: ${where}: ${why}`)
}

/**
 * The checks of the tools' sections that need nothing but the config: roles named by
 * `sql.maxRows.roles`, `sql.tables` with `sql.url`, `commands` without a workspace.
 * Pure. @throws ConfigError naming the key
 */
export function checkToolConfig(loaded: LoadedConfig): SqlSettings | undefined {
  const { sql, commands, workspace } = loaded.config
  if (Object.keys(commands).length > 0 && workspace.enabled === false) fail(loaded, 'commands', 'run_command needs the workspace (workspace.enabled)')
  if (sql.enabled === false) return undefined
  for (const role of Object.keys(sql.maxRows.roles)) if (!Object.hasOwn(loaded.config.roles, role)) fail(loaded, `sql.maxRows.roles.${role}`, 'not a role defined under roles')
  const tables = sql.tables ?? (sql.url === undefined ? DEMO_TABLES : fail(loaded, 'sql.tables', 'list the tables (and their columns) the SQL tools may use'))
  return { tables, queries: sql.queries ?? (sql.url === undefined ? DEMO_QUERIES : {}) }
}

/** Which built-in tool sections serve. */
export interface BuiltinFeatures {
  readonly vault: boolean
  readonly workspace: boolean
  readonly sql: boolean
}

/**
 * The built-in sections that serve: `enabled: true` or `false` decides; unset, a section serves
 * when bastion serves nothing else (the CLI, or a library that registers nothing, and no
 * `upstreams`), so that the demo tools never appear beside a library's or a gateway's own. Configured `commands` turn an unset workspace
 * on (run_command needs it). Pure.
 */
export function builtinFeatures(loaded: LoadedConfig, ownRegistrations: boolean): BuiltinFeatures {
  const { vault, workspace, sql, commands, upstreams } = loaded.config
  // A gateway's upstream tools are its own registrations: the demo tools do not join them.
  const auto = !ownRegistrations && Object.keys(upstreams).length === 0
  return {
    vault: vault.enabled ?? auto,
    workspace: workspace.enabled ?? (auto || Object.keys(commands).length > 0),
    sql: sql.enabled ?? auto,
  }
}

/**
 * The built-in tools the config enables, in registration order: `store_secret`, `get_secret`
 * (vault); `read_file`, `list_files` (workspace); `query`, `run_query`, `delete_records` (SQL);
 * `write_file`, `run_command` (workspace). Defining them opens nothing: the resources are used
 * only when a tool runs. @throws ConfigError for an inconsistent section, naming the key
 */
export function builtinTools(loaded: LoadedConfig, resources: ToolResources): ToolDefinition[] {
  const { workspace, commands } = loaded.config
  const sql = checkToolConfig(loaded)
  const tools: ToolDefinition[] = []
  // Each factory is typed by its own schema; the list holds them as the registry does.
  const add = <S extends z.ZodType>(tool: ToolDefinition<S>): void => {
    tools.push(tool as unknown as ToolDefinition)
  }
  const { vault, confirmations } = resources
  if (vault !== undefined) {
    add(storeSecretTool(vault))
    add(getSecretTool(vault))
  }
  if (resources.workspace !== undefined) {
    const files = { workspace: resources.workspace, maxFileBytes: workspace.maxFileBytes }
    add(readFileTool(files))
    add(listFilesTool(files))
  }
  if (sql !== undefined && resources.database !== undefined) {
    const { maxRows, maxDeleteRows, schema } = loaded.config.sql
    const options = { db: resources.database, schema, tables: sql.tables, queries: sql.queries, maxRows, maxDeleteRows, confirmations }
    try {
      if (Object.keys(sql.tables).length > 0) add(queryTool(options))
      if (Object.keys(sql.queries).length > 0) add(runQueryTool(options))
      if (Object.values(sql.tables).some((t) => t.delete)) add(deleteRecordsTool(options))
    } catch (error) {
      if (error instanceof ConfigError) throw error
      throw new ConfigError(`config ${loaded.source}: ${error instanceof Error ? error.message : 'sql: invalid'}`)
    }
  }
  if (resources.workspace !== undefined) {
    add(writeFileTool({ workspace: resources.workspace, maxFileBytes: workspace.maxFileBytes, confirmations }))
    if (Object.keys(commands).length > 0) {
      try {
        add(runCommandTool({ workspace: resources.workspace, commands }))
      } catch (error) {
        fail(loaded, 'commands', error instanceof Error ? error.message : 'invalid')
      }
    }
  }
  return tools
}

/**
 * Open what the built-in tools that may serve use (every section not `enabled: false`): the
 * vault file, the database (a pool, or the embedded one, opened on first use) and the
 * confirmation store, in Redis when rate limits are (replicas refuse each other's spent
 * confirmations). The workspace is opened by {@link servingResources} once it is known to serve.
 * @throws ConfigError naming the key
 */
export async function openToolResources(deps: {
  readonly loaded: LoadedConfig
  readonly env: NodeJS.ProcessEnv
  readonly log: Logger
  readonly keyring: () => Keyring
}): Promise<{ readonly resources: ToolResources; close(): Promise<void> }> {
  const { loaded, env, log } = deps
  const { sql, vault, limits } = loaded.config
  let nonces: NonceStore = new MemoryNonceStore()
  let closeNonces = (): void => {}
  if (limits.backend === 'redis' && limits.redis !== undefined) {
    const redis = connectRedis(readSecret(loaded, limits.redis.url, 'limits.redis.url', env), {
      timeoutMs: limits.redis.timeoutMs,
      label: 'confirmations',
      onError: (e) => log.warn({ err: { message: e.message } }, 'confirmation store'),
    })
    nonces = new RedisNonceStore(redis, limits.redis.keyPrefix)
    closeNonces = () => redis.disconnect()
  }
  let database: SqlDatabase | undefined
  try {
    const sqlMayServe = sql.enabled !== false
    if (sqlMayServe && sql.url === undefined)
      database = new EmbeddedDatabase(statePath(loaded, sql.embeddedDir), {
        statementTimeoutMs: sql.statementTimeoutMs,
        seed: seedDemo,
        onCreate: () => log.info('creating the demo database (once; this takes a few seconds)'),
      })
    else if (sqlMayServe && sql.url !== undefined) {
      const url = readSecret(loaded, sql.url, 'sql.url', env)
      if (!/^postgres(ql)?:\/\//.test(url)) fail(loaded, 'sql.url', 'not a postgres:// or postgresql:// URL')
      database = new PostgresDatabase(url, {
        poolSize: sql.poolSize,
        statementTimeoutMs: sql.statementTimeoutMs,
        // The operator log redacts URL credentials (and every other credential shape) itself.
        onError: (e) => log.warn({ err: { message: e.message } }, 'sql database'),
      })
    }
    const resources: ToolResources = {
      workspace: undefined,
      vault: vault.enabled === false ? undefined : new Vault(statePath(loaded, vault.file), deps.keyring),
      database,
      confirmations: new Confirmations(deps.keyring, nonces),
    }
    return {
      resources,
      async close() {
        await database?.close()
        closeNonces()
      },
    }
  } catch (error) {
    await database?.close()
    closeNonces()
    throw error
  }
}

/**
 * The resources of the sections that serve: the others are dropped, and the workspace root is
 * created (seeded with the demo files when new, see `ensureState`) and opened. @throws ConfigError
 */
export function servingResources(loaded: LoadedConfig, opened: ToolResources, features: BuiltinFeatures): ToolResources {
  const root = statePath(loaded, loaded.config.workspace.root)
  let workspace: Workspace | undefined
  if (features.workspace) {
    try {
      ensureState(statePath(loaded, '.'), root)
      workspace = Workspace.openSync(root)
    } catch (error) {
      fail(loaded, 'workspace.root', `cannot open ${root} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
  }
  return {
    workspace,
    vault: features.vault ? opened.vault : undefined,
    database: features.sql ? opened.database : undefined,
    confirmations: opened.confirmations,
  }
}

const offline = (what: string): SecurityError => new SecurityError('ERR_INTERNAL', `${what} is not open: these tool definitions are for policy and config checks`)

/**
 * Stand-ins that refuse every use, for the built-in tools' definitions (names, input schemas,
 * permissions) without a workspace, vault file, keyring, database or Redis: what `policy explain`
 * and `config check` bind against. Nothing is read or created.
 */
export function detachedToolResources(loaded: LoadedConfig): ToolResources {
  const features = builtinFeatures(loaded, false)
  const { sql, workspace, vault } = loaded.config
  const keyring = (): Keyring => {
    throw offline('the keyring')
  }
  const root = statePath(loaded, workspace.root)
  const detached: Workspace = {
    root,
    resolve: () => Promise.reject(offline('the workspace')),
    openChecked: () => Promise.reject(offline('the workspace')),
    display: () => '.',
  }
  return {
    workspace: features.workspace ? detached : undefined,
    vault: features.vault ? new Vault(statePath(loaded, vault.file), keyring) : undefined,
    database: features.sql
      ? { kind: sql.url === undefined ? 'embedded' : 'postgres', transaction: () => Promise.reject(offline('the database')), close: async () => {} }
      : undefined,
    confirmations: new Confirmations(keyring, new MemoryNonceStore()),
  }
}
