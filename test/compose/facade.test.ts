import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { type Bastion, type BastionConfigInput, createBastion } from '../../src/index.js'
import { MODERN_META, modernHeaders, post, rpcBody } from '../helpers/server.js'

const opened: Bastion[] = []
afterEach(async () => {
  for (const b of opened.splice(0)) await b.close()
})

async function bastion(config: BastionConfigInput = {}, env: NodeJS.ProcessEnv = {}): Promise<Bastion> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-facade-')))
  const b = await createBastion({ baseDir: dir, logger: pino({ level: 'silent' }), announce: false, config: { alerts: { rules: [] }, ...config }, env })
  opened.push(b)
  return b
}

const echo = (name: string) => ({ name, description: 'x', input: z.object({}), run: async () => ({ content: [] }) })
const TOOLS_LIST = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: MODERN_META } }
const HS256 = { issuers: [{ issuer: 'https://idp.test', algorithms: ['HS256' as const], secret: { env: 'S' } }] }

describe('registration ends once', () => {
  it('registering after listen() or serverDeps() is refused with a clear error; what was built is read, not rebuilt', async () => {
    const b = await bastion()
    b.tool(echo('before'))
    const deps = b.serverDeps()
    expect(() => b.tool(echo('after'))).toThrow('register tools, resources and prompts before listen() or serveStdio()')
    expect(() => b.prompt({ name: 'p', get: async () => ({ messages: [] }) })).toThrow(/before listen/)
    expect(b.serverDeps()).toBe(deps)
    expect(b.policySource().current()).toBe(b.policy())
    await b.listen({ host: '127.0.0.1', port: 0 })
    expect(b.edge()).toBe(b.edge())
    expect(b.registry.get('before')).toBeDefined()
    expect(b.registry.get('after')).toBeUndefined()
  })

  it('a config naming an unregistered tool fails when registration ends, with the key path', async () => {
    const b = await bastion({ tools: { later: { permissions: ['x'] } } })
    expect(() => b.policy()).toThrow(/tools\.later: no tool named "later" is registered/)
  })

  it('a bastion serves one edge: a second listen() and listen() after an embedded edge() are refused', async () => {
    const a = await bastion()
    const running = await a.listen({ host: '127.0.0.1', port: 0 })
    await expect(a.listen({ host: '127.0.0.1', port: 0 })).rejects.toThrow(`already listening on ${running.url}`)
    const b = await bastion()
    b.edge()
    await expect(b.listen({ host: '127.0.0.1', port: 0 })).rejects.toThrow(/built for embedding/)
  })

  it('a failed bind (port taken) may be retried', async () => {
    const a = await bastion()
    const taken = await a.listen({ host: '127.0.0.1', port: 0 })
    const b = await bastion()
    await expect(b.listen({ host: '127.0.0.1', port: taken.port })).rejects.toThrow(/EADDRINUSE/)
    expect((await b.listen({ host: '127.0.0.1', port: 0 })).url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/)
  })
})

describe('the address bound decides the URL, the Host allowlist and the resource URI', () => {
  it('listen({ host }) other than server.host: the returned URL is answered (401, not 403)', async () => {
    const b = await bastion({ server: { host: '127.0.0.1' } })
    const running = await b.listen({ host: '127.0.0.2', port: 0 })
    expect(running.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+\/mcp$/)
    const res = await post(running.url, TOOLS_LIST)
    expect(res.status).toBe(401)
    expect(((await rpcBody(res)).error as { data: { code: string } }).data.code).toBe('ERR_AUTH_MISSING')
    const key = b.keys.create({ name: 'a', roles: ['admin'], expiresAt: null }).key
    expect((await post(running.url, TOOLS_LIST, { ...modernHeaders('tools/list'), authorization: `Bearer ${key}` })).status).toBe(200)
  })

  it('without auth.resource, the resource URI is the URL listened on (metadata, challenge)', async () => {
    const b = await bastion({ server: { host: '127.0.0.1' }, auth: HS256 }, { S: 'Qx7vR2mK9pL4wZ8nT3bF6hJ1cY5dG0sA' })
    const running = await b.listen({ host: '127.0.0.2', port: 0 })
    const origin = new URL(running.url).origin
    const prm = await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`)
    expect(prm.status).toBe(200)
    expect(((await prm.json()) as { resource: string }).resource).toBe(running.url)
    const challenge = (await post(running.url, TOOLS_LIST)).headers.get('www-authenticate')
    expect(challenge).toContain(`resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`)
  })

  it('auth.resource, when set, is the resource whatever the address', async () => {
    const b = await bastion({ auth: { ...HS256, resource: 'https://mcp.example.com/mcp' } }, { S: 'Qx7vR2mK9pL4wZ8nT3bF6hJ1cY5dG0sA' })
    const running = await b.listen({ host: '127.0.0.2', port: 0 })
    const prm = await fetch(`${new URL(running.url).origin}/.well-known/oauth-protected-resource/mcp`)
    expect(((await prm.json()) as { resource: string }).resource).toBe('https://mcp.example.com/mcp')
  })
})
