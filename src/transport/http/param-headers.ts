import { SecurityError } from '../../errors.js'
import { type Exchange, rpcParamsOf, type Stage } from '../../pipeline/exchange.js'

/** A tool argument a 2026-07-28 client also sends as an `Mcp-Param-<name>` header (SEP-2243). */
interface Declaration {
  readonly path: readonly string[]
  readonly header: string
  readonly numeric: boolean
}

const SENTINEL_PREFIX = '=?base64?'
const SENTINEL_SUFFIX = '?='
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const DECIMAL = /^-?\d+(\.\d+)?$/
const UTF8 = new TextDecoder('utf-8', { fatal: true })
const cache = new WeakMap<object, readonly Declaration[]>()

/** `x-mcp-header` declarations reachable through `properties` only (where the spec permits them). */
function declarationsOf(schema: Record<string, unknown>): readonly Declaration[] {
  const known = cache.get(schema)
  if (known !== undefined) return known
  const found: Declaration[] = []
  const visit = (node: unknown, path: string[]): void => {
    if (node === null || typeof node !== 'object') return
    const s = node as Record<string, unknown>
    const header = s['x-mcp-header']
    if (typeof header === 'string' && header.length > 0 && path.length > 0)
      found.push({ path, header: `mcp-param-${header.toLowerCase()}`, numeric: s.type === 'integer' || s.type === 'number' })
    const properties = s.properties
    if (properties !== null && typeof properties === 'object') for (const [k, child] of Object.entries(properties)) visit(child, [...path, k])
  }
  visit(schema, [])
  cache.set(schema, found)
  return found
}

/** A header value, with the base64 sentinel form (`=?base64?…?=`) decoded; undefined when that encoding is invalid. */
export function decodeParamHeader(value: string): string | undefined {
  if (!(value.startsWith(SENTINEL_PREFIX) && value.endsWith(SENTINEL_SUFFIX))) return value
  const b64 = value.slice(SENTINEL_PREFIX.length, value.length - SENTINEL_SUFFIX.length)
  if (!BASE64.test(b64)) return undefined
  try {
    return UTF8.decode(Buffer.from(b64, 'base64'))
  } catch {
    return undefined
  }
}

function primitive(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'number' && Number.isFinite(value) && (!Number.isInteger(value) || Number.isSafeInteger(value))) return String(value)
  return undefined
}

/**
 * MCP 2026-07-28 (Streamable HTTP, standard headers): an argument a tool declares with
 * `x-mcp-header` must be mirrored in its `Mcp-Param-*` header, which must agree with the body
 * after base64-sentinel decoding; a missing, undecodable or disagreeing header is −32020.
 * Does not check: `Mcp-Method`/`Mcp-Name` (the SDK's classifier does, and its −32020 is re-rendered).
 */
export function checkParamHeaders(): Stage {
  return async function checkParamHeadersStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const http = x.http
    const tool = x.tool
    if (http === undefined || tool === undefined || x.era !== 'modern') return next()
    const args = rpcParamsOf(x.message)?.arguments
    for (const d of declarationsOf(tool.descriptor.inputSchema as Record<string, unknown>)) {
      let value: unknown = args
      for (const key of d.path) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined
      const body = primitive(value)
      if (body === undefined) continue
      const header = http.request.headers.get(d.header)
      if (header === null) throw new SecurityError('ERR_HEADER_MISMATCH', `${d.header} absent for ${d.path.join('.')}`, { expose: `${d.header} is missing` })
      const decoded = decodeParamHeader(header)
      if (decoded === undefined) throw new SecurityError('ERR_HEADER_MISMATCH', `${d.header} carries an invalid base64 sentinel`, { expose: `${d.header} is not validly encoded` })
      const same = d.numeric && typeof value === 'number' && DECIMAL.test(decoded) ? Number(decoded) === value : decoded === body
      if (!same) throw new SecurityError('ERR_HEADER_MISMATCH', `${d.header} disagrees with ${d.path.join('.')}`, { expose: `${d.header} disagrees with the body` })
    }
    return next()
  }
}
