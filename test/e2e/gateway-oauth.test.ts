import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { type Bastion, createBastion, type RunningServer } from '../../src/index.js'
import { connect } from '../helpers/server.js'
import { auditLines } from '../helpers/upstreams.js'

/**
 * An HTTP upstream that demands OAuth: another bastion, whose token service grants
 * `client_credentials` (RFC 6749 §4.4). The gateway discovers its authorization server from the
 * 401 challenge (RFC 9728), obtains a token with its own client credentials and calls with it; the
 * upstream sees the gateway's service principal, never the caller's key.
 */

let innerDir: string
let outerDir: string
let inner: Bastion
let outer: Bastion
let innerAt: RunningServer
let outerAt: RunningServer
let callerKey = ''
let serviceKey = ''

const lines = auditLines

beforeAll(async () => {
  innerDir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-inner-')))
  outerDir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-outer-')))
  inner = await createBastion({
    baseDir: innerDir,
    announce: false,
    logger: pino({ level: 'silent' }),
    config: { roles: { service: { permissions: ['echo:use'] } }, alerts: { rules: [] }, auth: { reloadIntervalMs: 0 } },
  })
  inner.tool({
    name: 'echo',
    description: 'Echo, and say who called.',
    input: z.object({ text: z.string() }),
    permissions: ['echo:use'],
    run: async ({ text }, ctx) => ({ content: [{ type: 'text', text: `${text} from ${ctx.principal.id}` }] }),
  })
  innerAt = await inner.listen({ host: '127.0.0.1', port: 0 })
  serviceKey = inner.keys.create({ name: 'gateway', roles: ['service'], expiresAt: null }).key
  const serviceId = serviceKey.split('_')[1] as string
  process.env.GW_OAUTH_SECRET = serviceKey
  outer = await createBastion({
    baseDir: outerDir,
    announce: false,
    logger: pino({ level: 'silent' }),
    config: {
      upstreams: {
        inner: { url: innerAt.url, oauth: { issuer: new URL(innerAt.url).origin, clientId: serviceId, clientSecret: { env: 'GW_OAUTH_SECRET' } }, pin: 'off' },
        // The same upstream, but bastion was told another authorization server: its credentials go nowhere.
        elsewhere: {
          url: innerAt.url,
          oauth: { issuer: 'https://login.elsewhere.example', clientId: serviceId, clientSecret: { env: 'GW_OAUTH_SECRET' } },
          pin: 'off',
          startTimeoutMs: 3000,
        },
      },
      alerts: { rules: [] },
      auth: { reloadIntervalMs: 0 },
    },
  })
  outerAt = await outer.listen({ host: '127.0.0.1', port: 0 })
  callerKey = outer.keys.create({ name: 'caller', roles: ['admin'], expiresAt: null }).key
}, 60_000)

afterAll(async () => {
  await outer?.close()
  await inner?.close()
})

describe('gateway: an upstream that demands OAuth', () => {
  it("calls it with a client-credentials token of its own, never the caller's key", async () => {
    expect(outer.gateway?.report()[0]).toMatchObject({ name: 'inner', state: 'up', tools: ['inner__echo'] })
    // Refused before any credential was sent: the upstream advertises an authorization server bastion was not told of.
    expect(outer.gateway?.report()[1]).toMatchObject({ name: 'elsewhere', state: 'down', tools: [] })
    expect(lines(innerDir).filter((l) => l.event === 'token.issued' || l.event === 'oauth.token')).toHaveLength(1)
    const c = await connect(outerAt.url, 'modern', { authorization: `Bearer ${callerKey}` })
    try {
      const r = await c.callTool({ name: 'inner__echo', arguments: { text: 'hi' } })
      expect(r.isError).not.toBe(true)
      expect((r.content as { text: string }[])[0]?.text).toMatch(/^hi from \S+/)
    } finally {
      await c.close()
    }
    const seen = lines(innerDir)
    // The upstream issued the gateway a token and served its calls as the service principal.
    expect(seen.some((l) => l.event === 'token.issued' || l.event === 'oauth.token')).toBe(true)
    const call = seen.filter((l) => l.event === 'tool.call' && l.tool === 'echo').at(-1)
    expect(call).toMatchObject({ reason: 'OK', kind: 'jwt' })
    expect(JSON.stringify(seen)).not.toContain(callerKey.slice(21))
    expect(JSON.stringify(seen)).not.toContain(callerKey.split('_')[1] as string)
  })
})
