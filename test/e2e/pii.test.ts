import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { callModern, startServer, type TestServer } from '../helpers/server.js'

const ROW = 'Jane Roe <jane.roe@shop.example>, +1 (212) 555-0147, card 4111 1111 1111 1111, order ORD-2026-000123'

describe('personal data in tool results', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer(
      {
        roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read', 'customers'] }, nobody: { permissions: [] } },
        tools: { customers: { permissions: ['customers'] }, customers_strict: { permissions: ['customers'] } },
        pii: { tools: { customers_strict: 'block' } },
        policy: { rules: [{ id: 'admins-see-raw', effect: 'allow', subjects: { roles: ['admin'] }, targets: { tools: ['customers'] }, output: { pii: 'allow' } }] },
      },
      (b) => {
        const run = async () => ({ content: [{ type: 'text' as const, text: ROW }], structuredContent: { rows: [{ email: 'jane.roe@shop.example', ip: '203.0.113.7' }] } })
        b.tool({ name: 'customers', description: 'customer rows', input: z.object({}), run })
        b.tool({ name: 'customers_strict', description: 'customer rows, never with personal data', input: z.object({}), run })
      },
    )
  })
  afterAll(async () => {
    await server.close()
  })

  it('are masked by default, and the audit line counts what was masked', async () => {
    const since = server.mark()
    const { body } = await callModern(server.url, server.keys.reader, 'customers', {})
    const result = body.result as { content: { text: string }[]; structuredContent: unknown }
    expect(result.content[0]?.text).toBe('Jane Roe <[EMAIL]>, [PHONE], card [CARD], order ORD-2026-000123')
    expect(result.structuredContent).toStrictEqual({ rows: [{ email: '[EMAIL]', ip: '[IP]' }] })
    expect(since().at(-1)).toMatchObject({ tool: 'customers', pii: 'mask', piiFound: 'email:2,phone:1,card:1,ip:1' })
    expect(JSON.stringify(since())).not.toContain('jane.roe')
  })

  it('pass unmasked for a role whose allowing rule says output.pii: allow', async () => {
    const { body } = await callModern(server.url, server.keys.admin, 'customers', {})
    expect((body.result as { content: { text: string }[] }).content[0]?.text).toBe(ROW)
  })

  it('are refused whole for a tool in block mode', async () => {
    const since = server.mark()
    const { body } = await callModern(server.url, server.keys.reader, 'customers_strict', {})
    const result = body.result as { isError: boolean; content: { text: string }[]; _meta: Record<string, { code: string }> }
    expect(result.isError).toBe(true)
    expect(result._meta['bastion/error']?.code).toBe('ERR_PII_BLOCKED')
    expect(JSON.stringify(body)).not.toContain('jane.roe')
    expect(since().at(-1)).toMatchObject({ reason: 'ERR_PII_BLOCKED', pii: 'block' })
  })
})
