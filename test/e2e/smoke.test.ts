import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Era, startServer, type TestServer } from '../helpers/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(async () => {
  await server.close()
})

describe.each<Era>(['legacy', 'modern'])('real MCP client, %s era', (era) => {
  it('lists tools and reads a workspace file with an admin key', async () => {
    const client = await connect(server.url, era, { authorization: `Bearer ${server.keys.admin}` })
    const { tools } = await client.listTools()
    expect(tools.map((t) => t.name)).toEqual(['delete_records', 'get_secret', 'list_files', 'query', 'read_file', 'run_query', 'store_secret', 'write_file'])
    const result = await client.callTool({ name: 'read_file', arguments: { path: 'notes/todo.txt' } })
    expect(result.isError).not.toBe(true)
    expect(JSON.stringify(result.content)).toContain('try read_file')
    await client.close()
  })
})
