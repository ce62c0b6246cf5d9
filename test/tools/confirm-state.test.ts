import { randomBytes } from 'node:crypto'
import type { ServerContext } from '@modelcontextprotocol/server'
import { describe, expect, it } from 'vitest'
import { Keyring } from '../../src/protect/keyring.js'
import { CONFIRM_STATE_PREFIX, Confirmations, confirmationStateVerifier, MemoryNonceStore } from '../../src/tools/confirm.js'
import type { ToolContext } from '../../src/tools/registry.js'
import { INPUT_HELPERS } from '../../src/transport/mcp-server.js'

const keyring = new Keyring(new Map([['k1', randomBytes(32)]]), 'k1')
const ctx = {
  requestId: 'r',
  principal: { id: 'key:a', kind: 'api-key', name: 'a', roles: ['admin'] },
  signal: new AbortController().signal,
  mcp: {} as ServerContext,
  canElicit: true,
  input: INPUT_HELPERS,
  policy: {},
  audit: () => {},
} satisfies ToolContext

describe('confirmation state', () => {
  it('the memory nonce store refuses new confirmations rather than forget a live one', async () => {
    const store = new MemoryNonceStore(2)
    expect(await store.claim('a', 60_000)).toBe(true)
    expect(await store.claim('b', 60_000)).toBe(true)
    await expect(store.claim('c', 60_000)).rejects.toMatchObject({ code: 'ERR_TOOL_FAILED' })
    // Spent nonces are still spent.
    expect(await store.claim('a', 60_000)).toBe(false)
    expect(await store.claim('b', 60_000)).toBe(false)
  })

  it('the memory nonce store forgets a nonce once its state expired', async () => {
    const store = new MemoryNonceStore(1)
    expect(await store.claim('a', 1)).toBe(true)
    await new Promise((r) => setTimeout(r, 5))
    expect(await store.claim('b', 60_000)).toBe(true)
  })

  it("with a library user's verify hook, only genuine bastion states bypass it", async () => {
    const seen: string[] = []
    const verify = confirmationStateVerifier(
      () => keyring,
      (state) => {
        seen.push(state)
        throw new Error('not mine')
      },
    )
    const asked = new Confirmations(() => keyring, new MemoryNonceStore()).ask(ctx, 'delete_records', { id: 1 }, 'Delete?', { rows: 1 })
    const genuine = asked.requestState ?? ''
    expect(verify(genuine, ctx.mcp)).toBe(genuine)
    const forged = `${CONFIRM_STATE_PREFIX}bse1.k1.AAAA.BBBB`
    expect(() => verify(forged, ctx.mcp)).toThrow('not mine')
    expect(seen).toStrictEqual([forged])
  })
})
