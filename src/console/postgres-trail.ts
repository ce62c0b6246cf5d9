import { createHash } from 'node:crypto'
import pg from 'pg'
import { ChainVerifier } from '../audit/chain-verifier.js'
import { SecurityError } from '../errors.js'
import { CursorCodec } from './cursor.js'
import { conditions, J, JSON_FN, type StatRow, TS, trailStatsAt } from './postgres-trail-sql.js'
import { rangeFindings, rangeResult } from './range-verify.js'
import type { RangeVerification, TrailEntry, TrailPage, TrailQuery, TrailReader, TrailStats } from './trail.js'
import { type FilterField, trailFilter, trailLimit } from './trail-filter.js'

export interface PostgresTrailReaderOptions {
  readonly url: string
  /** The sink's table (lower-case letters, digits, `_`). */
  readonly table: string
  /** The current audit key and the kept old ones. */
  readonly keys: readonly Buffer[]
  /** Row ids one query without an indexed field may look at before it returns (`searchedBackTo`). Default 500,000. */
  readonly scanRows?: number
  /** Rows the verifier reads per call at most; ranges past them are `pending`. Default 500,000. */
  readonly verifyRows?: number
  readonly maxSeen?: number
  readonly maxProblems?: number
}

const TABLE = /^[a-z_][a-z0-9_]{0,62}$/
/** Fields with an expression index; `decision` and `event` have a few values each: an index would not be used. */
const INDEXED: readonly FilterField[] = ['requestId', 'principal', 'tool', 'reason']
const WINDOW = 50_000
/** Rows of slack around a row found by `ts`: replicas' lines are stored a little out of time order. */
const SLACK = 1000
const CURSOR = { id: 'number' } as const

