import { SecurityError } from '../../errors.js'
import type { Exchange } from '../../pipeline/exchange.js'
import type { Metrics } from '../../pipeline/metrics.js'
import { hasPermission, type RbacPolicy } from '../../policy/rbac.js'

/** The permission a role needs to read `/metrics`. */
export const METRICS_PERMISSION = 'metrics:read'

/**
 * `GET /metrics` in the Prometheus text format, for principals holding `metrics:read` (or `*`).
 * Runs after authentication; the scraper presents an API key like any client.
 * Does not check: anything about the metrics themselves (they carry no principal ids or input).
 */
export function metricsTerminal(metrics: Metrics, grants: RbacPolicy): (x: Exchange) => Promise<Response> {
  return async function metricsRoute(x) {
    x.method = 'metrics'
    const method = x.http?.request.method ?? ''
    if (method !== 'GET') throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `${method.slice(0, 16)} /metrics`)
    const principal = x.principal
    if (principal === undefined) throw new SecurityError('ERR_INTERNAL', 'metrics reached unauthenticated')
    if (!hasPermission(grants, principal, METRICS_PERMISSION)) throw new SecurityError('ERR_FORBIDDEN', `no role of ${principal.id} grants ${METRICS_PERMISSION}`)
    return new Response(await metrics.text(), { headers: { 'content-type': metrics.contentType, 'cache-control': 'no-store' } })
  }
}
