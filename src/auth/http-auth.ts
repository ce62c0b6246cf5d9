import type { AuditLog } from '../audit/audit-log.js'
import { SecurityError } from '../errors.js'
import { addressKey } from '../limits/rate-plan.js'
import type { Exchange, Stage } from '../pipeline/exchange.js'
import { parseApiKey } from './api-key.js'
import { type CredentialSource, credentialFromHeaders } from './authenticate.js'
import type { Authenticator } from './authenticator.js'
import type { BruteForce } from './brute-force.js'

// RFC 6750 §2.3 and the names API keys travel under: a credential in a URL ends up in logs and history.
const QUERY_CREDENTIALS = ['access_token', 'token', 'api_key', 'apikey', 'key', 'id_token']

/**
 * Credentials in the query string are refused (400) before anything else looks at them.
 * Does not check: credentials anywhere else.
 */
export function refuseQueryCredential(): Stage {
  return async function refuseQueryCredentialStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const url = x.http?.url
    if (url === undefined) return next()
    for (const name of QUERY_CREDENTIALS) {
      if (url.searchParams.has(name)) throw new SecurityError('ERR_TOKEN_IN_QUERY', `credential parameter ${name} in the URL`)
    }
    return next()
  }
}

export interface AuthenticateOptions {
  readonly authenticator: Authenticator
  readonly bruteForce: BruteForce
  readonly audit: AuditLog
  /** stdio: the API key the process was started with. */
  readonly presented?: string
  /** Where `presented` came from (default `environment`: API keys only); a WebSocket's Authorization header or subprotocol is `authorization`. */
  readonly presentedSource?: CredentialSource
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer)
        resolve()
      },
      { once: true },
    )
  })

/** The brute-force subject of a request's client address (IPv6 by /64). */
export function addressSubject(x: Exchange): string {
  return `addr:${addressKey(x.remoteAddress)}`
}

/** Refuse a blocked address or key id before any credential is checked. @throws SecurityError ERR_AUTH_BLOCKED */
export function refuseIfBlocked(bruteForce: BruteForce, subject: string): void {
  const blocked = bruteForce.blockedUntil(subject)
  if (blocked !== undefined) throw new SecurityError('ERR_AUTH_BLOCKED', `${subject} is blocked after repeated failures`, { retryAfterMs: blocked - Date.now() })
}

/**
 * Count one failed authentication against each subject; a block that starts is an audited alert.
 * Returns how long the answer should be delayed.
 */
export function countFailure(bruteForce: BruteForce, audit: AuditLog, x: Exchange, subjects: readonly string[]): number {
  let delayMs = 0
  for (const subject of subjects) {
    const verdict = bruteForce.fail(subject)
    delayMs = Math.max(delayMs, verdict.delayMs)
    x.audit.note({ failures: verdict.failures })
    if (verdict.blockedUntil === undefined) continue
    audit.record({
      event: 'alert',
      alert: 'auth.blocked',
      requestId: x.requestId,
      subject,
      failures: verdict.failures,
      until: new Date(verdict.blockedUntil).toISOString(),
      decision: 'deny',
      reason: 'ERR_AUTH_BLOCKED',
      remote: x.remoteAddress,
    })
  }
  return delayMs
}

/**
 * Authenticate every request from its own credential: a session id never stands in for one. Over
 * HTTP the credential is the request's `Authorization: Bearer` or `X-API-Key`; over stdio, the key
 * the process was started with (`presented`), verified again on every message so that a revoked or
 * expired key stops working mid-connection.
 * Repeated failures from one address, or against one API key id, are answered ever later and
 * then blocked for a while (429 before any credential is checked); a block is an audited alert.
 * Does not check: what the principal may do (policy does), session ownership (the session stage
 * does), scopes (the authorize stage does).
 */
export function authenticate(options: AuthenticateOptions): Stage {
  const { authenticator, bruteForce, audit, presented } = options
  return async function authenticateStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const http = x.http
    if (http === undefined) {
      if (presented === undefined) throw new SecurityError('ERR_AUTH_MISSING', 'no credential for this transport')
      const source = options.presentedSource ?? 'environment'
      x.principal = await authenticator.verify(presented, source)
      x.audit.allow('auth.success')
      x.audit.note({ via: source, kind: x.principal.kind })
      return next()
    }
    const address = addressSubject(x)
    refuseIfBlocked(bruteForce, address)
    const { token, source } = credentialFromHeaders(http.request.headers)
    const keyId = parseApiKey(token)?.id
    const subjects = keyId === undefined ? [address] : [address, `key:${keyId}`]
    if (keyId !== undefined) refuseIfBlocked(bruteForce, `key:${keyId}`)
    try {
      x.principal = await authenticator.verify(token, source)
    } catch (error) {
      if (error instanceof SecurityError && error.code === 'ERR_AUTH_INVALID') {
        const delayMs = countFailure(bruteForce, audit, x, subjects)
        if (delayMs > 0) {
          x.audit.note({ delayedMs: delayMs })
          await sleep(delayMs, x.signal)
        }
      }
      throw error
    }
    x.audit.allow('auth.success')
    x.audit.note({ via: source, kind: x.principal.kind })
    return next()
  }
}
