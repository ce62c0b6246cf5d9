import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { inputRequired } from '@modelcontextprotocol/server'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { type Bastion, createBastion, type RunningServer } from '../../src/index.js'
import { type Era, JSON_HEADERS, MODERN_META, modernHeaders, rpcBody, startServer, type TestServer } from '../helpers/server.js'
import { waitFor } from '../helpers/wait.js'

type Answer = 'accept' | 'decline' | 'cancel' | 'unchecked' | 'none'

/** The real MCP client; `answer` is what its user says to an elicitation, `none`: no elicitation support. */
async function client(url: string, key: string, era: Era, answer: Answer, asked: string[] = []): Promise<Client> {
  const c = new Client(
    { name: 'confirm-test', version: '1.0.0' },
    { capabilities: answer === 'none' ? {} : { elicitation: { form: {} } }, ...(era === 'modern' ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {}) },
  )
  if (answer !== 'none') {
    c.setRequestHandler('elicitation/create', async (request) => {
      asked.push(String((request.params as { message?: string }).message))
      if (answer === 'accept') return { action: 'accept', content: { confirm: true } }
      if (answer === 'unchecked') return { action: 'accept', content: { confirm: false } }
      return { action: answer }
    })
  }
  await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${key}` } } }))
  return c
}

function outcome(result: unknown): { code: string; text: string } {
  const r = result as { isError?: boolean; content: { text?: string }[]; _meta?: Record<string, { code: string }> }
  return { code: r.isError === true ? (r._meta?.['bastion/error']?.code ?? 'ERROR') : 'OK', text: r.content.map((c) => c.text ?? '').join('\n') }
}

/** A raw 2026-07-28 `tools/call` round: arguments, and optionally the previous round's state and the user's answer. */
async function round(server: TestServer, key: string, name: string, args: unknown, extra: Record<string, unknown> = {}, elicitation = true): Promise<Record<string, unknown>> {
  const meta = { ...MODERN_META, 'io.modelcontextprotocol/clientCapabilities': elicitation ? { elicitation: { form: {} } } : {} }
  const res = await fetch(server.url, {
    method: 'POST',
    headers: { ...JSON_HEADERS, ...modernHeaders('tools/call', name), authorization: `Bearer ${key}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name, arguments: args, ...extra, _meta: meta } }),
  })
  return rpcBody(res)
}
const ACCEPT = { confirm: { action: 'accept', content: { confirm: true } } }
const codeOf = (body: Record<string, unknown>): string => {
  const error = body.error as { data?: { code?: string } } | undefined
  if (error !== undefined) return error.data?.code ?? 'RPC'
  return outcome(body.result).code
}

