import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { codeFlow, refresh } from '../helpers/oauth-flow.js'
import { callModern, startServer, type TestServer } from '../helpers/server.js'
import { cli } from './run.js'

let server: TestServer
let origin: string

beforeAll(async () => {
  server = await startServer()
  origin = new URL(server.url).origin
})

afterAll(async () => {
  await server.close()
})

interface GrantRow {
  id: string
  user: string
  via: string
  client: string
  clientName: string
  roles: string[]
}

const grants = (): GrantRow[] => {
  const r = cli(server.dir, ['grants', 'list', '--json'])
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as GrantRow[]
}

describe('mcp-bastion grants list | revoke', () => {
  it('lists the grant a sign-in made; revoking it refuses its access token at once and its refresh token', async () => {
    const flow = await codeFlow(origin, server.keys.reader)
    expect(flow.status).toBe(200)
    const access = flow.tokens.access_token ?? ''
    expect((await callModern(server.url, access, 'read_file', { path: 'notes/none.txt' })).res.status).toBe(200)
    const mine = grants().filter((g) => g.client === flow.clientId)
    expect(mine).toHaveLength(1)
    const [grant] = mine
    expect(grant).toMatchObject({ via: 'api-key', clientName: 'Test client', roles: ['reader'] })
    expect(grant?.user).toBe(server.keys.reader.slice(4, 20))

    const since = server.mark()
    const revoked = cli(server.dir, ['grants', 'revoke', grant?.id ?? ''])
    expect(revoked.status, revoked.stderr).toBe(0)
    expect(revoked.stdout).toContain('1 refresh token family revoked')
    expect(grants().filter((g) => g.client === flow.clientId)).toStrictEqual([])
    expect(since().find((l) => l.event === 'grant.revoked')).toMatchObject({ client: flow.clientId, grant: grant?.id, transport: 'cli' })

    // The access token was cached as verified: its grant is checked on every use all the same.
    const after = await callModern(server.url, access, 'read_file', { path: 'notes/none.txt' })
    expect(after.res.status).toBe(401)
    expect(JSON.stringify(after.body)).not.toContain(grant?.id ?? '-')
    const refused = server.mark()
    expect((await refresh(origin, flow.clientId, flow.tokens.refresh_token ?? '')).body).toStrictEqual({ error: 'invalid_grant' })
    // Its family was revoked with the grant: the store no longer knows the token.
    expect(refused().find((l) => l.event === 'token.denied')).toMatchObject({ decision: 'deny', oauthError: 'invalid_grant' })
  })

  it('revoking the API key the user signed in with ends the tokens of every grant it made', async () => {
    const key = server.bastion.keys.create({ name: 'temp', roles: ['reader'], expiresAt: null })
    const flow = await codeFlow(origin, key.key)
    expect(flow.status).toBe(200)
    const access = flow.tokens.access_token ?? ''
    expect((await callModern(server.url, access, 'read_file', { path: 'notes/none.txt' })).res.status).toBe(200)
    expect(cli(server.dir, ['keys', 'revoke', key.stored.id]).status).toBe(0)
    const after = await callModern(server.url, access, 'read_file', { path: 'notes/none.txt' })
    expect(after.res.status).toBe(401)
    expect((await refresh(origin, flow.clientId, flow.tokens.refresh_token ?? '')).status).toBe(400)
  })

  it('an unknown or malformed grant id is a usage error naming it, and changes nothing', () => {
    const before = grants()
    const unknown = cli(server.dir, ['grants', 'revoke', 'a'.repeat(32)])
    expect(unknown.status).toBe(2)
    expect(unknown.stderr).toContain(`no grant with id ${'a'.repeat(32)}`)
    const malformed = cli(server.dir, ['grants', 'revoke', '../etc'])
    expect(malformed.status).toBe(2)
    expect(malformed.stderr).toContain('is not a grant id')
    expect(grants()).toStrictEqual(before)
  })
})
