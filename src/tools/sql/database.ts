import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmdirSync, rmSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import { SecurityError } from '../../errors.js'

/** Rows as plain JSON: dates as ISO strings, 64-bit integers as numbers when exact, else strings. */
export interface SqlRows {
  readonly fields: readonly string[]
  readonly rows: readonly Record<string, unknown>[]
  readonly rowCount: number
}

/** One statement at a time inside a transaction bastion opened. */
export interface SqlSession {
  query(text: string, values: readonly unknown[]): Promise<SqlRows>
}

/**
 * A database the SQL tools run on: the embedded PGlite or a real PostgreSQL, one code path.
 * Every use is a transaction with a `statement_timeout`; `read` transactions are `READ ONLY`, so
 * PostgreSQL itself refuses any write a read could smuggle in.
 */
export interface SqlDatabase {
  readonly kind: 'embedded' | 'postgres'
  transaction<T>(mode: 'read' | 'write', work: (session: SqlSession) => Promise<T>): Promise<T>
  close(): Promise<void>
}

/** Values safe to put in a JSON result. */
function plain(value: unknown): unknown {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString()
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString()
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64')
  if (Array.isArray(value)) return value.map(plain)
  return value
}

function plainRows(fields: readonly string[], rows: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  return rows.map((row) => {
    const out: Record<string, unknown> = {}
    for (const f of fields) out[f] = plain(row[f])
    return out
  })
}

/** `SET LOCAL` takes no bind parameters: the value is an integer from validated config, never input. */
function timeoutStatement(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 1) throw new SecurityError('ERR_INTERNAL', 'statement timeout is not a positive integer')
  return `SET LOCAL statement_timeout = ${ms}`
}

/** A real PostgreSQL through a `pg` pool. */
export class PostgresDatabase implements SqlDatabase {
  readonly kind = 'postgres'
  readonly #pool: pg.Pool
  readonly #timeout: string

  constructor(url: string, options: { poolSize: number; statementTimeoutMs: number; onError: (error: Error) => void }) {
    this.#pool = new pg.Pool({ connectionString: url, max: options.poolSize, connectionTimeoutMillis: 5000, idleTimeoutMillis: 30_000, application_name: 'mcp-bastion' })
    // An idle client's connection dropping must not crash the process; the next use reconnects.
    this.#pool.on('error', options.onError)
    this.#timeout = timeoutStatement(options.statementTimeoutMs)
  }

  async transaction<T>(mode: 'read' | 'write', work: (session: SqlSession) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect()
    let broken = false
    try {
      await client.query(mode === 'read' ? 'BEGIN TRANSACTION READ ONLY' : 'BEGIN')
      await client.query(this.#timeout)
      const session: SqlSession = {
        async query(text, values) {
          const result = await client.query({ text, values: [...values] })
          const fields = result.fields.map((f) => f.name)
          return { fields, rows: plainRows(fields, result.rows as Record<string, unknown>[]), rowCount: result.rowCount ?? result.rows.length }
        },
      }
      const value = await work(session)
      await client.query('COMMIT')
      return value
    } catch (error) {
      try {
        await client.query('ROLLBACK')
      } catch {
        broken = true
      }
      throw error
    } finally {
      client.release(broken)
    }
  }

  async close(): Promise<void> {
    await this.#pool.end()
  }
}

type EmbeddedTransaction = Parameters<Parameters<PGlite['transaction']>[0]>[0]

function embeddedSession(tx: EmbeddedTransaction): SqlSession {
  return {
    async query(text, values) {
      const result = await tx.query<Record<string, unknown>>(text, [...values])
      const fields = result.fields.map((f) => f.name)
      return { fields, rows: plainRows(fields, result.rows), rowCount: result.rows.length === 0 ? (result.affectedRows ?? 0) : result.rows.length }
    },
  }
}

/**
 * PGlite's own start parameters and one change. `shared_buffers` is PostgreSQL's page cache, and
 * its default 128MB are all touched at start-up inside the WebAssembly memory (RSS); the demo data
 * is well under 1 MB, so 16MB hold it many times over (measured: reopen RSS 307 → 180 MB, see
 * bench/embedded-db.mjs). Left as they were: `initialMemory` (pglite.wasm declares 128 MiB as its
 * minimum; less fails to link), `work_mem` and `temp_buffers` (allocated per query only when used;
 * lowering them would change plans, not RSS), durability (`relaxedDurability` only defers syncs,
 * which NodeFS does not have; PGlite's `-F` is unchanged).
 */
function startParams(defaults: readonly string[]): string[] {
  return [...defaults, '-c', 'shared_buffers=16MB']
}

/**
 * initdb on a new folder runs two more WebAssembly instances and a tar of the whole cluster beside
 * the database, and V8 does not give that back: RSS stayed ~600 MB above a reopened database. So
 * a short-lived child process creates the cluster in a sibling folder, which is renamed into place
 * only once complete (a crash mid-initdb leaves no half cluster that PGlite would "resume"), and
 * this process only ever opens an existing one. Its stdout is ignored: under `serve --stdio` it is
 * the protocol stream. Does not check: the child's peak RSS (it is gone before the first query).
 */
async function createCluster(dir: string, options: { startParams: string[] }): Promise<void> {
  const temp = join(dirname(dir), `.${basename(dir)}.init-${process.pid}-${Date.now()}`)
  const script = 'const { PGlite } = await import(process.argv[1]); const db = await PGlite.create(process.argv[2], JSON.parse(process.argv[3])); await db.close()'
  mkdirSync(temp, { recursive: true, mode: 0o700 })
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', script, import.meta.resolve('@electric-sql/pglite'), temp, JSON.stringify(options)],
        { timeout: 120_000, killSignal: 'SIGKILL', maxBuffer: 1 << 20, windowsHide: true },
        (error, _stdout, stderr) =>
          error === null ? resolve() : reject(new SecurityError('ERR_DATABASE', `embedded database initdb failed: ${stderr.slice(-2000) || error.message}`, { cause: error })),
      ).stdin?.end()
    })
    // rename(2) replaces an empty folder and refuses a non-empty one: nothing of an operator's is lost.
    if (existsSync(dir)) rmdirSync(dir)
    renameSync(temp, dir)
  } finally {
    rmSync(temp, { recursive: true, force: true })
  }
}

