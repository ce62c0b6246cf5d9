import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { PostgresDatabase } from '../../src/tools/sql/database.js'
import { seedDemo } from '../../src/tools/sql/demo.js'

/** The PostgreSQL every machine runs (trust auth). Tests fail, not skip, when it is missing. */
export const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/test'

/** A fresh database holding the demo tables (and the `secrets` canary), dropped by `drop()`. */
export async function demoPostgres(): Promise<{ url: string; query(text: string): Promise<Record<string, unknown>[]>; drop(): Promise<void> }> {
  const name = `bastion_sql_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 3000 })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  const url = `postgres://postgres@127.0.0.1:5432/${name}`
  const seeding = new PostgresDatabase(url, { poolSize: 1, statementTimeoutMs: 30_000, onError: () => {} })
  await seeding.transaction('write', seedDemo)
  await seeding.close()
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  return {
    url,
    async query(text) {
      return (await client.query(text)).rows as Record<string, unknown>[]
    },
    async drop() {
      await client.end()
      const c = new pg.Client({ connectionString: PG_ADMIN_URL })
      await c.connect()
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await c.end()
      }
    },
  }
}
