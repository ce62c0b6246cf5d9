import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
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
      if (!existsSync(join(this.#dir, 'PG_VERSION'))) this.#onCreate?.()
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 })
      const { PGlite } = await import('@electric-sql/pglite')
      const db = await PGlite.create(this.#dir)
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
