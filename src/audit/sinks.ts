import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { AuditSink } from './audit-log.js'

/**
 * Audit lines to standard output (containers, log shippers). A full pipe fails closed: a line that
 * would leave more than `bufferBytes` waiting to be written throws, and the request is refused
 * (503); once the reader catches up, lines are accepted again. A single line longer than the
 * buffer is accepted only when nothing is waiting.
 * Does not check: where stdout goes; that the reader keeps the lines.
 */
export class StdoutAuditSink implements AuditSink {
  constructor(
    private readonly bufferBytes: number,
    private readonly out: NodeJS.WritableStream & { writableLength: number } = process.stdout,
  ) {}

  write(line: string): void {
    const waiting = this.out.writableLength
    if (waiting > 0 && waiting + Buffer.byteLength(line, 'utf8') > this.bufferBytes) throw new Error(`stdout is not draining: ${waiting} bytes waiting`)
    this.out.write(line)
  }

  /** False once the waiting bytes reach the buffer: requests are refused before they run. */
  available(): boolean {
    const waiting = this.out.writableLength
    return waiting === 0 || waiting < this.bufferBytes
  }

  close(): void {}
}

const TABLE = /^[a-z_][a-z0-9_]{0,62}$/

/** Bounds of the queue of lines waiting for the database; past either, writes throw (503). */
export interface PostgresQueueBounds {
  readonly maxQueueBytes: number
  readonly maxQueueLines: number
}

const DEFAULT_BOUNDS: PostgresQueueBounds = { maxQueueBytes: 8 * 1024 * 1024, maxQueueLines: 10_000 }
/** Reconnection backoff: doubles from the first delay after each failed attempt, up to the last. */
const BACKOFF_FIRST_MS = 100
const BACKOFF_MAX_MS = 5000
const BATCH_LINES = 1000

interface Queued {
  readonly n: number
  readonly line: string
  readonly bytes: number
}

/**
 * Audit lines in PostgreSQL, for many replicas: an append-only table (a trigger refuses UPDATE,
 * DELETE and TRUNCATE) holding the same sealed lines as the file, each replica its own writer
 * chain. Lines are queued and inserted in order, in batches, by one connection; `flush()` resolves
 * once every line queued so far is committed and rejects if that failed, so requests wait for
 * their line and fail closed. A failed batch stays queued and is retried first, so the chain in
 * the table has no holes; the requests that waited on it were refused.
 * The queue is bounded (bytes and lines): past a bound `write` throws, so the request is refused
 * and its line never enters the chain. A lost connection (a terminated backend, a restart) is
 * replaced in the background with exponential backoff (100 ms doubling to 5 s); meanwhile `flush`
 * rejects at once, and once connected again the queue is written first. Every row carries this
 * sink's writer id and the line's number under a unique index, inserted `ON CONFLICT DO NOTHING`:
 * a batch whose COMMIT was lost with the connection is retried without being stored twice.
 * Does not check: a superuser who disables the trigger (`audit verify` still finds the edit).
 */
export class PostgresAuditSink implements AuditSink {
  readonly #url: string
  readonly #table: string
  readonly #bounds: PostgresQueueBounds
  readonly #onError: ((e: Error) => void) | undefined
  /** This sink's rows: the idempotency key of a line is (writer, n). */
  readonly #writer = randomUUID()
  #client: pg.Client | undefined
  #queue: Queued[] = []
  #queueBytes = 0
  /** Number of the next line written; every line numbered below `#stored` is in the table. */
  #next = 0
  #stored = 0
  #inFlight: Promise<void> | undefined
  #retry: NodeJS.Timeout | undefined
  #attempts = 0
  #last: string | undefined
  #closed = false

  private constructor(url: string, table: string, client: pg.Client, last: string | undefined, bounds: PostgresQueueBounds, onError: ((e: Error) => void) | undefined) {
    this.#url = url
    this.#table = table
    this.#last = last
    this.#bounds = bounds
    this.#onError = onError
    this.#adopt(client)
  }

