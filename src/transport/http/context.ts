import type { ResourceServer } from '../../auth/resource-metadata.js'
import type { RequestContext } from '../../pipeline/context.js'

/** The per-request context of the HTTP edge: the request context plus the HTTP exchange. */
export interface HttpContext extends RequestContext {
  readonly request: Request
  readonly url: URL
  /** The parsed JSON-RPC body of a POST, parsed once by the body stage. */
  body: unknown
  /** The body exceeded the cap while the adapter was reading it. */
  readonly bodyTooLarge: boolean
  /** Headers added to whatever response goes out (request id, challenges). */
  readonly responseHeaders: Headers
  /** Set when tokens are accepted: challenges then point at the Protected Resource Metadata. */
  readonly resourceServer: ResourceServer | undefined
}

export type HttpGuard = (ctx: HttpContext, next: () => Promise<Response>) => Promise<Response>

/** The JSON-RPC id of a single request body, to echo on an error; `null` when there is none. */
export function rpcIdOf(body: unknown): string | number | null {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return null
  const id = (body as { id?: unknown }).id
  return typeof id === 'string' || typeof id === 'number' ? id : null
}

/** The JSON-RPC method of a single message body. */
export function rpcMethodOf(body: unknown): string | undefined {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined
  const method = (body as { method?: unknown }).method
  return typeof method === 'string' ? method.slice(0, 128) : undefined
}

/** The tool a single `tools/call` body names, if any. */
export function rpcToolOf(body: unknown): string | undefined {
  if (rpcMethodOf(body) !== 'tools/call') return undefined
  const params = (body as { params?: unknown }).params
  const name = params !== null && typeof params === 'object' ? (params as { name?: unknown }).name : undefined
  return typeof name === 'string' ? name : undefined
}
