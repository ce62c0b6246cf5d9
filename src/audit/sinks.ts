import pg from 'pg'
import type { AuditSink } from './audit-log.js'

/**
 * Audit lines to standard output (containers, log shippers). A full pipe fails closed: once more
 * than `bufferBytes` are waiting to be written, writes throw and requests are refused (503).
 * Does not check: where stdout goes; that the reader keeps the lines.
 */
export class StdoutAuditSink implements AuditSink {
  constructor(
    private readonly bufferBytes: number,
    private readonly out: NodeJS.WritableStream & { writableLength: number } = process.stdout,
  ) {}

  write(line: string): void {
    if (this.out.writableLength > this.bufferBytes) throw new Error(`stdout is not draining: ${this.out.writableLength} bytes waiting`)
    this.out.write(line)
  }

  close(): void {}
}

const TABLE = /^[a-z_][a-z0-9_]{0,62}$/

/**
 * Audit lines in PostgreSQL, for many replicas: an append-only table (a trigger refuses UPDATE,
 * DELETE and TRUNCATE) holding the same sealed lines as the file, each replica its own writer
 * chain. Lines are queued and inserted in order, in batches, by one connection; `flush()` resolves
 * once every line queued so far is committed and rejects if that failed, so requests wait for
 * their line and fail closed. A failed batch stays queued and is retried first, so the chain in
 * the table has no holes; the requests that waited on it were refused.
 * Does not check: a superuser who disables the trigger (`audit verify` still finds the edit).
 */
export class PostgresAuditSink implements AuditSink {
  readonly #client: pg.Client
  readonly #table: string
  #queue: string[] = []
  #inFlight: Promise<void> | undefined
  #last: string | undefined
  #closed = false

  private constructor(client: pg.Client, table: string, last: string | undefined) {
    this.#client = client
    this.#table = table
    this.#last = last
  }

  /** Connect, create the table and its guard if needed, and read the last line (the chain anchor). */
  static async open(url: string, table: string, onError?: (e: Error) => void): Promise<PostgresAuditSink> {
    if (!TABLE.test(table)) throw new Error(`table name ${JSON.stringify(table)}: lower-case letters, digits and _ only`)
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000, statement_timeout: 10_000 })
    client.on('error', (e: Error) => onError?.(e))
    await client.connect()
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), line text NOT NULL)`)
    await client.query(`CREATE OR REPLACE FUNCTION ${table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${table} is append-only'; END $$`)
    await client.query(`DROP TRIGGER IF EXISTS ${table}_no_change ON ${table}`)
    await client.query(`CREATE TRIGGER ${table}_no_change BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_append_only()`)
    await client.query(`DROP TRIGGER IF EXISTS ${table}_no_truncate ON ${table}`)
    await client.query(`CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION ${table}_append_only()`)
    const last = await client.query<{ line: string }>(`SELECT line FROM ${table} ORDER BY id DESC LIMIT 1`)
    return new PostgresAuditSink(client, table, last.rows[0]?.line.replace(/\n$/, ''))
  }

  lastLine(): string | undefined {
    return this.#last
  }

  write(line: string): void {
    if (this.#closed) throw new Error('audit sink closed')
    this.#queue.push(line)
  }

  /** Commit everything queued so far. @throws when the database refused or is unreachable */
  async flush(): Promise<void> {
    // One batch at a time, in order: wait for the running one, then send what is queued.
    while (this.#inFlight !== undefined) await this.#inFlight.catch(() => undefined)
    if (this.#queue.length === 0) return
    const batch = this.#queue.slice(0, 1000)
    const run = (async () => {
      await this.#client.query(`INSERT INTO ${this.#table} (line) SELECT line FROM unnest($1::text[]) WITH ORDINALITY AS t(line, n) ORDER BY n`, [batch])
      this.#queue = this.#queue.slice(batch.length)
    })()
    this.#inFlight = run
    try {
      await run
    } finally {
      this.#inFlight = undefined
    }
    if (this.#queue.length > 0) await this.flush()
  }

  #closing: Promise<void> | undefined

  close(): void {
    this.#closed = true
    this.#closing ??= this.flush()
      .catch(() => undefined)
      .finally(() => this.#client.end().catch(() => undefined))
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
