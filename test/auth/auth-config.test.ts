import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/config/load.js'
import { type Bastion, type BastionConfigInput, createBastion } from '../../src/index.js'
import { callModern } from '../helpers/server.js'

async function configError(auth: BastionConfigInput['auth'], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-auth-')))
  try {
    const b = await createBastion({ baseDir: dir, logger: pino({ level: 'silent' }), announce: false, config: { auth }, env })
    await b.close()
  } catch (error) {
    if (error instanceof ConfigError) return error.message
    throw error
  }
  throw new Error('expected a ConfigError')
}

describe('token configuration errors', () => {
  it('an HS256 secret shorter than 32 bytes is a start-up error', async () => {
    expect(await configError({ issuers: [{ issuer: 'https://idp.test', algorithms: ['HS256'], secret: { env: 'S' } }] }, { S: 'short-secret' })).toMatch(
      /auth\.issuers\.0\.secret: an HS256 secret must be at least 32 bytes \(got 12\)/,
    )
  })
  it.each([
    { secret: 'your-256-bit-secret'.repeat(2), says: /a published example secret/ },
    { secret: 'a-string-secret-at-least-256-bits-long', says: /a published example secret/ },
    { secret: 'x'.repeat(40), says: /about \d+ bits \(a 1-character unit repeated\)/ },
    { secret: 'ThisIsMySuperSecretKeyForJWTSigning123456', says: /about \d+ bits \(9 word\(s\) and 6 digit\(s\)\)/ },
    { secret: 'abcdefghijklmnopqrstuvwxyzabcdefgh', says: /a run of neighbouring characters/ },
  ])('a guessable HS256 secret ($secret) is refused at start-up, naming why and never the secret', async ({ secret, says }) => {
    const issuers = [{ issuer: 'https://idp.test', algorithms: ['HS256' as const], secret: { env: 'S' } }]
    const message = await configError({ issuers }, { S: secret })
    expect(message).toMatch(says)
    expect(message).toMatch(/auth\.issuers\.0\.secret: refused, .*openssl rand -base64 32.*auth\.issuers\.0\.dangerouslyAllowWeakSecret: true/)
    expect(message).not.toContain(secret)
  })
  it('dangerouslyAllowWeakSecret accepts a guessable secret, by name', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-weak-')))
    const b = await createBastion({
      baseDir: dir,
      logger: pino({ level: 'silent' }),
      announce: false,
      config: { auth: { issuers: [{ issuer: 'https://idp.test', algorithms: ['HS256'], secret: { env: 'S' }, dangerouslyAllowWeakSecret: true }] } },
      env: { S: 'x'.repeat(40) },
    })
    await b.close()
  })
  it.each([
    {
      name: 'a plain-HTTP JWKS on another host',
      auth: { issuers: [{ issuer: 'x', algorithms: ['ES256' as const], jwksUri: 'http://idp.example.com/jwks' }] },
      says: /auth\.issuers\.0\.jwksUri: must be https/,
    },
    {
      name: 'two key sources',
      auth: { issuers: [{ issuer: 'x', algorithms: ['ES256' as const], jwksUri: 'https://a/jwks', jwksFile: 'k.json' }] },
      says: /give exactly one of jwksUri, jwksFile, keys, secret/,
    },
    {
      name: 'a secret for RS256',
      auth: { issuers: [{ issuer: 'x', algorithms: ['RS256' as const, 'HS256' as const], secret: { env: 'S' } }] },
      says: /a shared secret allows HS256 only/,
    },
    {
      name: 'a private JWK',
      auth: { issuers: [{ issuer: 'x', algorithms: ['ES256' as const], keys: [{ jwk: { kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'secret' } }] }] },
      says: /a private or symmetric JWK/,
    },
    {
      name: 'plain-HTTP introspection',
      auth: { introspection: [{ endpoint: 'http://idp.example.com/introspect', clientId: 'c', clientSecret: { env: 'S' } }] },
      says: /introspection\.0\.endpoint: must be https/,
    },
    { name: 'redis token store without a URL', auth: { tokenService: { enabled: true, store: 'redis' as const } }, says: /store: redis needs redis\.url/ },
  ])('$name', async ({ auth, says }) => {
    expect(await configError(auth, { S: 'x'.repeat(40) })).toMatch(says)
  })
})

