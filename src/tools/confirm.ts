import { createHash, randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { SecurityError } from '../errors.js'
import type { Keyring } from '../protect/keyring.js'
import type { InputRequiredResult, ServerContext } from '../protocol.js'
import type { ToolContext } from './registry.js'

/** Prefix of the `requestState` bastion mints for confirmations; the rest is a keyring envelope. */
export const CONFIRM_STATE_PREFIX = 'bastion-confirm.'
const PURPOSE = 'confirm:v1'

/** Remembers which confirmation states were used: each may be redeemed once. */
export interface NonceStore {
  /** True the first time a nonce is seen (within its time to live), false after. */
  claim(nonce: string, ttlMs: number): Promise<boolean>
}

/**
 * One process: a map with expiry, bounded. A spent nonce is forgotten only once its state has
 * expired; when the bound is reached with every entry still live, new confirmations are refused
 * (forgetting a live one would let its state be replayed).
 */
export class MemoryNonceStore implements NonceStore {
  readonly #seen = new Map<string, number>()
  readonly #max: number
  constructor(max = 100_000) {
    this.#max = max
  }
  async claim(nonce: string, ttlMs: number): Promise<boolean> {
    const now = Date.now()
    // Oldest first: drop the expired prefix; at the bound, sweep the whole map.
    for (const [n, until] of this.#seen) {
      if (until > now) break
      this.#seen.delete(n)
    }
    if (this.#seen.size >= this.#max) for (const [n, until] of this.#seen) if (until <= now) this.#seen.delete(n)
    if ((this.#seen.get(nonce) ?? 0) > now) return false
    if (this.#seen.size >= this.#max) throw new SecurityError('ERR_TOOL_FAILED', `confirmation store full: ${this.#max} unexpired confirmations`)
    this.#seen.set(nonce, now + ttlMs)
    return true
  }
}

/** Every replica: `SET NX` with the state's time to live. Redis down: the confirmation fails closed. */
export class RedisNonceStore implements NonceStore {
  constructor(
    readonly redis: Redis,
    readonly prefix: string,
  ) {}
  async claim(nonce: string, ttlMs: number): Promise<boolean> {
    try {
      return (await this.redis.set(`${this.prefix}confirm:${nonce}`, '1', 'PX', Math.max(1, ttlMs), 'NX')) === 'OK'
    } catch (error) {
      throw new SecurityError('ERR_TOOL_FAILED', `confirmation store unavailable: ${error instanceof Error ? error.message : 'error'}`, { cause: error })
    }
  }
}

/** What the user confirmed: bound into the state, checked again before the change is made. */
export type Preview = Readonly<Record<string, string | number | boolean | null>>

interface Sealed {
  readonly tool: string
  readonly principal: string
  readonly args: string
  readonly nonce: string
  readonly exp: number
  readonly preview: Preview
}

/** Canonical JSON (sorted keys): the digest of the validated arguments a state is bound to. */
export function argsDigest(args: unknown): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical)
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
      )
    }
    return v
  }
  return createHash('sha256')
    .update(JSON.stringify(canonical(args)))
    .digest('base64url')
}

/** The sealed payload of a state bastion minted, or undefined for anything else (forged, corrupted, unknown key). */
function openState(keyring: Keyring, state: string): Sealed | undefined {
  if (!state.startsWith(CONFIRM_STATE_PREFIX)) return undefined
  try {
    return JSON.parse(keyring.decrypt(state.slice(CONFIRM_STATE_PREFIX.length), PURPOSE)) as Sealed
  } catch {
    return undefined
  }
}

/**
 * For the SDK's `requestState.verify` seam when a library user has a hook of their own: bastion's
 * states (genuine envelopes only) pass through raw to the confirming tool, which checks them in
 * full; anything else, including a forged state with bastion's prefix, goes to the user's hook.
 */
export function confirmationStateVerifier(keyring: () => Keyring, verify: (state: string, ctx: ServerContext) => unknown): (state: string, ctx: ServerContext) => unknown {
  return (state, ctx) => (openState(keyring(), state) === undefined ? verify(state, ctx) : state)
}

