import { isSpecType } from '@modelcontextprotocol/server'
import { SecurityError } from '../errors.js'
import { type Exchange, rpcMethodOf, rpcParamsOf, type Stage } from '../pipeline/exchange.js'

const MAX_METHOD = 128

/** Every string in a value, keys included, is well-formed Unicode (no lone surrogate). Iterative: no recursion on input. */
function wellFormed(value: unknown): boolean {
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    if (typeof v === 'string') {
      if (!v.isWellFormed()) return false
    } else if (v !== null && typeof v === 'object') {
      if (Array.isArray(v)) for (const item of v) stack.push(item)
      else
        for (const [k, item] of Object.entries(v)) {
          if (!k.isWellFormed()) return false
          stack.push(item)
        }
    }
  }
  return true
}

// The SDK validates these requests' params inside its handler wrapper and answers a failure as an
// internal error (-32603) with the validator's text; checked here with the SDK's own schemas, a
// bad request is refused as what it is (-32602) before the SDK sees it. Methods whose schema is
// era- or capability-specific (initialize, subscriptions/listen, completion/complete, and those 2026-07-28 removed: logging/setLevel,
// resources/subscribe, resources/unsubscribe) are left to the SDK.
const PARAMS: ReadonlyMap<string, (value: unknown) => boolean> = new Map<string, (value: unknown) => boolean>([
  ['ping', isSpecType.PingRequest],
  ['tools/list', isSpecType.ListToolsRequest],
  ['tools/call', isSpecType.CallToolRequest],
  ['resources/list', isSpecType.ListResourcesRequest],
  ['resources/templates/list', isSpecType.ListResourceTemplatesRequest],
  ['resources/read', isSpecType.ReadResourceRequest],
  ['prompts/list', isSpecType.ListPromptsRequest],
  ['prompts/get', isSpecType.GetPromptRequest],
])

const invalid = (why: string): SecurityError => new SecurityError('ERR_INVALID_REQUEST', `not a valid JSON-RPC message: ${why}`, { expose: why })
const badParams = (why: string): SecurityError => new SecurityError('ERR_INVALID_PARAMS', `invalid params: ${why}`, { expose: why })

/**
 * The JSON-RPC 2.0 envelope of a message, as MCP narrows it (basic: Messages): one object (no
 * batches), `jsonrpc: "2.0"`, a request id that is a string or an integer (never null), `params` an
 * object, strings well-formed; for `tools/call`, a string `name` and object `arguments`. What this
 * stage refuses never reaches the SDK, so the SDK never answers with its own text.
 * The params of the common requests are checked against the SDK's own schemas.
 * Does not check: params of initialize and era-specific methods (the SDK validates them, and its
 * errors are re-rendered by the wire), arguments against the tool's schema (the validate stage).
 */
export function checkMessage(): Stage {
  return async function checkMessageStage<R>(x: Exchange, next: () => Promise<R>): Promise<R> {
    const m = x.message
    if (m === undefined && x.http !== undefined && x.http.request.method !== 'POST') return next()
    if (Array.isArray(m)) throw invalid('batches are not accepted (removed in MCP 2025-06-18)')
    if (m === null || typeof m !== 'object') throw invalid('the message is not an object')
    if (!wellFormed(m)) throw invalid('a string is not well-formed Unicode')
    const o = m as Record<string, unknown>
    if (o.jsonrpc !== '2.0') throw invalid('jsonrpc must be "2.0"')
    const hasId = Object.hasOwn(o, 'id')
    if (hasId && !(typeof o.id === 'string' || (typeof o.id === 'number' && Number.isSafeInteger(o.id)))) throw invalid('id must be a string or an integer')
    if (Object.hasOwn(o, 'method')) {
      if (typeof o.method !== 'string' || o.method.length === 0 || o.method.length > MAX_METHOD) throw invalid('method must be a non-empty string')
      if (Object.hasOwn(o, 'result') || Object.hasOwn(o, 'error')) throw invalid('a request carries no result or error')
      if (Object.hasOwn(o, 'params') && rpcParamsOf(m) === undefined) throw invalid('params must be an object')
      x.method = rpcMethodOf(m)
      const valid = hasId && x.method !== undefined ? PARAMS.get(x.method) : undefined
      if (valid !== undefined && !valid(m)) throw badParams(`params do not match ${x.method}`)
      if (x.method === 'tools/call' && hasId) {
        const params = rpcParamsOf(m)
        if (typeof params?.name !== 'string' || params.name.length === 0) throw badParams('name must be a non-empty string')
        const args = params.arguments
        if (args !== undefined && (args === null || typeof args !== 'object' || Array.isArray(args))) throw badParams('arguments must be an object')
      }
    } else {
      // A response to a request of ours (elicitation, sampling): an id and exactly one of result, error.
      if (!hasId) throw invalid('no method and no id')
      if (Object.hasOwn(o, 'result') === Object.hasOwn(o, 'error')) throw invalid('a response carries exactly one of result and error')
      x.method = 'response'
    }
    return next()
  }
}
