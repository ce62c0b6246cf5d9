import { mkdtempSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ConfigError, validateConfig } from '../../src/config/load.js'
import type { BastionConfigInput } from '../../src/config/schema.js'
import { createBastion } from '../../src/index.js'
import { addressKey, RatePlan } from '../../src/limits/rate-plan.js'

async function bastionError(limits: BastionConfigInput['limits'], isolated = false): Promise<string> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-limits-')))
  try {
    const b = await createBastion({ baseDir: dir, logger: pino({ level: 'silent' }), announce: false, config: { limits } as BastionConfigInput, env: {} })
    if (isolated) b.tool({ name: 'boxed', description: 'x', input: z.object({}), isolate: { module: 'x.mjs' } })
    b.tool({ name: 'inline', description: 'x', input: z.object({}), run: async () => ({ content: [] }) })
    b.policy()
    await b.close()
  } catch (error) {
    if (error instanceof ConfigError) return error.message
    throw error
  }
  throw new Error('expected a ConfigError')
}

describe('limits configuration', () => {
  it.each([
    { name: 'a rate that is not a rate', limits: { principal: { rate: '30 per minute' } }, says: /limits\.principal\.rate: a rate such as "30\/min"/ },
    { name: 'a zero burst', limits: { global: { rate: '1/s', burst: 0 } }, says: /limits\.global\.burst/ },
    { name: 'redis backend without redis', limits: { backend: 'redis' }, says: /limits\.redis: required when backend is redis/ },
    { name: 'a tool tier that does not exist', limits: { tools: { inline: { tier: 'db' } } }, says: /limits\.tools\.inline\.tier: tier "db" is not defined/ },
    { name: 'an unknown key', limits: { perPrincipal: 5 }, says: /unknown key "perPrincipal"/ },
    { name: 'a redis url inline', limits: { backend: 'redis', redis: { url: 'redis://x' } }, says: /limits\.redis\.url/ },
  ])('$name is an error naming the key', ({ limits, says }) => {
    expect(() => validateConfig({ limits }, 'test', '/')).toThrow(says)
  })

  it('a limit for a role that does not exist', async () => {
    expect(await bastionError({ roles: { ghost: { rate: '1/s' } } })).toMatch(/limits\.roles\.ghost: role "ghost" is not defined under roles/)
  })

  it('a cost no bucket can ever hold', async () => {
    expect(await bastionError({ principal: { rate: '5/min' }, tools: { inline: { cost: 6 } } })).toMatch(/limits\.tools\.inline\.cost: cost 6 exceeds the capacity 5/)
  })

  it('limits for a tool that is not registered', async () => {
    expect(await bastionError({ tools: { nope: { cost: 1 } } })).toMatch(/limits\.tools\.nope: no tool named "nope" is registered/)
  })

  it('memory and CPU caps on an in-process tool (they could not be enforced)', async () => {
    expect(await bastionError({ tools: { inline: { memoryMb: 64 } } })).toMatch(/limits\.tools\.inline: memoryMb and cpuMs apply only to isolated tools/)
  })

  it('a redis url from a missing environment variable names the variable, not a value', async () => {
    expect(await bastionError({ backend: 'redis', redis: { url: { env: 'NOT_SET_ANYWHERE' } } })).toMatch(/limits\.redis\.url: environment variable NOT_SET_ANYWHERE is not set/)
  })
})

describe('rate plan', () => {
  const plan = (limits: BastionConfigInput['limits']) => new RatePlan(validateConfig({ limits }, 'test', '/').config.limits)

  it('the most generous role sets the principal bucket; tenant, global, tier and tool buckets are added', () => {
    const p = plan({
      principal: { rate: '10/min' },
      roles: { viewer: { rate: '30/min' }, admin: { rate: '1000/min' } },
      tenant: { rate: '5000/min' },
      global: { rate: '100/s' },
      tiers: { db: { rate: '30/min' }, shared: { rate: '60/min', scope: 'global' } },
      tools: { query: { tier: 'db', cost: 2, rate: { rate: '5/min' } }, report: { tier: 'shared' } },
    })
    const who = { id: 'key:1', kind: 'api-key' as const, name: 'n', roles: ['viewer', 'admin'], tenant: 'acme' }
    expect(p.forRequest(who, 'query').map((c) => [c.bucket, c.key, c.capacity, c.cost])).toStrictEqual([
      ['role:admin', 'p|key:1', 1000, 2],
      ['tenant', 't|acme', 5000, 2],
      ['global', 'g|', 100, 2],
      ['tier:db', 'tier|db|key:1', 30, 2],
      ['tool:query', 'tool|query|key:1', 5, 2],
    ])
    expect(p.forRequest(who, 'report').map((c) => c.key)).toContain('tier|shared')
    // Not a tool call: the request buckets only, cost 1.
    expect(p.forRequest({ ...who, roles: ['nobody'], tenant: undefined } as never, undefined).map((c) => [c.bucket, c.cost])).toStrictEqual([
      ['principal', 1],
      ['global', 1],
    ])
  })

  it('tool limits: config over the tool over the default', () => {
    const p = plan({ timeoutMs: 30_000, tools: { a: { timeoutMs: 5 } } })
    expect(p.toolLimits('a', { timeoutMs: 99 }).timeoutMs).toBe(5)
    expect(p.toolLimits('b', { timeoutMs: 99 }).timeoutMs).toBe(99)
    expect(p.toolLimits('c').timeoutMs).toBe(30_000)
    expect(p.toolLimits('__proto__').timeoutMs).toBe(30_000)
  })

  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    [undefined, 'unknown'],
  ])('address key of %s is %s (IPv6 by /64)', (address, key) => {
    expect(addressKey(address)).toBe(key)
  })
})
