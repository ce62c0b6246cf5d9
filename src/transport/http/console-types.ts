import type { AuditLog } from '../../audit/audit-log.js'
import type { ApiKeyAuthenticator } from '../../auth/authenticate.js'
import type { BruteForce } from '../../auth/brute-force.js'
import type { KeyStore } from '../../auth/key-store.js'
import type { ConsoleService } from '../../console/service.js'
import type { ConsoleSession, ConsoleSessions, ConsoleUser } from '../../console/sessions.js'
import type { Exchange, Stage } from '../../pipeline/exchange.js'
import type { RbacPolicy } from '../../policy/rbac.js'

/** What the console's routes share: its options, the request a handler serves, its permissions. */

/** The permission to look at the console, and the one to act in it (revoke, create). */
export const CONSOLE_READ = 'console:read'
export const CONSOLE_ADMIN = 'console:admin'

export interface ConsoleRouteOptions {
  /** The console's path, e.g. `/console`. */
  readonly path: string
  readonly service: ConsoleService
  readonly sessions: ConsoleSessions
  readonly apiKeys: ApiKeyAuthenticator
  readonly keys: KeyStore
  readonly bruteForce: BruteForce
  readonly audit: AuditLog
  readonly grants: RbacPolicy
  /** Authenticates a script's own credential (API key or token) on the JSON API. */
  readonly authenticate: Stage
  /** JSON bodies nest no deeper than this (`server.maxJsonDepth`). */
  readonly maxJsonDepth: number
  /** Charges a signed-in request to the principal's buckets, like any request of that principal (429 past them). */
  readonly rateLimit: Stage
  readonly roles: readonly string[]
  readonly tools: () => readonly string[]
  readonly upstreams: boolean
  readonly sessionSeconds: number
}

/** What a console handler knows about the request it serves. */
export interface ConsoleRequest {
  readonly x: Exchange
  readonly url: URL
  /** The path below the console's, `''` for its root. */
  readonly sub: string
  readonly method: string
  readonly user: ConsoleUser
  /** Set for a browser session (cookie); absent for a script's own credential. */
  readonly session: ConsoleSession | undefined
  /** The request's form (POST from a page) or JSON body (POST to the API), read once by the CSRF check. */
  readonly form: URLSearchParams | undefined
  readonly json: unknown
  readonly origin: string
}