/**
 * Confirmation of destructive calls (MCP multi-round-trip, 2026-07-28; the SDK turns the same
 * result into an `elicitation/create` request on a 2025-11-25 session).
 *
 * The state the client carries between rounds is an AES-256-GCM envelope under the keyring
 * (integrity and confidentiality; replicas sharing the keyring accept each other's states). It is
 * bound to the tool, the principal and a digest of the validated arguments, expires after
 * `ttlMs`, and is single-use through a nonce store (Redis when replicas share one).
 * Does not check: that a human, rather than the client software, answered the elicitation.
 */
export class Confirmations {
  constructor(
    readonly keyring: () => Keyring,
    readonly nonces: NonceStore,
    readonly ttlMs = 5 * 60_000,
  ) {}

  /**
   * Ask the user. Refuses with `ERR_CONFIRMATION_REQUIRED` when the client declared no
   * elicitation support (it could never answer).
   */
  ask(ctx: ToolContext, tool: string, args: unknown, message: string, preview: Preview): InputRequiredResult {
    if (!ctx.canElicit) {
      ctx.audit({ confirm: 'unavailable', preview })
      throw new SecurityError('ERR_CONFIRMATION_REQUIRED', `${tool}: the client declared no elicitation capability; nothing was changed`)
    }
    const sealed: Sealed = { tool, principal: ctx.principal.id, args: argsDigest(args), nonce: randomBytes(16).toString('base64url'), exp: Date.now() + this.ttlMs, preview }
    const state = `${CONFIRM_STATE_PREFIX}${this.keyring().encrypt(JSON.stringify(sealed), PURPOSE)}`
    ctx.audit({ confirm: 'requested', preview })
    return ctx.input.required({
      inputRequests: {
        confirm: ctx.input.required.elicit({
          message,
          requestedSchema: {
            type: 'object',
            properties: { confirm: { type: 'boolean', title: 'Confirm', description: message.slice(0, 500) } },
            required: ['confirm'],
          },
        }),
      },
      requestState: state,
    })
  }

  /**
   * The round that carries a state: verify it (envelope, tool, principal, arguments, expiry),
   * spend it, then read the user's answer. Returns the preview the user confirmed.
   * @throws SecurityError ERR_CONFIRMATION_INVALID for a forged, foreign, stale or reused state;
   *   ERR_DECLINED when the user declined, cancelled or did not answer.
   */
  async redeem(ctx: ToolContext, tool: string, args: unknown, state: string): Promise<Preview> {
    const refuse = (why: string): never => {
      ctx.audit({ confirm: 'invalid' })
      throw new SecurityError('ERR_CONFIRMATION_INVALID', `${tool}: confirmation state ${why}`)
    }
    if (!state.startsWith(CONFIRM_STATE_PREFIX)) refuse('is not one bastion minted')
    const sealed = openState(this.keyring(), state)
    if (sealed === undefined) return refuse('failed verification (forged, corrupted or under an unknown key)')
    if (sealed.tool !== tool) refuse(`was minted for tool ${sealed.tool}`)
    if (sealed.principal !== ctx.principal.id) refuse('belongs to another principal')
    if (sealed.args !== argsDigest(args)) refuse('was minted for other arguments')
    const left = sealed.exp - Date.now()
    if (!(left > 0)) refuse('expired')
    if (!(await this.nonces.claim(sealed.nonce, left + 1000))) refuse('was already used')
    const answer = ctx.input.response(ctx.mcp.mcpReq.inputResponses, 'confirm')
    if (answer.kind !== 'elicit' || answer.action !== 'accept' || answer.content?.confirm !== true) {
      const what = answer.kind === 'elicit' ? (answer.action === 'accept' ? 'accepted without confirming' : answer.action) : 'no answer'
      ctx.audit({ confirm: 'declined', answer: what, preview: sealed.preview })
      throw new SecurityError('ERR_DECLINED', `${tool}: the user did not confirm (${what}); nothing was changed`)
    }
    ctx.audit({ confirm: 'accepted', preview: sealed.preview })
    return sealed.preview
  }

  /** The state of this round, if any (a string: bastion reads it raw and verifies it itself). */
  static stateOf(ctx: ToolContext): string | undefined {
    const state: unknown = ctx.mcp.mcpReq.requestState()
    if (state === undefined) return undefined
    if (typeof state !== 'string') throw new SecurityError('ERR_CONFIRMATION_INVALID', 'requestState is not a string')
    return state
  }
}
