import { type CallToolResult, type JSONRPCMessage, ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server'
import { bearerChallenge, DESCRIPTIONS, type ResourceServer, ScopeError } from '../auth/resource-metadata.js'
import { isSecurityErrorCode, publicText, rpcError, SecurityError, type SecurityErrorCode, toSecurityError, WIRE } from '../errors.js'
import { type Exchange, rpcIdOf } from '../pipeline/exchange.js'

/** Key under `_meta` carrying the machine-readable refusal of an in-band tool error. */
export const ERROR_META_KEY = 'bastion/error'

const REALM = 'Bearer realm="mcp-bastion"'

/**
 * Responses the wire built from a string, with that string: the Node listener writes it as it is
 * instead of reading the body stream back (the JSON answer was already read once, to settle it).
 */
export const TEXT_BODIES = new WeakMap<Response, string>()

function textResponse(body: string, init: ResponseInit): Response {
  const response = new Response(body, init)
  TEXT_BODIES.set(response, body)
  return response
}

/** A tool-level refusal or failure, reported in-band (`isError`) so the model can correct itself. */
export function toolErrorResult(error: SecurityError, requestId: string): CallToolResult {
  return {
    content: [{ type: 'text', text: `${publicText(error)} (request id ${requestId})` }],
    isError: true,
    _meta: { [ERROR_META_KEY]: { code: error.code, requestId } },
  }
}

/** A refusal as the SDK's error type, for handlers: the SDK writes it as given. */
export function toProtocolError(error: SecurityError, requestId: string): ProtocolError {
  const wire = rpcError(error, requestId)
  return new ProtocolError(wire.code, wire.message, wire.data)
}

// The SDK's own errors, by JSON-RPC code (the SDK's names for them): JSON-RPC 2.0's codes and MCP's,
// each to the row with the same meaning. These are codes read from the SDK, never emitted as such.
const SDK_CODES = new Map<number, SecurityErrorCode>([
  [ProtocolErrorCode.ParseError, 'ERR_PARSE'],
  [ProtocolErrorCode.InvalidRequest, 'ERR_INVALID_REQUEST'],
  [ProtocolErrorCode.MethodNotFound, 'ERR_METHOD_NOT_FOUND'],
  [ProtocolErrorCode.InvalidParams, 'ERR_INVALID_PARAMS'],
  [ProtocolErrorCode.InternalError, 'ERR_INTERNAL'],
  [ProtocolErrorCode.ResourceNotFound, 'ERR_RESOURCE_NOT_FOUND'],
  [ProtocolErrorCode.MissingRequiredClientCapability, 'ERR_CAPABILITY_MISSING'],
  [ProtocolErrorCode.UnsupportedProtocolVersion, 'ERR_UNSUPPORTED_VERSION'],
  [WIRE.ERR_HEADER_MISMATCH.rpc, 'ERR_HEADER_MISMATCH'],
  [WIRE.ERR_CANCELLED.rpc, 'ERR_CANCELLED'],
])

/**
 * Anything else the SDK emits is mapped by what it must be: a code of JSON-RPC's legacy
 * implementation sub-range (MCP 2026-07-28, Error Codes: -32000 to -32019; the SDK's 2025-era HTTP
 * transport answers a bad request with the first) is a refusal of the request; any other, a
 * failure of the server.
 */
function sdkCode(code: number): SecurityErrorCode {
  const known = SDK_CODES.get(code)
  if (known !== undefined) return known
  return code >= LEGACY_CODES.from && code <= LEGACY_CODES.to ? 'ERR_INVALID_REQUEST' : 'ERR_INTERNAL'
}
// Read from the SDK, never emitted.
const LEGACY_CODES = { from: -32019, to: -32000 }

// Data the specification defines for its errors (the supported versions of -32022, the missing
// capabilities of -32021, the URI of a resource not found, SEP-2164): kept, because clients act on
// it. Everything else the SDK put in `data` (echoed header values, message text) is dropped.
const SPEC_DATA = ['supported', 'requested', 'requiredCapabilities', 'uri'] as const

interface RpcErrorObject {
  code: number
  message: string
  data?: unknown
}

/** Is this JSON-RPC error one bastion rendered (it carries a known `data.code`)? */
function isOurs(error: RpcErrorObject): boolean {
  const data = error.data
  return data !== null && typeof data === 'object' && isSecurityErrorCode((data as { code?: unknown }).code)
}

/** An error object the SDK produced, re-rendered through the table; the SecurityError is for the audit line. */
function fromSdk(error: RpcErrorObject, requestId: string): { error: SecurityError; wire: RpcErrorObject } {
  const data = error.data
  // SEP-2164: a resource not found is invalid params (earlier, its own code) carrying the URI.
  const notFound =
    (error.code === ProtocolErrorCode.InvalidParams || error.code === ProtocolErrorCode.ResourceNotFound) &&
    data !== null &&
    typeof data === 'object' &&
    typeof (data as { uri?: unknown }).uri === 'string'
  const code = notFound ? 'ERR_RESOURCE_NOT_FOUND' : sdkCode(error.code)
  const failure = new SecurityError(code, `the MCP SDK answered ${error.code}: ${String(error.message).slice(0, 300)}`)
  const rendered = rpcError(failure, requestId)
  const kept: Record<string, unknown> = {}
  if (data !== null && typeof data === 'object')
    for (const k of SPEC_DATA) {
      const v = (data as Record<string, unknown>)[k]
      if (Object.hasOwn(data, k) && JSON.stringify(v).length <= 2048) kept[k] = v
    }
  return { error: failure, wire: { code: rendered.code, message: rendered.message, data: { ...kept, ...rendered.data } } }
}

/** The `WWW-Authenticate` value of a refusal (RFC 6750 §3, RFC 9728 §5.1), if it carries one. */
function challengeOf(error: SecurityError, rs: ResourceServer | undefined): string | undefined {
  const kind = WIRE[error.code].challenge
  if (kind === undefined) return undefined
  if (kind === 'insufficient_scope') return rs !== undefined && error instanceof ScopeError ? bearerChallenge(rs, 'insufficient_scope', error.needed) : undefined
  if (rs !== undefined) return bearerChallenge(rs, kind === 'invalid_token' ? 'invalid_token' : undefined, rs.scopesSupported)
  return kind === 'invalid_token' ? `${REALM}, error="invalid_token", error_description="${DESCRIPTIONS.invalid_token}"` : REALM
}

/**
 * The one renderer. Every refusal — bastion's, and the errors the SDK raises itself — leaves the
 * process through here: HTTP status, JSON-RPC error and in-band tool error all come from the WIRE
 * row of its code, with the request id; no library text, stack or path is ever written.
 */
export class Wire {
  readonly #rs: ResourceServer | undefined

  constructor(resourceServer: ResourceServer | undefined) {
    this.#rs = resourceServer
  }

  /** A refusal as a JSON-RPC message (an error, or an in-band tool result for `tool` rows). */
  message(x: Exchange, error: SecurityError): JSONRPCMessage {
    const id = rpcIdOf(x.message)
    if (WIRE[error.code].carrier === 'tool' && id !== null) {
      const result = toolErrorResult(error, x.requestId)
      return { jsonrpc: '2.0', id, result: x.era === 'modern' ? { ...result, resultType: 'complete' } : result }
    }
    // JSON-RPC 2.0 §5: the id is null when it could not be read.
    return { jsonrpc: '2.0', id, error: rpcError(error, x.requestId) } as JSONRPCMessage
  }

  /** A refusal as an HTTP response: the row's status (200 for `rpc` and `tool` rows), its challenge and retry hint. */
  response(x: Exchange, error: SecurityError): Response {
    const row = WIRE[error.code]
    const headers = new Headers({ 'content-type': 'application/json', 'cache-control': 'no-store' })
    const challenge = challengeOf(error, this.#rs)
    if (challenge !== undefined) headers.set('www-authenticate', challenge)
    if (error.code === 'ERR_BODY_TOO_LARGE') headers.set('connection', 'close')
    // RFC 9110 §10.2.3: whole seconds, rounded up so a client that obeys is never early.
    if (error.retryAfterMs !== undefined) headers.set('retry-after', String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))))
    const status = row.carrier === 'http' ? row.http : 200
    return textResponse(JSON.stringify(this.message(x, error)), { status, headers })
  }

  /**
   * An outgoing JSON-RPC message: an error the SDK produced is re-rendered and becomes the
   * request's outcome; the response to the exchange's own request commits its audit line before
   * it leaves (an audit failure replaces it with the refusal it causes).
   */
  async settleMessage(x: Exchange, message: JSONRPCMessage): Promise<JSONRPCMessage> {
    const m = message as { id?: unknown; error?: unknown; result?: unknown }
    const out = this.#rerender(x, message)
    const id = rpcIdOf(x.message)
    if (id === null || m.id !== id || (m.error === undefined && m.result === undefined)) return out
    try {
      await x.audit.commit()
      return out
    } catch (error) {
      return this.message(x, toSecurityError(error))
    }
  }

  /** An error the SDK produced, re-rendered through the table; it becomes the request's outcome. */
  #rerender(x: Exchange, message: JSONRPCMessage): JSONRPCMessage {
    const error = (message as { error?: RpcErrorObject }).error
    if (error === undefined || error === null || typeof error !== 'object' || isOurs(error)) return message
    const mapped = fromSdk(error, x.requestId)
    x.audit.fail(mapped.error)
    return { ...message, error: mapped.wire } as JSONRPCMessage
  }

  /**
   * An SDK response on its way out: JSON bodies are re-rendered whole; an event stream is
   * re-rendered event by event, and the audit line is committed when the request's response
   * passes (or when the stream ends without one).
   */
  async settleResponse(x: Exchange, response: Response): Promise<Response> {
    const type = response.headers.get('content-type') ?? ''
    if (response.body === null || (!type.startsWith('application/json') && !type.startsWith('text/event-stream'))) {
      if (response.status >= 400 && !x.audit.committed)
        x.audit.fail(new SecurityError(response.status === 404 ? 'ERR_NOT_FOUND' : 'ERR_INVALID_REQUEST', `the MCP SDK answered HTTP ${response.status}`))
      await this.#commitOr(x)
      return response
    }
    if (type.startsWith('application/json')) {
      const text = await response.text()
      let body = text
      // Only a body that can hold an error is parsed again; results pass as they are.
      if (text.includes('"error"')) {
        try {
          body = JSON.stringify(this.#rerender(x, JSON.parse(text) as JSONRPCMessage))
        } catch {
          x.audit.fail(new SecurityError('ERR_INTERNAL', 'the MCP SDK answered with a body that is not JSON'))
          body = JSON.stringify(this.message(x, new SecurityError('ERR_INTERNAL', 'unparseable SDK body')))
        }
      }
      // The whole answer is still here: its line is committed once, and a failure is a 503.
      try {
        await x.audit.commit()
      } catch (error) {
        return this.response(x, toSecurityError(error))
      }
      return textResponse(body, { status: response.status, statusText: response.statusText, headers: response.headers })
    }
    // A stream that answers no request of this exchange (GET, or notifications): its line is written now.
    if (rpcIdOf(x.message) === null) {
      try {
        await x.audit.commit({ status: response.status })
      } catch (error) {
        await response.body.cancel().catch(() => undefined)
        return this.response(x, toSecurityError(error))
      }
    }
    return new Response(this.#settleStream(x, response.body), { status: response.status, statusText: response.statusText, headers: response.headers })
  }

  async #commitOr(x: Exchange): Promise<void> {
    try {
      await x.audit.commit()
    } catch {
      // Nothing more can be refused here: the stream already started or there is no body.
    }
  }

  #settleStream(x: Exchange, body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const decoder = new TextDecoder()
    const encoder = new TextEncoder()
    let buffer = ''
    const settleEvent = async (event: string): Promise<string> => {
      // SSE (WHATWG HTML §9.2): the SDK writes one `data:` line per event.
      const lines = event.split('\n')
      const at = lines.findIndex((l) => l.startsWith('data: '))
      const data = at < 0 ? undefined : lines[at]?.slice(6)
      // Notifications and server requests (progress, elicitation) pass untouched: only an answer,
      // which carries a result or an error, can be re-rendered or commit the line.
      if (data === undefined || data.length === 0 || !(data.includes('"result"') || data.includes('"error"'))) return event
      let parsed: JSONRPCMessage
      try {
        parsed = JSON.parse(data) as JSONRPCMessage
      } catch {
        return event
      }
      const settled = await this.settleMessage(x, parsed)
      if (settled === parsed) return event
      lines[at] = `data: ${JSON.stringify(settled)}`
      return lines.join('\n')
    }
    const reader = body.getReader()
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const { done, value } = await reader.read()
        if (done) {
          if (buffer.length > 0) controller.enqueue(encoder.encode(await settleEvent(buffer)))
          await this.#commitOr(x)
          controller.close()
          return
        }
        buffer += decoder.decode(value, { stream: true })
        let out = ''
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          out += `${await settleEvent(buffer.slice(0, end))}\n\n`
          buffer = buffer.slice(end + 2)
        }
        if (out.length > 0) controller.enqueue(encoder.encode(out))
      },
      cancel: async (reason) => {
        await this.#commitOr(x)
        await reader.cancel(reason)
      },
    })
  }
}
