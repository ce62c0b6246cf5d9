import type { Logger } from 'pino'
import type { z } from 'zod'
import { ConfigError, type LoadedConfig, readSecret, statePath } from '../config/load.js'
import { connectRedis } from '../config/redis.js'
import type { Keyring } from '../protect/keyring.js'
import { runCommandTool } from './command.js'
import type { Workspace } from './confine.js'
import { Confirmations, MemoryNonceStore, type NonceStore, RedisNonceStore } from './confirm.js'
import type { ToolDefinition } from './registry.js'
import { EmbeddedDatabase, PostgresDatabase, type SqlDatabase } from './sql/database.js'
import { DEMO_QUERIES, DEMO_TABLES, seedDemo } from './sql/demo.js'
import { deleteRecordsTool, queryTool, runQueryTool } from './sql/tools.js'
import { writeFileTool } from './write-file.js'

export interface DataToolsDeps {
  readonly loaded: LoadedConfig
  readonly env: NodeJS.ProcessEnv
  readonly log: Logger
  readonly keyring: () => Keyring
  readonly workspace: Workspace | undefined
  readonly register: <S extends z.ZodType>(tool: ToolDefinition<S>) => void
}

/** What the data tools hold open: the database pool and the confirmation store's connection. */
export interface DataTools {
  readonly database: SqlDatabase | undefined
  close(): Promise<void>
}

/**
 * Register the built-in data tools the config enables: `query`, `run_query`, `delete_records`
 * (SQL), `write_file` (workspace) and `run_command` (allowlisted executables). Destructive tools
 * share one confirmation service; its single-use record lives in Redis when rate limits do, so
 * replicas refuse each other's spent confirmations.
 * @throws ConfigError for an inconsistent section, naming the key.
 */
export function registerDataTools(deps: DataToolsDeps): DataTools {
  const { loaded, env, log } = deps
  const { sql, commands, workspace, limits } = loaded.config
  const fail = (where: string, why: string): never => {
    throw new ConfigError(`config ${loaded.source}: ${where}: ${why}`)
  }
  let nonces: NonceStore = new MemoryNonceStore()
  let closeNonces = async (): Promise<void> => {}
  if (limits.backend === 'redis' && limits.redis !== undefined) {
    const redis = connectRedis(readSecret(loaded, limits.redis.url, 'limits.redis.url', env), {
      timeoutMs: limits.redis.timeoutMs,
      label: 'confirmations',
      onError: (e) => log.warn({ err: { message: e.message } }, 'confirmation store'),
    })
    nonces = new RedisNonceStore(redis, limits.redis.keyPrefix)
    closeNonces = async () => {
      redis.disconnect()
    }
  }
  const confirmations = new Confirmations(deps.keyring, nonces)

  let database: SqlDatabase | undefined
  if (sql.enabled) {
    for (const role of Object.keys(sql.maxRows.roles)) if (!Object.hasOwn(loaded.config.roles, role)) fail(`sql.maxRows.roles.${role}`, 'not a role defined under roles')
    const tables = sql.tables ?? (sql.url === undefined ? DEMO_TABLES : fail('sql.tables', 'list the tables (and their columns) the SQL tools may use'))
    const queries = sql.queries ?? (sql.url === undefined ? DEMO_QUERIES : {})
    if (sql.url === undefined) {
      database = new EmbeddedDatabase(statePath(loaded, sql.embeddedDir), { statementTimeoutMs: sql.statementTimeoutMs, seed: seedDemo })
    } else {
      const url = readSecret(loaded, sql.url, 'sql.url', env)
      if (!/^postgres(ql)?:\/\//.test(url)) fail('sql.url', 'not a postgres:// or postgresql:// URL')
      database = new PostgresDatabase(url, {
        poolSize: sql.poolSize,
        statementTimeoutMs: sql.statementTimeoutMs,
        // The operator log redacts URL credentials (and every other credential shape) itself.
        onError: (e) => log.warn({ err: { message: e.message } }, 'sql database'),
      })
    }
    const options = { db: database, schema: sql.schema, tables, queries, maxRows: sql.maxRows, maxDeleteRows: sql.maxDeleteRows, confirmations }
    try {
      if (Object.keys(tables).length > 0) deps.register(queryTool(options))
      if (Object.keys(queries).length > 0) deps.register(runQueryTool(options))
      if (Object.values(tables).some((t) => t.delete)) deps.register(deleteRecordsTool(options))
    } catch (error) {
      void database.close()
      if (error instanceof ConfigError) throw error
      throw new ConfigError(`config ${loaded.source}: ${error instanceof Error ? error.message : 'sql: invalid'}`)
    }
  }
  if (deps.workspace !== undefined) {
    deps.register(writeFileTool({ workspace: deps.workspace, maxFileBytes: workspace.maxFileBytes, confirmations }))
    if (Object.keys(commands).length > 0) {
      try {
        deps.register(runCommandTool({ workspace: deps.workspace, commands }))
      } catch (error) {
        fail('commands', error instanceof Error ? error.message : 'invalid')
      }
    }
  } else if (Object.keys(commands).length > 0) fail('commands', 'run_command needs the workspace (workspace.enabled)')
  return {
    database,
    async close() {
      await database?.close()
      await closeNonces()
    },
  }
}
