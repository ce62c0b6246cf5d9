import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { isSecurityErrorCode } from '../../src/errors.js'
import { LIBRARY_TEXT } from '../helpers/edge-cases.js'
import { describeMutations, mutate, mutations } from '../helpers/mutations.js'
import { AuditTail, header, messagesOf, type RawHeader, type RawResponse, rawRequest, requestBytes } from '../helpers/raw-http.js'
import { MODERN_META, startServer, type TestServer } from '../helpers/server.js'

let server: TestServer
let tail: AuditTail
let port = 0
let session = ''

beforeAll(async () => {
  server = await startServer(
    {
      server: { maxBodyBytes: 256 * 1024 },
      auth: { bruteForce: { slowAfter: 1000, delayMs: 0, blockAfter: 10_000 } },
      limits: { anonymous: { rate: '1000000/min' }, principal: { rate: '1000000/min' } },
    },
    (b) => {
      b.tool({
        name: 'echo',
        description: 'Echo a text',
        input: z.object({ text: z.string() }),
        run: async ({ text }) => ({ content: [{ type: 'text', text: text.slice(0, 64) }] }),
      })
    },
  )
  port = Number(new URL(server.url).port)
  tail = new AuditTail(server.auditPath)
  const init = await rawRequest(
    port,
    requestBytes({
      headers: [['host', `127.0.0.1:${port}`], ...BASE, ['authorization', `Bearer ${server.keys.admin}`]],
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    }),
  )
  session = header(init, 'mcp-session-id') ?? ''
  expect(session).not.toBe('')
})
afterAll(async () => {
  await server?.close()
})

const BASE: RawHeader[] = [
  ['content-type', 'application/json'],
  ['accept', 'application/json, text/event-stream'],
]
const common = (): RawHeader[] => [['host', `127.0.0.1:${port}`], ...BASE, ['authorization', `Bearer ${server.keys.admin}`]]

/** The two valid requests every run starts from. */
const VALID = {
  modern: () => ({
    headers: [...common(), ['mcp-protocol-version', '2026-07-28'], ['mcp-method', 'tools/call'], ['mcp-name', 'echo']] as RawHeader[],
    message: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' }, _meta: MODERN_META } },
  }),
  legacy: () => ({
    headers: [...common(), ['mcp-session-id', session], ['mcp-protocol-version', '2025-11-25']] as RawHeader[],
    message: { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' } } },
  }),
}

/**
 * What every answer must be, whatever was sent: not 5xx; an `x-request-id`; a JSON-RPC error with a
 * bastion `data.code` and that request id (JSON body or SSE event), a result, or 202 for a
 * notification; no library text in an error; exactly one audit line for that id.
 */
function checkAnswer(res: RawResponse, lines: readonly Record<string, unknown>[]): void {
  expect(res.status, res.body.slice(0, 300)).toBeLessThan(500)
  const requestId = header(res, 'x-request-id')
  expect(requestId, `no x-request-id on ${res.status} ${JSON.stringify(res.body.slice(0, 200))}`).toBeDefined()
  expect(
    lines.filter((l) => l.requestId === requestId),
    JSON.stringify({ status: res.status, body: res.body.slice(0, 300), lines }),
  ).toHaveLength(1)
  if (res.status === 202) {
    expect(res.body).toBe('')
    return
  }
  const messages = messagesOf(res)
  const answers = messages.filter((m) => m.error !== undefined || m.result !== undefined)
  expect(answers.length, res.body.slice(0, 300)).toBeGreaterThan(0)
  for (const m of answers) {
    if (m.error === undefined) continue
    const error = m.error as { message: string; data?: { code?: unknown; requestId?: unknown } }
    expect(isSecurityErrorCode(error.data?.code), JSON.stringify(error)).toBe(true)
    expect(error.data?.requestId).toBe(requestId)
    expect(JSON.stringify(error)).not.toMatch(LIBRARY_TEXT)
  }
  for (const m of answers) {
    const result = m.result as { isError?: boolean; _meta?: Record<string, { code?: unknown }> } | undefined
    if (result?.isError === true) expect(isSecurityErrorCode(result._meta?.['bastion/error']?.code)).toBe(true)
  }
}

describe('random mutations of valid requests: never 5xx, always a code, always one audit line', () => {
  it.each(['modern', 'legacy'] as const)('%s tools/call', async (era) => {
    // The unmutated request is served: the property starts from a request that works.
    const valid = VALID[era]()
    const ok = await rawRequest(port, requestBytes({ headers: valid.headers, body: JSON.stringify(valid.message) }))
    expect(JSON.stringify(messagesOf(ok))).toContain('"text":"hi"')
    await fc.assert(
      fc.asyncProperty(mutations, async (m) => {
        const { headers, message } = VALID[era]()
        const since = tail.mark()
        let res: RawResponse
        try {
          res = await rawRequest(port, requestBytes(mutate(headers, message, m)))
        } catch (error) {
          throw new Error(`no answer (${String(error)}) to ${describeMutations(m)}`)
        }
        checkAnswer(res, since())
      }),
      { numRuns: 150 },
    )
  })
})
