import { spawnSync } from 'node:child_process'
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { BIN, serveProcess } from '../helpers/processes.js'
import { connect } from '../helpers/server.js'
import { demoPostgres } from '../helpers/sql.js'

const stops: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop()
})

/** `mcp-bastion keys create --role admin`, then `mcp-bastion serve`, as a user runs them. */
async function serve(dir: string, args: string[], env: Record<string, string> = {}): Promise<{ url: string; key: string }> {
  const config = args.includes('--config') ? ['--config', 'bastion.yaml'] : []
  const created = spawnSync(process.execPath, [BIN, 'keys', 'create', '--role', 'admin', '--name', 'admin', ...config], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, ...env },
  })
  const key = created.stdout.trim()
  const started = await serveProcess(dir, args, env)
  stops.push(started.stop)
  return { url: started.url, key }
}

describe('the query tool as users start it', () => {
  it('no configuration: the admin key queries the embedded demo database with the real client', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-sqlserve-')))
    const { url, key } = await serve(dir, [])
    expect(key).toMatch(/^bst_/)
    const client = await connect(url, 'modern', { authorization: `Bearer ${key}` })
    const tools = (await client.listTools()).tools.map((t) => t.name)
    expect(tools).toEqual(expect.arrayContaining(['query', 'run_query', 'delete_records', 'write_file']))
    const result = (await client.callTool({ name: 'query', arguments: { table: 'products', orderBy: [{ column: 'price', direction: 'desc' }], limit: 3 } })) as {
      content: { text: string }[]
    }
    const data = JSON.parse(result.content[0]?.text ?? '{}') as { rows: { name: string }[] }
    expect(data.rows.map((r) => r.name)).toStrictEqual(['Burr grinder', 'Gift card', 'Pour-over kettle'])
    await client.close()
  }, 60_000)

  it('sql.url from the environment: the same tool over the real PostgreSQL', async () => {
    const pg = await demoPostgres()
    stops.push(() => pg.drop())
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-sqlserve-')))
    writeFileSync(
      join(dir, 'bastion.yaml'),
      `sql:
  url: { env: DATABASE_URL }
  tables:
    customers: { columns: [id, name, email, country] }
    orders: { columns: [id, customer_id, total, status], delete: true, primaryKey: id }
`,
    )
    const { url, key } = await serve(dir, ['--config', 'bastion.yaml'], { DATABASE_URL: pg.url })
    const client = await connect(url, 'legacy', { authorization: `Bearer ${key}` })
    const result = (await client.callTool({ name: 'query', arguments: { table: 'customers', filters: [{ column: 'id', op: 'eq', value: 3 }] } })) as {
      content: { text: string }[]
    }
    const data = JSON.parse(result.content[0]?.text ?? '{}') as { columns: string[]; rows: { id: number; email: string }[] }
    expect(data.columns).toStrictEqual(['id', 'name', 'email', 'country'])
    expect(data.rows).toMatchObject([{ id: 3, email: '[EMAIL]' }])
    // The column exists in the database, but not in this allowlist.
    const phone = (await client.callTool({ name: 'query', arguments: { table: 'customers', columns: ['phone'] } })) as { isError?: boolean }
    expect(phone.isError).toBe(true)
    await client.close()
  }, 60_000)
})
