import fc from 'fast-check'
import { expect } from 'vitest'
import { type SecurityErrorCode, WIRE } from '../../src/errors.js'
import { header, messagesOf, type RawResponse } from './raw-http.js'

/** Text that must never reach a client: library and parser messages, stacks, SDK wording. Case-sensitive (bastion's own texts are lowercase). */
export const LIBRARY_TEXT =
  /\bat .+:\d+:\d+|node_modules|ZodError|Invalid input|invalid_type|expected string|received (?:number|object|undefined)|Method not found|Bad Request:|Invalid Request|Invalid params|Invalid arguments|Server already initialized|Internal server error|MCP-Protocol-Version header|Payload Too Large|HPE_[A-Z_]+|SyntaxError|TypeError|Unexpected token|JSON at position/

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Every part of a response a client reads, except the status line (whose reason phrase is Node's). */
export function wireText(res: RawResponse): string {
  return `${[...res.headers].map(([n, v]) => `${n}: ${v.join(', ')}`).join('\n')}\n${res.body}`
}

export interface Refusal {
  readonly requestId: string
  readonly code: SecurityErrorCode
  readonly error: { code: number; message: string; data: Record<string, unknown> }
}

/**
 * The one JSON-RPC error of a refused response, checked against its WIRE row: status (the row's, or
 * 200 for an error the SDK answered in-band), JSON-RPC code, the table's text, `data.requestId`
 * equal to the `x-request-id` header, no library text.
 */
export function refusalOf(res: RawResponse, allowed: readonly SecurityErrorCode[], secrets: readonly string[] = []): Refusal {
  expect(res.status).toBeLessThan(500)
  const requestId = header(res, 'x-request-id')
  expect(requestId).toBeDefined()
  const errors = messagesOf(res).filter((m) => m.error !== undefined)
  expect(errors).toHaveLength(1)
  const error = errors[0]?.error as Refusal['error']
  const code = error.data.code as SecurityErrorCode
  expect(allowed).toContain(code)
  const row = WIRE[code]
  expect([row.carrier === 'http' ? row.http : 200, 200]).toContain(res.status)
  expect(error.code).toBe(row.rpc)
  expect(error.message === row.text || error.message.startsWith(`${row.text}: `)).toBe(true)
  expect(error.data.requestId).toBe(requestId)
  const text = wireText(res)
  expect(text).not.toMatch(LIBRARY_TEXT)
  for (const s of secrets) expect(text).not.toContain(s)
  return { requestId: requestId ?? '', code, error }
}

/** Exactly one audit line for the request id: the refusal's reason and event, decision deny. */
export function expectOneDenyLine(lines: readonly Record<string, unknown>[], refusal: Refusal): Record<string, unknown> {
  const mine = lines.filter((l) => l.requestId === refusal.requestId)
  expect(mine).toHaveLength(1)
  expect(mine[0]).toMatchObject({ requestId: refusal.requestId, reason: refusal.code, event: WIRE[refusal.code].event, decision: 'deny' })
  return mine[0] ?? {}
}

/** Run `fn` over `items`, `width` at a time. */
export async function pool<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: width }, worker))
}

/**
 * A few hundred ordinary and odd strings for header fuzzing: numbers, prices, emails, URLs, every
 * ASCII punctuation mark, unicode, credentials' shapes, protocol words, long strings, and a seeded
 * sample of arbitrary strings. No CR LF pair: a raw line break ends the header (that is request
 * splitting, covered by the mutation property), so lone CR and LF only.
 */
export function commonStrings(): string[] {
  const numbers = ['0', '-1', '1', '-0.0', '3.14', '1e309', '0x10', '00000', 'NaN', 'Infinity', '9007199254740993', '1_000', '99999', '65536', '2147483648']
  const prices = ['$1.00', '€5,00', '¥100', '£0.99', '1,000.00 USD', '-$0.01', '0.00']
  const emails = ['a@b.c', 'user+tag@example.com', '"quoted"@example.com', 'root@localhost', '@', 'a@b', 'x@[127.0.0.1]']
  const urls = [
    'http://evil',
    'https://127.0.0.1:1/mcp',
    'file:///etc/passwd',
    'javascript:alert(1)',
    '//evil',
    'http://user:pass@evil/',
    'data:text/html,<script>',
    'http://[::1]:80/',
    'null',
  ]
  const punctuation = [...'!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~']
  const unicode = ['é', 'ā', '中文', '😀', '\u202e', '\u200b', '\ufeff', 'Ω', 'ﬁ', 'İ', 'ß', '\u0085', '\u00a0', '\u2028', '\ud800', 'é'.repeat(300)]
  const controls = ['', ' ', '\t', 'a\tb', ' lead', 'trail ', '\u0000', '\u0001', '\u007f', 'a\rb', 'a\nb', '\u001b[31m']
  const injection = [
    "' OR 1=1 --",
    '<script>alert(1)</script>',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Log4Shell payload, literally
    '${jndi:ldap://x}',
    '../../etc/passwd',
    '%00',
    '%0d%0a',
    '{{7*7}}',
    '\\x00',
    '[]',
    '{}',
    '{"a":1}',
    'true',
    'undefined',
  ]
  const protocol = [
    'Bearer',
    'Bearer ',
    'Bearer x',
    'bearer x',
    'Basic YTpi',
    `bst_0123456789abcdef_${'A'.repeat(43)}`,
    'eyJhbGciOiJub25lIn0.e30.',
    '2025-11-25',
    '2026-07-28',
    '2024-11-05',
    'tools/call',
    'tools/list',
    'initialize',
    'application/json',
    'text/event-stream',
    '*/*',
    'application/json; charset=utf-8',
    'application/json, text/event-stream',
    'localhost',
    '127.0.0.1',
    '[::1]',
    'localhost:1',
    'http://localhost',
  ]
  const long = ['a'.repeat(128), 'a'.repeat(129), 'x'.repeat(1000), 'y'.repeat(8000), 'z'.repeat(20_000)]
  const sample = fc.sample(
    fc.string({
      unit: fc.oneof(
        fc.constantFrom('\t', '\u0000', '\u007f', ' ', 'é', '😀'),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
        fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
      ),
      maxLength: 24,
    }),
    {
      seed: 20260728,
      numRuns: 80,
    },
  )
  const all = [...numbers, ...prices, ...emails, ...urls, ...punctuation, ...unicode, ...controls, ...injection, ...protocol, ...long, ...sample]
  return [...new Set(all.filter((s) => !s.includes('\r\n')))]
}