const parse = (line: string): Record<string, unknown> | undefined => {
  try {
    const v: unknown = JSON.parse(line)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/**
 * The console's reader of the PostgreSQL audit table. It adds what its filters need if missing —
 * a function that parses a line as JSON or returns NULL (IMMUTABLE, so it can be indexed; a row
 * that is not JSON never fails an insert), and expression indexes on `ts` and the request id,
 * principal, tool and reason — built `CONCURRENTLY`, so the writer is never blocked. A table that
 * does not exist yet reads as empty. Every value is a parameter; the table name is checked.
 * The chain is verified by {@link ChainVerifier} over rows in id order, incrementally, bounded.
 * Does not check: rows whose `ts` is far from their id order when a time range narrows a scan
 * (by more than 1000 rows); without an indexed field, rows past `scanRows` per query.
 */
export class PostgresTrailReader implements TrailReader {
  readonly kind = 'postgres'
  readonly #pool: pg.Pool
  readonly #table: string
  readonly #cursors = new CursorCodec()
  readonly #verifier: ChainVerifier
  readonly #scanRows: number
  readonly #verifyRows: number
  /** Row ids one SQL query looks at, without an indexed field. */
  readonly #window: number
  #ready = false
  /** The verifier's progress: the last row read, and a line begun in a row without its newline. */
  #lastId = 0
  #carry: { id: number; text: string } | undefined

  private constructor(pool: pg.Pool, o: PostgresTrailReaderOptions) {
    this.#pool = pool
    this.#table = o.table
    this.#scanRows = o.scanRows ?? 500_000
    this.#verifyRows = o.verifyRows ?? 500_000
    this.#window = Math.min(WINDOW, this.#scanRows)
    this.#verifier = new ChainVerifier(o.keys, {
      maxSeen: o.maxSeen ?? 100_000,
      maxProblems: o.maxProblems ?? 1000,
      maxGaps: o.maxProblems ?? 1000,
      maxTrusted: o.maxProblems ?? 1000,
    })
    this.#verifier.beginFile(o.table)
  }

  /** Connect and add the indexes. @throws Error on a bad table name, a short key, or a database that refuses */
  static async open(o: PostgresTrailReaderOptions): Promise<PostgresTrailReader> {
    if (!TABLE.test(o.table)) throw new Error(`table name ${JSON.stringify(o.table)}: lower-case letters, digits and _ only`)
    if (o.keys.length === 0 || o.keys.some((k) => k.length < 32)) throw new Error('PostgresTrailReader: keys: at least one audit key of at least 32 bytes')
    for (const [name, v] of [
      ['scanRows', o.scanRows],
      ['verifyRows', o.verifyRows],
      ['maxSeen', o.maxSeen],
      ['maxProblems', o.maxProblems],
    ] as const)
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new Error(`PostgresTrailReader: ${name} must be a whole number above 0`)
    const pool = new pg.Pool({ connectionString: o.url, max: 2, connectionTimeoutMillis: 5000, statement_timeout: 30_000 })
    pool.on('error', () => undefined) // an idle client's error: the next query reconnects
    const reader = new PostgresTrailReader(pool, o)
    try {
      await reader.#prepare()
    } catch (error) {
      await pool.end().catch(() => undefined)
      throw error
    }
    return reader
  }

  /** The function and indexes, once the table exists. */
  async #prepare(): Promise<boolean> {
    if (this.#ready) return true
    const t = this.#table
    const exists = await this.#pool.query<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [t])
    if (exists.rows[0]?.r === null || exists.rows[0] === undefined) return false
    const client = await this.#pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['mcp-bastion audit json function'])
      await client.query(
        `CREATE OR REPLACE FUNCTION ${JSON_FN}(line text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$ BEGIN RETURN line::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$`,
      )
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined)
      throw error
    } finally {
      client.release()
    }
    const hash = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 8)
    const indexes: [string, string][] = [['ts', TS], ...INDEXED.map((f): [string, string] => [f.toLowerCase(), `(${J}->>'${f}')`])]
    for (const [name, expr] of indexes) {
      const index = `${t.slice(0, 40)}_c_${name}_${hash(`${t} ${name}`)}`
      const valid = await this.#pool.query<{ ok: boolean }>('SELECT i.indisvalid AS ok FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1', [index])
      if (valid.rows[0]?.ok === true) continue
      // A build that failed earlier leaves an invalid index: dropped and built again.
      if (valid.rows[0] !== undefined) await this.#pool.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`)
      await this.#pool.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${index} ON ${t} (${expr})`)
    }
    this.#ready = true
    return true
  }

  #entry(id: number, line: string): TrailEntry | undefined {
    const record = parse(line.endsWith('\n') ? line.slice(0, -1) : line)
    return record === undefined ? undefined : { cursor: this.#cursors.encode({ id }), where: `${this.#table}#${id}`, record: record as unknown as TrailEntry['record'] }
  }

  #id(cursor: unknown): number {
    return this.#cursors.decode(cursor, CURSOR).id
  }

  /** The first row with `ts` at or after `at`, by the ts index. */
  async #idAt(at: string): Promise<number | undefined> {
    const r = await this.#pool.query<{ id: string }>(`SELECT id FROM ${this.#table} WHERE ${TS} >= $1 ORDER BY ${TS} LIMIT 1`, [at])
    return r.rows[0] === undefined ? undefined : Number(r.rows[0].id)
  }

  async #bounds(): Promise<{ min: number; max: number } | undefined> {
    const r = await this.#pool.query<{ min: string | null; max: string | null }>(`SELECT min(id) AS min, max(id) AS max FROM ${this.#table}`)
    const row = r.rows[0]
    return row?.min == null || row.max == null ? undefined : { min: Number(row.min), max: Number(row.max) }
  }

  async query(q: TrailQuery): Promise<TrailPage> {
    const limit = trailLimit(q.limit)
    const filter = trailFilter(q)
    const before = q.before === undefined ? undefined : this.#id(q.before)
    const after = q.after === undefined ? undefined : this.#id(q.after)
    if (!(await this.#prepare())) return { entries: [] }
    const bounds = await this.#bounds()
    if (bounds === undefined) return { entries: [] }
    const newest = this.#cursors.encode({ id: bounds.max })
    const indexed = filter.fields.some(([name]) => INDEXED.includes(name))
    const entries: TrailEntry[] = []
    const take = (rows: readonly { id: string; line: string }[]): void => {
      for (const row of rows) {
        const e = this.#entry(Number(row.id), row.line)
        if (e !== undefined && entries.length < limit) entries.push(e)
      }
    }
    const run = async (lo: number, hi: number, desc: boolean, want: number): Promise<{ id: string; line: string }[]> => {
      const params: unknown[] = [lo, hi]
      const sql = `SELECT id, line FROM ${this.#table} WHERE id >= $1 AND id < $2 AND ${conditions(filter, params)} ORDER BY id ${desc ? 'DESC' : 'ASC'} LIMIT $${params.push(want)}`
      return (await this.#pool.query<{ id: string; line: string }>(sql, params)).rows
    }
    if (after !== undefined) {
      // Live tail: rows after the cursor, oldest first, in windows up to the scan budget.
      let lo = after + 1
      while (entries.length < limit && lo <= bounds.max && lo - after - 1 < this.#scanRows) {
        const hi = indexed ? bounds.max + 1 : Math.min(bounds.max + 1, lo + this.#window)
        take(await run(lo, hi, false, limit - entries.length))
        lo = hi
      }
      const last = entries.at(-1)
      const next = entries.length >= limit && last !== undefined ? last.cursor : lo <= bounds.max ? this.#cursors.encode({ id: lo - 1 }) : undefined
      return { entries, newest, ...(next === undefined ? {} : { next }) }
    }
    let hi = Math.min(before ?? bounds.max + 1, bounds.max + 1)
    if (filter.to !== undefined) {
      const at = await this.#idAt(filter.to)
      if (at !== undefined) hi = Math.min(hi, at + SLACK)
    }
    let floor = bounds.min
    if (filter.from !== undefined) {
      const at = await this.#idAt(filter.from)
      if (at === undefined) return { entries, newest }
      floor = Math.max(floor, at - SLACK)
    }
    const start = hi
    while (entries.length < limit && hi > floor) {
      if (!indexed && start - hi >= this.#scanRows) {
        const r = await this.#pool.query<{ ts: string | null }>(`SELECT ${J}->>'ts' AS ts FROM ${this.#table} WHERE id >= $1 ORDER BY id LIMIT 1`, [hi])
        const ts = r.rows[0]?.ts
        return { entries, newest, next: this.#cursors.encode({ id: hi }), ...(typeof ts === 'string' ? { searchedBackTo: ts } : {}) }
      }
      const lo = indexed ? floor : Math.max(floor, hi - this.#window)
      take(await run(lo, hi, true, limit - entries.length))
      hi = lo
    }
    const last = entries.at(-1)
    return { entries, newest, ...(entries.length >= limit && last !== undefined ? { next: last.cursor } : {}) }
  }

  async *export(q: Omit<TrailQuery, 'limit' | 'before' | 'after'>): AsyncIterable<string> {
    const filter = trailFilter(q)
    if (!(await this.#prepare())) return
    let after = 0
    for (;;) {
      const params: unknown[] = [after]
      const sql = `SELECT id, line FROM ${this.#table} WHERE id > $1 AND ${conditions(filter, params)} ORDER BY id LIMIT 1000`
      const rows = (await this.#pool.query<{ id: string; line: string }>(sql, params)).rows
      for (const row of rows) if (parse(row.line.replace(/\n$/, '')) !== undefined) yield row.line.endsWith('\n') ? row.line : `${row.line}\n`
      const last = rows.at(-1)
      if (last === undefined || rows.length < 1000) return
      after = Number(last.id)
    }
  }

  /** Feed the verifier the rows stored since the last call, at most `verifyRows`. */
  async #catchUp(): Promise<void> {
    let budget = this.#verifyRows
    while (budget > 0) {
      const rows = (
        await this.#pool.query<{ id: string; line: string }>(`SELECT id, line FROM ${this.#table} WHERE id > $1 ORDER BY id LIMIT $2`, [this.#lastId, Math.min(budget, 5000)])
      ).rows
      for (const row of rows) {
        const id = Number(row.id)
        // The table's lines as `audit verify --postgres` reads them: one text, split at newlines.
        const parts = row.line.split('\n')
        const tail = parts.pop() ?? ''
        parts.forEach((part, i) => {
          const carry = i === 0 ? this.#carry : undefined
          this.#verifier.line(carry === undefined ? part : carry.text + part, carry?.id ?? id)
          if (i === 0) this.#carry = undefined
        })
        if (tail !== '') this.#carry = this.#carry === undefined ? { id, text: tail } : { id: this.#carry.id, text: this.#carry.text + tail }
        this.#lastId = id
      }
      budget -= rows.length
      if (rows.length < 5000) return
    }
  }

  async verify(from: string, to: string): Promise<RangeVerification> {
    const a = this.#id(from)
    const b = this.#id(to)
    if (a > b) throw new SecurityError('ERR_INVALID_REQUEST', 'verify: from is after to')
    if (!(await this.#prepare())) return { status: 'pending', lines: 0, problems: [], gaps: [] }
    await this.#catchUp()
    const done = this.#carry === undefined ? this.#lastId : this.#carry.id - 1
    if (b > done) return { status: 'pending', lines: 0, problems: [], gaps: [] }
    const found = rangeFindings(
      this.#verifier.report(),
      this.#verifier.omitted,
      { file: 0, line: a },
      { file: 0, line: b },
      (_file, line) => ({ file: 0, line }),
      (_file, line) => `${this.#table}#${line}`,
    )
    const counted = await this.#pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${this.#table} t JOIN unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) ON t.id BETWEEN r.lo AND r.hi`,
      [found.trusted.map((r) => r.lo), found.trusted.map((r) => r.hi)],
    )
    return rangeResult(found, Number(counted.rows[0]?.n ?? 0))
  }

  async stats(now: Date): Promise<TrailStats> {
    const ready = await this.#prepare()
    return trailStatsAt(now, async (sql, params) => (await this.#pool.query<StatRow>(sql, params)).rows, ready, this.#table)
  }

  async lastSeen(principals: readonly string[]): Promise<ReadonlyMap<string, string>> {
    const out = new Map<string, string>()
    if (principals.length === 0 || !(await this.#prepare())) return out
    const sql = `SELECT ${J}->>'principal' AS p, max(${TS}) AS ts FROM ${this.#table} WHERE ${J}->>'principal' = ANY($1) AND jsonb_typeof(${J}->'requestId') = 'string' GROUP BY 1`
    for (const r of (await this.#pool.query<{ p: string; ts: string | null }>(sql, [[...principals]])).rows) if (r.ts !== null) out.set(r.p, r.ts)
    return out
  }

  async close(): Promise<void> {
    await this.#pool.end()
  }
}
