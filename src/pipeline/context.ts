import { randomUUID } from 'node:crypto'
import type { SecurityError, SecurityErrorCode } from '../errors.js'
import type { CompiledPolicy } from '../policy/engine.js'

/** Who is calling, after authentication. Never carries a secret. */
export interface Principal {
  /** Stable id for audit and session binding, e.g. `key:3f9a…`. */
  readonly id: string
  readonly kind: 'api-key' | 'jwt' | 'opaque'
  /** Human name of the credential. */
  readonly name: string
  readonly roles: readonly string[]
  /** Tenant the principal acts for, when the deployment has tenants. */
  readonly tenant?: string
  /** OAuth scopes granted to the credential (none for API keys). */
  readonly scopes?: readonly string[]
  /** Token claims, for policy conditions (none for API keys). */
  readonly claims?: Readonly<Record<string, unknown>>
}

export type Decision = 'allow' | 'deny' | 'error'

/** What the audit line of this request will say; stages fill it in as they decide. */
export interface AuditOutcome {
  event: string
  decision: Decision
  reason: SecurityErrorCode | 'OK'
  /** Operator-only cause: bastion's own message, never a secret. */
  detail?: string
  /** Extra structured fields for the audit line. */
  extra?: Record<string, unknown>
}

// Failures of bastion itself, as opposed to refusals of the caller.
const ERROR_CODES: ReadonlySet<SecurityErrorCode> = new Set([
  'ERR_INTERNAL',
  'ERR_AUDIT_UNAVAILABLE',
  'ERR_TOOL_FAILED',
  'ERR_LIMITS_UNAVAILABLE',
  'ERR_AUTH_UNAVAILABLE',
  'ERR_DATABASE',
])

/**
 * The outcome of a refusal or failure: one rule for `deny` versus `error`, keeping the extra
 * fields earlier stages recorded (the deciding rule, the credential source).
 */
export function failureOutcome(previous: AuditOutcome, event: string, failure: SecurityError, detail = failure.message): AuditOutcome {
  return {
    event,
    decision: ERROR_CODES.has(failure.code) ? 'error' : 'deny',
    reason: failure.code,
    detail,
    ...(previous.extra === undefined ? {} : { extra: previous.extra }),
  }
}

/** The typed per-request context every stage reads and writes. */
export interface RequestContext {
  readonly requestId: string
  readonly startedAt: number
  readonly transport: 'http' | 'stdio'
  readonly remoteAddress: string | undefined
  principal: Principal | undefined
  era: 'modern' | 'legacy' | undefined
  sessionId: string | undefined
  /** JSON-RPC method of the message, once parsed. */
  method: string | undefined
  /** Tool name for `tools/call`. */
  tool: string | undefined
  /** Set once the single audit line of this request is written. */
  audited: boolean
  /** Multi-round-trip re-entry on one request (2025-11-25 elicitation): 2 for the second round. */
  round?: number
  /** The policy version this request is decided by: taken once, so a reload never splits a request. */
  policy: CompiledPolicy | undefined
  /** Set once the request has been charged to its rate-limit buckets (the HTTP edge does it early). */
  limited: boolean
  outcome: AuditOutcome
  readonly signal: AbortSignal
}

// RFC 9562 UUIDs, or opaque tokens a proxy may use: short, printable, no separators that break logs.
const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/

/** Accept a well-formed caller request id, else generate one. */
export function requestIdFrom(header: string | null): string {
  return header !== null && REQUEST_ID.test(header) ? header : randomUUID()
}

export function createContext(init: {
  requestId: string
  transport: 'http' | 'stdio'
  remoteAddress: string | undefined
  signal: AbortSignal
  principal?: Principal
}): RequestContext {
  return {
    requestId: init.requestId,
    startedAt: performance.now(),
    transport: init.transport,
    remoteAddress: init.remoteAddress,
    principal: init.principal,
    era: undefined,
    sessionId: undefined,
    method: undefined,
    tool: undefined,
    audited: false,
    limited: false,
    policy: undefined,
    outcome: { event: 'request', decision: 'allow', reason: 'OK' },
    signal: init.signal,
  }
}

/** The policy a request is decided by, pinned on first use. */
export function policyOf(ctx: RequestContext, current: () => CompiledPolicy): CompiledPolicy {
  ctx.policy ??= current()
  return ctx.policy
}
