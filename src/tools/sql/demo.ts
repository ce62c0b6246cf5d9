import type { NamedQueryConfig, TableConfig } from '../../config/sql-schema.js'
import type { SqlSession } from './database.js'

/** The demo allowlist: what the query tools may see of the demo database. `secrets` is not in it. */
export const DEMO_TABLES: Record<string, TableConfig> = {
  customers: {
    columns: ['id', 'name', 'email', 'phone', 'country', 'account_manager', 'created_at'],
    owner: { column: 'account_manager', principal: 'name' },
    primaryKey: 'id',
    delete: false,
  },
  orders: {
    columns: ['id', 'customer_id', 'product_id', 'quantity', 'total', 'status', 'account_manager', 'ordered_at'],
    owner: { column: 'account_manager', principal: 'name' },
    primaryKey: 'id',
    delete: true,
  },
  products: { columns: ['id', 'name', 'category', 'price', 'stock'], primaryKey: 'id', delete: false },
}

/** The demo's pre-defined queries for `run_query`. */
export const DEMO_QUERIES: Record<string, NamedQueryConfig> = {
  orders_of_customer: {
    description: "A customer's orders with product names, newest first",
    sql: 'SELECT o.id, p.name AS product, o.quantity, o.total, o.status, o.ordered_at FROM orders o JOIN products p ON p.id = o.product_id WHERE o.customer_id = :customer_id ORDER BY o.ordered_at DESC LIMIT :max_rows',
    params: {
      customer_id: { type: 'integer', min: 1, optional: false, maxLength: 256 },
      max_rows: { type: 'integer', min: 1, max: 100, optional: false, maxLength: 256 },
    },
  },
  sales_by_category: {
    description: 'Revenue and units per product category, for orders with a given status',
    sql: 'SELECT p.category, sum(o.quantity)::int AS units, sum(o.total) AS revenue FROM orders o JOIN products p ON p.id = o.product_id WHERE o.status = :status GROUP BY p.category ORDER BY revenue DESC',
    params: { status: { type: 'string', enum: ['paid', 'shipped', 'refunded'], optional: false, maxLength: 256 } },
  },
}

/** The value the demo's `secrets` table holds: no tool may ever return it. */
export const DEMO_CANARY = 'canary-7f3a9c1e-do-not-leak'

const FIRST = ['Ana', 'Ben', 'Chloé', 'Dmitri', 'Eun-ji', 'Farah', 'Gabriel', 'Hiro', 'Ines', 'Jonas', 'Kemi', 'Lars']
const LAST = ['Silva', 'Okafor', 'Martin', 'Ivanov', 'Kim', 'Haddad', 'Rossi', 'Tanaka', 'García', 'Berg']
const COUNTRIES = ['PT', 'NG', 'FR', 'DE', 'KR', 'EG', 'IT', 'JP', 'ES', 'SE']
const PRODUCTS: [string, string, number][] = [
  ['Espresso beans 1kg', 'coffee', 24.5],
  ['Filter beans 500g', 'coffee', 13.9],
  ['Ceramic mug', 'kitchen', 9.5],
  ['Pour-over kettle', 'kitchen', 49],
  ['Burr grinder', 'kitchen', 129],
  ['Green tea 100g', 'tea', 8.75],
  ['Oolong 100g', 'tea', 14.2],
  ['Tea infuser', 'kitchen', 6.4],
  ['Cold brew kit', 'coffee', 35],
  ['Gift card', 'other', 50],
]
const STATUSES = ['paid', 'shipped', 'shipped', 'refunded']

/** Deterministic pseudo-random numbers: the same demo data on every machine. */
function lcg(seed: number): () => number {
  let s = seed
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648
  }
}

/**
 * Create and fill the demo tables when the embedded database is new: customers (emails, phones),
 * orders, products, and a `secrets` table with a canary that no tool may expose. Customers and
 * orders belong to account managers `alice` and `bob` (row-ownership demo). Run it in a write
 * transaction; it returns whether it created the tables.
 */
export async function seedDemo(tx: SqlSession): Promise<boolean> {
  const present = await tx.query("SELECT to_regclass('customers')::text AS t", [])
  if (typeof present.rows[0]?.t === 'string') return false
  const rand = lcg(42)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T
  {
    for (const ddl of [
      'CREATE TABLE products (id serial PRIMARY KEY, name text NOT NULL, category text NOT NULL, price numeric(10,2) NOT NULL, stock integer NOT NULL)',
      'CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL, phone text, country text NOT NULL, account_manager text NOT NULL, created_at timestamptz NOT NULL)',
      'CREATE TABLE orders (id serial PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers(id), product_id integer NOT NULL REFERENCES products(id), quantity integer NOT NULL, total numeric(10,2) NOT NULL, status text NOT NULL, account_manager text NOT NULL, ordered_at timestamptz NOT NULL)',
      'CREATE TABLE secrets (id serial PRIMARY KEY, name text NOT NULL, value text NOT NULL)',
    ])
      await tx.query(ddl, [])
    for (const [name, category, price] of PRODUCTS) {
      await tx.query('INSERT INTO products (name, category, price, stock) VALUES ($1, $2, $3, $4)', [name, category, price, Math.floor(rand() * 200)])
    }
    const base = Date.UTC(2026, 0, 1)
    for (let i = 1; i <= 40; i++) {
      const first = pick(FIRST)
      const last = pick(LAST)
      const email = `${first
        .toLowerCase()
        .normalize('NFD')
        .replace(/[^a-z]/g, '')}.${last
        .toLowerCase()
        .normalize('NFD')
        .replace(/[^a-z]/g, '')}${i}@example.com`
      const phone = `+1 415 555 ${String(1000 + Math.floor(rand() * 9000))}`
      await tx.query('INSERT INTO customers (name, email, phone, country, account_manager, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        `${first} ${last}`,
        email,
        phone,
        pick(COUNTRIES),
        i % 2 === 0 ? 'bob' : 'alice',
        new Date(base + i * 86_400_000).toISOString(),
      ])
    }
    for (let i = 1; i <= 120; i++) {
      const customer = 1 + Math.floor(rand() * 40)
      const product = 1 + Math.floor(rand() * PRODUCTS.length)
      const quantity = 1 + Math.floor(rand() * 4)
      const price = PRODUCTS[product - 1]?.[2] ?? 0
      await tx.query('INSERT INTO orders (customer_id, product_id, quantity, total, status, account_manager, ordered_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
        customer,
        product,
        quantity,
        (price * quantity).toFixed(2),
        pick(STATUSES),
        customer % 2 === 0 ? 'bob' : 'alice',
        new Date(base + 40 * 86_400_000 + i * 3_600_000 * 7).toISOString(),
      ])
    }
    await tx.query('INSERT INTO secrets (name, value) VALUES ($1, $2)', ['canary', DEMO_CANARY])
  }
  return true
}