  /** Connect, create the table and its guard if needed, and read the last line (the chain anchor). */
  static async open(url: string, table: string, onError?: (e: Error) => void, bounds: PostgresQueueBounds = DEFAULT_BOUNDS): Promise<PostgresAuditSink> {
    if (!TABLE.test(table)) throw new Error(`table name ${JSON.stringify(table)}: lower-case letters, digits and _ only`)
    const client = PostgresAuditSink.#newClient(url)
    // Until the sink owns it: an error now fails the start, but must not crash the process.
    const early = (e: Error) => onError?.(e)
    client.on('error', early)
    try {
      await client.connect()
      // Replicas starting at once would race on the DDL below (two CREATE TABLE IF NOT EXISTS, or a
      // DROP and CREATE TRIGGER, collide in the catalog): one at a time, under a lock named by the table.
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`mcp-bastion audit ${table}`])
      await client.query(`CREATE TABLE IF NOT EXISTS ${table} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), line text NOT NULL)`)
      // Tables made by earlier versions get the idempotency columns; their old rows stay NULL (distinct).
      await client.query(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS writer text, ADD COLUMN IF NOT EXISTS n bigint`)
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${table}_once ON ${table} (writer, n)`)
      await client.query(`CREATE OR REPLACE FUNCTION ${table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${table} is append-only'; END $$`)
      await client.query(`DROP TRIGGER IF EXISTS ${table}_no_change ON ${table}`)
      await client.query(`CREATE TRIGGER ${table}_no_change BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_append_only()`)
      await client.query(`DROP TRIGGER IF EXISTS ${table}_no_truncate ON ${table}`)
      await client.query(`CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION ${table}_append_only()`)
      await client.query('COMMIT')
      const last = await client.query<{ line: string }>(`SELECT line FROM ${table} ORDER BY id DESC LIMIT 1`)
      client.off('error', early)
      return new PostgresAuditSink(url, table, client, last.rows[0]?.line.replace(/\n$/, ''), bounds, onError)
    } catch (error) {
      await client.end().catch(() => undefined)
      throw error
    }
  }

  static #newClient(url: string): pg.Client {
    // query_timeout: a database that stopped answering (not closed) fails the batch too.
    return new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000, statement_timeout: 10_000, query_timeout: 15_000 })
  }

  /** Take a connected client: its error or end marks it lost, which starts a reconnection. */
  #adopt(client: pg.Client): void {
    client.on('error', (e: Error) => this.#lost(client, e))
    client.on('end', () => this.#lost(client, new Error('audit database connection ended')))
    this.#client = client
  }

  #lost(client: pg.Client, error: Error): void {
    if (this.#client !== client) return
    this.#client = undefined
    this.#onError?.(error)
    client.end().catch(() => undefined)
    this.#reconnect()
  }

  #reconnect(): void {
    if (this.#closed || this.#retry !== undefined || this.#client !== undefined) return
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.#attempts)
    this.#attempts += 1
    this.#retry = setTimeout(() => {
      const client = PostgresAuditSink.#newClient(this.#url)
      let settled = false
      const failed = (e: Error) => {
        if (settled) return
        settled = true
        this.#retry = undefined
        client.end().catch(() => undefined)
        this.#reconnect()
        this.#onError?.(e)
      }
      // Kept for the client's life: a dying client may emit more than one error, and an
      // unheard 'error' would end the process. Once adopted, the sink's own listener acts.
      client.on('error', failed)
      client.connect().then(
        () => {
          if (settled) return
          settled = true
          this.#retry = undefined
          if (this.#closed) {
            client.end().catch(() => undefined)
            return
          }
          this.#adopt(client)
          // What waited during the outage is written first, before any new request's line.
          this.flush().then(
            () => {
              this.#attempts = 0
            },
            () => undefined,
          )
        },
        (e: Error) => failed(e),
      )
    }, delay)
    this.#retry.unref()
  }

  lastLine(): string | undefined {
    return this.#last
  }

  /** @throws when closed or when the queue is at its bound (the request is refused, the line not chained). */
  write(line: string): void {
    if (this.#closed) throw new Error('audit sink closed')
    const bytes = Buffer.byteLength(line, 'utf8')
    const { maxQueueBytes, maxQueueLines } = this.#bounds
    if (this.#queue.length + 1 > maxQueueLines || this.#queueBytes + bytes > maxQueueBytes)
      throw new Error(`audit queue full: ${this.#queue.length} lines, ${this.#queueBytes} bytes waiting for the database`)
    this.#queue.push({ n: this.#next, line, bytes })
    this.#next += 1
    this.#queueBytes += bytes
  }

  /** Connected and below both queue bounds (a line that does not fit still makes `write` throw). */
  available(): boolean {
    return !this.#closed && this.#client !== undefined && this.#queue.length < this.#bounds.maxQueueLines && this.#queueBytes < this.#bounds.maxQueueBytes
  }

  /** Lines and bytes waiting for the database. */
  get queued(): { lines: number; bytes: number } {
    return { lines: this.#queue.length, bytes: this.#queueBytes }
  }

  /** Commit everything queued so far. @throws when the database refused or is unreachable */
  async flush(): Promise<void> {
    const target = this.#next
    while (this.#stored < target) {
      if (this.#client === undefined) throw new Error('audit database unavailable (reconnecting)')
      // One batch at a time, in order: join the running one, or send the head of the queue.
      this.#inFlight ??= this.#send().finally(() => {
        this.#inFlight = undefined
      })
      await this.#inFlight
    }
  }

  async #send(): Promise<void> {
    const client = this.#client
    if (client === undefined) throw new Error('audit database unavailable (reconnecting)')
    const batch = this.#queue.slice(0, BATCH_LINES)
    try {
      await client.query(
        `INSERT INTO ${this.#table} (writer, n, line) SELECT $1, n, line FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS t(n, line, o) ORDER BY o ON CONFLICT (writer, n) DO NOTHING`,
        [this.#writer, batch.map((q) => q.n), batch.map((q) => q.line)],
      )
    } catch (error) {
      // Whatever failed (connection, timeout, the database refusing), start on a fresh connection.
      this.#lost(client, error instanceof Error ? error : new Error(String(error)))
      throw error
    }
    // The backoff starts over only once a batch went through: a database that accepts the
    // connection but refuses the insert (a dropped table) is retried at the slow pace.
    this.#attempts = 0
    this.#queue.splice(0, batch.length)
    for (const q of batch) this.#queueBytes -= q.bytes
    const last = batch.at(-1)
    if (last !== undefined) this.#stored = last.n + 1
  }

  #closing: Promise<void> | undefined

  close(): void {
    this.#closed = true
    if (this.#retry !== undefined) clearTimeout(this.#retry)
    this.#retry = undefined
    this.#closing ??= this.flush()
      .catch(() => undefined)
      .finally(() => {
        const client = this.#client
        this.#client = undefined
        return client?.end().catch(() => undefined)
      })
  }

  /** Resolves once the last lines are committed (or given up) and the connection is closed. */
  whenClosed(): Promise<void> {
    return this.#closing ?? Promise.resolve()
  }

  /** Every line in the table, oldest first (for `audit verify`). */
  static async readAll(url: string, table: string): Promise<string> {
    if (!TABLE.test(table)) throw new Error(`table name ${JSON.stringify(table)}: lower-case letters, digits and _ only`)
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
    await client.connect()
    try {
      const rows = await client.query<{ line: string }>(`SELECT line FROM ${table} ORDER BY id`)
      return rows.rows.map((r) => r.line).join('')
    } finally {
      await client.end()
    }
  }
}