describe('confirmed destructive operations', () => {
  let server: TestServer
  let admin2: string
  const exists = async (id: number): Promise<boolean> => {
    const body = await round(server, server.keys.admin, 'query', { table: 'orders', columns: ['id'], filters: [{ column: 'id', op: 'eq', value: id }] })
    return (JSON.parse(outcome(body.result).text) as { rows: unknown[] }).rows.length === 1
  }
  const del = (id: number) => ({ table: 'orders', filters: [{ column: 'id', op: 'eq', value: id }] })

  beforeAll(async () => {
    server = await startServer({ limits: { principal: { rate: '100000/s' } } })
    admin2 = server.bastion.keys.create({ name: 'admin2', roles: ['admin'], expiresAt: null }).key
  }, 60_000)
  afterAll(async () => {
    await server?.close()
  })

  describe.each(['legacy', 'modern'] as const)('the real MCP client (%s era)', (era) => {
    const base = era === 'legacy' ? 10 : 20

    it('a client that confirms: the dry run is shown, the row is deleted, and both rounds are audited', async () => {
      const asked: string[] = []
      const c = await client(server.url, server.keys.admin, era, 'accept', asked)
      const mark = server.mark()
      const result = await c.callTool({ name: 'delete_records', arguments: del(base) })
      await c.close()
      expect(outcome(result)).toStrictEqual({ code: 'OK', text: JSON.stringify({ table: 'orders', deleted: 1 }) })
      expect(asked).toStrictEqual([`Delete 1 row from orders where id eq ${base}? This cannot be undone.`])
      expect(await exists(base)).toBe(false)
      const lines = mark().filter((l) => l.tool === 'delete_records')
      expect(lines).toHaveLength(2)
      expect(lines[0]).toMatchObject({ decision: 'allow', confirm: 'requested', dryRun: { table: 'orders', rows: 1 } })
      expect(lines[1]).toMatchObject({ decision: 'allow', confirm: 'accepted', changed: { table: 'orders', deleted: 1, keys: [base] } })
    })

    it.each([
      ['declines', 'decline'],
      ['cancels', 'cancel'],
      ['accepts without ticking the box', 'unchecked'],
    ] as const)('a client whose user %s: nothing is deleted', async (_what, answer) => {
      const c = await client(server.url, server.keys.admin, era, answer)
      const mark = server.mark()
      const result = await c.callTool({ name: 'delete_records', arguments: del(base + 1) })
      await c.close()
      expect(outcome(result).code).toBe('ERR_DECLINED')
      expect(outcome(result).text).toMatch(/^not done: the user did not confirm \(request id /)
      expect(await exists(base + 1)).toBe(true)
      expect(mark().filter((l) => l.tool === 'delete_records')[1]).toMatchObject({ decision: 'deny', reason: 'ERR_DECLINED', confirm: 'declined' })
    })

    it('a client that cannot confirm (no elicitation capability) gets a clear refusal', async () => {
      const c = await client(server.url, server.keys.admin, era, 'none')
      const mark = server.mark()
      const result = await c.callTool({ name: 'delete_records', arguments: del(base + 2) })
      await c.close()
      expect(outcome(result).code).toBe('ERR_CONFIRMATION_REQUIRED')
      expect(outcome(result).text).toContain("this operation needs the user's confirmation, and this client cannot ask for it")
      expect(await exists(base + 2)).toBe(true)
      expect(mark()).toContainEqual(expect.objectContaining({ tool: 'delete_records', reason: 'ERR_CONFIRMATION_REQUIRED', confirm: 'unavailable' }))
    })

    it('write_file: creates after confirmation, refuses when declined, never writes outside the workspace', async () => {
      const name = `notes-${era}.txt`
      const yes = await client(server.url, server.keys.admin, era, 'accept')
      expect(outcome(await yes.callTool({ name: 'write_file', arguments: { path: name, content: 'hello\n' } }))).toMatchObject({ code: 'OK', text: `created ${name} (6 bytes)` })
      expect(readFileSync(join(server.dir, '.bastion', 'workspace', name), 'utf8')).toBe('hello\n')
      expect(outcome(await yes.callTool({ name: 'write_file', arguments: { path: '../escape.txt', content: 'x' } })).code).toBe('ERR_PATH_FORBIDDEN')
      await yes.close()
      const no = await client(server.url, server.keys.admin, era, 'decline')
      expect(outcome(await no.callTool({ name: 'write_file', arguments: { path: name, content: 'replaced\n' } })).code).toBe('ERR_DECLINED')
      await no.close()
      expect(readFileSync(join(server.dir, '.bastion', 'workspace', name), 'utf8')).toBe('hello\n')
    })
  })

  describe('the confirmation state (2026-07-28, raw rounds)', () => {
    async function firstRound(key: string, args: unknown, tool = 'delete_records'): Promise<string> {
      const body = await round(server, key, tool, args)
      const result = body.result as { resultType: string; requestState: string; inputRequests: Record<string, { method: string }> }
      expect(result.resultType).toBe('input_required')
      expect(result.inputRequests.confirm?.method).toBe('elicitation/create')
      expect(result.requestState.startsWith('bastion-confirm.bse1.')).toBe(true)
      return result.requestState
    }

    it('is single-use: a replayed state is refused, and the second deletion does not happen', async () => {
      const state = await firstRound(server.keys.admin, del(30))
      expect(codeOf(await round(server, server.keys.admin, 'delete_records', del(30), { requestState: state, inputResponses: ACCEPT }))).toBe('OK')
      const mark = server.mark()
      expect(codeOf(await round(server, server.keys.admin, 'delete_records', del(30), { requestState: state, inputResponses: ACCEPT }))).toBe('ERR_CONFIRMATION_INVALID')
      expect(mark()[0]).toMatchObject({ reason: 'ERR_CONFIRMATION_INVALID', detail: expect.stringContaining('already used'), confirm: 'invalid' })
    })

    it.each([
      ['tampered', (s: string) => `${s.slice(0, 40)}${s[40] === 'A' ? 'B' : 'A'}${s.slice(41)}`, 'failed verification'],
      ['not minted by bastion', () => 'eyJzdGVwIjoiY29uZmlybSJ9', 'not one bastion minted'],
      ['truncated', (s: string) => s.slice(0, -10), 'failed verification'],
    ])('a %s state is refused and nothing is deleted', async (_name, mutate, why) => {
      const state = await firstRound(server.keys.admin, del(31))
      const mark = server.mark()
      const body = await round(server, server.keys.admin, 'delete_records', del(31), { requestState: mutate(state), inputResponses: ACCEPT })
      expect(codeOf(body)).toBe('ERR_CONFIRMATION_INVALID')
      expect(JSON.stringify(body)).not.toContain('bse1')
      expect(mark()[0]?.detail).toContain(why)
      expect(await exists(31)).toBe(true)
    })

    it('is bound to the principal: another admin cannot spend it', async () => {
      const state = await firstRound(server.keys.admin, del(32))
      const mark = server.mark()
      expect(codeOf(await round(server, admin2, 'delete_records', del(32), { requestState: state, inputResponses: ACCEPT }))).toBe('ERR_CONFIRMATION_INVALID')
      expect(mark()[0]?.detail).toContain('another principal')
      expect(await exists(32)).toBe(true)
    })

    it('is bound to the arguments and the tool: confirming row 33 cannot delete row 34 or write a file', async () => {
      const state = await firstRound(server.keys.admin, del(33))
      const mark = server.mark()
      expect(codeOf(await round(server, server.keys.admin, 'delete_records', del(34), { requestState: state, inputResponses: ACCEPT }))).toBe('ERR_CONFIRMATION_INVALID')
      expect(codeOf(await round(server, server.keys.admin, 'write_file', { path: 'x.txt', content: 'x' }, { requestState: state, inputResponses: ACCEPT }))).toBe(
        'ERR_CONFIRMATION_INVALID',
      )
      expect(mark().map((l) => l.detail)).toStrictEqual([expect.stringContaining('other arguments'), expect.stringContaining('minted for tool delete_records')])
      expect(await exists(33)).toBe(true)
      expect(await exists(34)).toBe(true)
    })

    it('a confirmed count that no longer holds changes nothing', async () => {
      // Orders 40..43: confirm deleting all four, then one disappears before the answer.
      const range = { table: 'orders', filters: [{ column: 'id', op: 'in', value: [40, 41, 42, 43] }] }
      const state = await firstRound(server.keys.admin, range)
      const single = await firstRound(server.keys.admin, del(43))
      expect(codeOf(await round(server, server.keys.admin, 'delete_records', del(43), { requestState: single, inputResponses: ACCEPT }))).toBe('OK')
      const body = await round(server, server.keys.admin, 'delete_records', range, { requestState: state, inputResponses: ACCEPT })
      expect(codeOf(body)).toBe('ERR_CONFIRMATION_INVALID')
      expect(JSON.stringify(body)).toContain('the matching rows changed since you confirmed (4 then, 3 now); nothing was deleted')
      for (const id of [40, 41, 42]) expect(await exists(id)).toBe(true)
    })

    it('write_file: a target that changed after the preview is left alone', async () => {
      const path = join(server.dir, '.bastion', 'workspace', 'race.txt')
      writeFileSync(path, 'v1\n')
      const state = await firstRound(server.keys.admin, { path: 'race.txt', content: 'v3\n' }, 'write_file')
      writeFileSync(path, 'v2 by someone else\n')
      const body = await round(server, server.keys.admin, 'write_file', { path: 'race.txt', content: 'v3\n' }, { requestState: state, inputResponses: ACCEPT })
      expect(codeOf(body)).toBe('ERR_CONFIRMATION_INVALID')
      expect(readFileSync(path, 'utf8')).toBe('v2 by someone else\n')
    })

    it('write_file refuses a target that is a symlink or a directory, before asking', async () => {
      const root = join(server.dir, '.bastion', 'workspace')
      symlinkSync('/etc/hostname', join(root, 'link.txt'))
      mkdirSync(join(root, 'adir'))
      for (const path of ['link.txt', 'adir']) expect(codeOf(await round(server, server.keys.admin, 'write_file', { path, content: 'x' }))).toBe('ERR_PATH_FORBIDDEN')
      expect(readFileSync('/etc/hostname', 'utf8')).not.toBe('x')
    })

    it('no rows match: nothing to confirm', async () => {
      const body = await round(server, server.keys.admin, 'delete_records', del(999_999))
      expect(JSON.parse(outcome(body.result).text)).toStrictEqual({ table: 'orders', deleted: 0, note: 'no rows match; nothing to delete' })
    })
  })
})

describe('replicas sharing Redis', () => {
  const replicas: { bastion: Bastion; running: RunningServer }[] = []
  afterAll(async () => {
    for (const r of replicas) await r.bastion.close()
  })

  it('a confirmation spent on one replica is refused on the other', async () => {
    // Two processes' worth of bastions: one state folder (keyring, keys, workspace), one Redis.
    const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-replicas-')))
    const config = {
      limits: { backend: 'redis' as const, redis: { url: { env: 'BASTION_TEST_REDIS' }, keyPrefix: `bastion-test-${randomBytes(4).toString('hex')}:` } },
      sql: { enabled: false },
      alerts: { rules: [] },
    }
    const env = { ...process.env, BASTION_TEST_REDIS: 'redis://127.0.0.1:6379' }
    for (let i = 0; i < 2; i++) {
      const bastion = await createBastion({ baseDir: dir, config, env, logger: pino({ level: 'silent' }), announce: false })
      replicas.push({ bastion, running: await bastion.listen({ host: '127.0.0.1', port: 0 }) })
    }
    const [a, b] = replicas
    if (a === undefined || b === undefined) throw new Error('replicas did not start')
    const { key, stored } = a.bastion.keys.create({ name: 'admin', roles: ['admin'], expiresAt: null })
    await waitFor(() => b.bastion.keys.get(stored.id) !== undefined, { what: 'replica b to read the new key from the shared store' })
    const args = { path: 'shared.txt', content: 'once\n' }
    const at = (r: { running: RunningServer }) => ({ url: r.running.url }) as TestServer
    const first = (await round(at(a), key, 'write_file', args)).result as { requestState: string }
    expect(codeOf(await round(at(a), key, 'write_file', args, { requestState: first.requestState, inputResponses: ACCEPT }))).toBe('OK')
    expect(codeOf(await round(at(b), key, 'write_file', args, { requestState: first.requestState, inputResponses: ACCEPT }))).toBe('ERR_CONFIRMATION_INVALID')
    // Refused as spent (the shared record), not merely because the file now exists.
    await b.bastion.audit.flush()
    const lines = readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.filter((l) => l.tool === 'write_file').at(-1)).toMatchObject({ reason: 'ERR_CONFIRMATION_INVALID', detail: expect.stringContaining('already used') })
  })
})

describe('masking an input-required result', () => {
  it('masks what the user sees, never the sealed requestState', async () => {
    const server = await startServer({}, (b) =>
      b.tool({
        name: 'ask_state',
        description: 'returns an input request whose state looks like personal data',
        input: z.strictObject({}),
        run: async () =>
          inputRequired({
            inputRequests: { confirm: inputRequired.elicit({ message: 'Mail ana@example.com?', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } } } }) },
            requestState: 'state-for ana@example.com +1 415 555 0134',
          }),
      }),
    )
    try {
      const result = (await round(server, server.keys.admin, 'ask_state', {})).result as { requestState: string; inputRequests: { confirm: { params: { message: string } } } }
      expect(result.requestState).toBe('state-for ana@example.com +1 415 555 0134')
      expect(result.inputRequests.confirm.params.message).toBe('Mail [EMAIL]?')
    } finally {
      await server.close()
    }
  })
})