describe('token service replicas sharing Redis', () => {
  const bastions: Bastion[] = []
  afterAll(async () => {
    for (const b of bastions) await b.close()
  })

  it('a refresh token rotated on one replica and reused on the other (its successor used) revokes the family everywhere', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-replicas-')))
    const prefix = `bastion-test:${Date.now()}:`
    const config: BastionConfigInput = {
      auth: {
        resource: 'https://mcp.test/mcp',
        reloadIntervalMs: 0,
        tokenService: { enabled: true, refreshTokenSeconds: 300, store: 'redis', redis: { url: { env: 'TOKENS_REDIS' }, keyPrefix: prefix } },
      },
      limits: { anonymous: { rate: '100000/min' } },
    }
    const env = { TOKENS_REDIS: 'redis://127.0.0.1:6379' }
    // Replicas share the state directory's signing keys; refresh state lives in Redis.
    for (let i = 0; i < 2; i++) bastions.push(await createBastion({ baseDir: dir, logger: pino({ level: 'silent' }), announce: false, config, env }))
    const [a, b] = bastions
    if (a === undefined || b === undefined) throw new Error('two replicas expected')
    const urls = [await a.listen({ host: '127.0.0.1', port: 0 }), await b.listen({ host: '127.0.0.1', port: 0 })].map((r) => new URL(r.url).origin)
    const key = a.keys.create({ name: 'svc', roles: ['admin'], expiresAt: null }).key
    const basic = `Basic ${Buffer.from(`${key.slice(4, 20)}:${key}`).toString('base64')}`
    const token = async (base: string, body: string) => {
      const res = await fetch(`${base}/oauth/token`, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body })
      return { status: res.status, json: (await res.json()) as Record<string, string> }
    }
    const issued = await token(urls[0] ?? '', 'grant_type=client_credentials')
    expect(issued.status).toBe(200)
    const rotated = await token(urls[1] ?? '', `grant_type=refresh_token&refresh_token=${issued.json.refresh_token}`)
    expect(rotated.status).toBe(200)
    // The access token from replica B works on replica A.
    expect((await callModern(`${urls[0]}/mcp`, rotated.json.access_token ?? '', 'read_file', { path: 'README.md' })).res.status).toBe(200)
    const again = await token(urls[0] ?? '', `grant_type=refresh_token&refresh_token=${rotated.json.refresh_token}`)
    expect(again.status).toBe(200)
    // The first token once more, on A, its successor used: a reuse (a retry would find it unused).
    expect((await token(urls[0] ?? '', `grant_type=refresh_token&refresh_token=${issued.json.refresh_token}`)).status).toBe(400)
    expect((await token(urls[1] ?? '', `grant_type=refresh_token&refresh_token=${again.json.refresh_token}`)).status).toBe(400)
  })
})

describe('an embedded edge that never listened and has no auth.resource', () => {
  it('still answers 401 with a challenge (no metadata URL to give) and refuses to publish empty metadata', async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-embedded-')))
    const b = await createBastion({
      baseDir: dir,
      logger: pino({ level: 'silent' }),
      announce: false,
      config: { auth: { issuers: [{ issuer: 'https://idp.test', algorithms: ['HS256'], secret: { env: 'S' } }] } },
      env: { S: 'Qx7vR2mK9pL4wZ8nT3bF6hJ1cY5dG0sA' },
    })
    try {
      const edge = b.edge()
      const res = await edge.fetch(
        new Request('http://127.0.0.1/mcp', {
          method: 'POST',
          headers: { host: '127.0.0.1', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: '{}',
        }),
        { remoteAddress: '127.0.0.1', secure: false },
      )
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="mcp-bastion"')
      const prm = await edge.fetch(new Request('http://127.0.0.1/.well-known/oauth-protected-resource', { headers: { host: '127.0.0.1' } }), {
        remoteAddress: '127.0.0.1',
        secure: false,
      })
      expect(prm.status).toBe(500)
    } finally {
      await b.close()
    }
  })
})