/**
 * The embedded database: PGlite (PostgreSQL compiled to WebAssembly) in this process, stored under
 * the state directory, opened on first use. One connection: transactions run one at a time.
 * Does not check: `statement_timeout` (WebAssembly PostgreSQL has no timer interrupt; the tool's
 * own timeout still answers the client). For production load, use a real PostgreSQL.
 */
export class EmbeddedDatabase implements SqlDatabase {
  readonly kind = 'embedded'
  readonly #dir: string
  readonly #seed: ((session: SqlSession) => Promise<unknown>) | undefined
  readonly #timeout: string
  readonly #onCreate: (() => void) | undefined
  #db: Promise<PGlite> | undefined
  #closed = false

  /** `onCreate` is told when the first use creates the database (it takes seconds, once). */
  constructor(dir: string, options: { statementTimeoutMs: number; seed?: (session: SqlSession) => Promise<unknown>; onCreate?: () => void }) {
    this.#dir = dir
    this.#seed = options.seed
    this.#onCreate = options.onCreate
    this.#timeout = timeoutStatement(options.statementTimeoutMs)
  }

  #open(): Promise<PGlite> {
    if (this.#closed) return Promise.reject(new SecurityError('ERR_DATABASE', 'embedded database is closed'))
    this.#db ??= (async () => {
      const { PGlite } = await import('@electric-sql/pglite')
      const options = { startParams: startParams(PGlite.defaultStartParams) }
      mkdirSync(dirname(this.#dir), { recursive: true, mode: 0o700 })
      if (!existsSync(join(this.#dir, 'PG_VERSION'))) {
        this.#onCreate?.()
        await createCluster(this.#dir, options)
      }
      const db = await PGlite.create(this.#dir, options)
      try {
        const seed = this.#seed
        if (seed !== undefined) await db.transaction((tx) => seed(embeddedSession(tx)))
      } catch (error) {
        await db.close()
        throw error
      }
      return db
    })().catch((error: unknown) => {
      // A failed open is retried by the next call, not cached.
      this.#db = undefined
      throw error
    })
    return this.#db
  }

  async transaction<T>(mode: 'read' | 'write', work: (session: SqlSession) => Promise<T>): Promise<T> {
    const db = await this.#open()
    return db.transaction(async (tx) => {
      if (mode === 'read') await tx.query('SET TRANSACTION READ ONLY')
      await tx.query(this.#timeout)
      return work(embeddedSession(tx))
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    const db = this.#db
    this.#db = undefined
    if (db !== undefined) await (await db.catch(() => undefined))?.close()
  }
}
