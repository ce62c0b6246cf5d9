import { Client, ProtocolError, SdkHttpError, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { VERSION } from '../version.js'

/** One request of `mcp-bastion call`. */
export type CallRequest =
  | { readonly method: 'tools/list' }
  | { readonly method: 'tools/call'; readonly name: string; readonly args: Readonly<Record<string, unknown>> }
  | { readonly method: 'resources/list' }
  | { readonly method: 'resources/read'; readonly uri: string }
  | { readonly method: 'prompts/list' }
  | { readonly method: 'prompts/get'; readonly name: string; readonly args: Readonly<Record<string, string>> }

export const CALL_METHODS: readonly CallRequest['method'][] = ['tools/list', 'tools/call', 'resources/list', 'resources/read', 'prompts/list', 'prompts/get']

/** A JSON-RPC error as the server sent it (bastion's carry `data.code` and `data.requestId`). */
export interface RpcError {
  readonly code: number
  readonly message: string
  readonly data?: unknown
}

export type CallOutcome =
  | { readonly ok: true; readonly era: string | undefined; readonly result: Record<string, unknown> }
  | { readonly ok: false; readonly era: string | undefined; readonly status?: number; readonly error: RpcError }

export interface CallOptions {
  readonly url: URL
  /** Sent on every request (the credential). */
  readonly headers: Readonly<Record<string, string>>
  /** `auto`: 2026-07-28 if the server offers it, else 2025-11-25 (`server/discover`, then `initialize`). */
  readonly era: 'auto' | 'modern' | 'legacy'
  readonly timeoutMs: number
}

/** The JSON-RPC error in an HTTP error body, if the body is one. */
function rpcErrorOf(text: string): RpcError | undefined {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; data?: unknown } }
    const e = body.error
    if (e !== undefined && typeof e.code === 'number' && typeof e.message === 'string')
      return { code: e.code, message: e.message, ...(e.data === undefined ? {} : { data: e.data }) }
  } catch {
    // Not JSON: reported by status below.
  }
  return undefined
}

/** Turn whatever the client threw into the server's error, as plainly as it was sent. */
function outcomeOf(error: unknown, era: string | undefined): CallOutcome {
  if (error instanceof ProtocolError) return { ok: false, era, error: { code: error.code, message: error.message, ...(error.data === undefined ? {} : { data: error.data }) } }
  if (error instanceof SdkHttpError) {
    const data = error.data as { status?: number; statusText?: string; text?: string } | undefined
    const status = data?.status
    const rpc = rpcErrorOf(data?.text ?? '')
    return {
      ok: false,
      era,
      ...(status === undefined ? {} : { status }),
      error: rpc ?? { code: 0, message: `HTTP ${status ?? '?'} ${data?.statusText ?? ''}`.trim() },
    }
  }
  // A network failure: the system's code (ECONNREFUSED, ENOTFOUND, …) somewhere down the cause chain.
  let code: string | undefined
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && code === undefined && depth < 8; depth++) {
    const c = (e as { code?: unknown }).code
    if (typeof c === 'string' && /^E[A-Z]+$/.test(c)) code = c
    e = (e as { cause?: unknown }).cause
  }
  return { ok: false, era, error: { code: 0, message: code === undefined ? (error instanceof Error ? error.message : 'the request failed') : `cannot connect (${code})` } }
}

/**
 * One MCP request with the SDK's client, over Streamable HTTP, in the era the server offers (or
 * the one asked for): connect, send, close. Errors come back as the server sent them — the
 * JSON-RPC error of an HTTP refusal included — never thrown.
 */
export async function callMcp(options: CallOptions, request: CallRequest): Promise<CallOutcome> {
  const mode = options.era === 'modern' ? { pin: '2026-07-28' } : options.era === 'legacy' ? ('legacy' as const) : ('auto' as const)
  const client = new Client({ name: 'mcp-bastion-call', version: VERSION }, { versionNegotiation: { mode } })
  const transport = new StreamableHTTPClientTransport(options.url, { requestInit: { headers: { ...options.headers } } })
  const timeout = { timeout: options.timeoutMs }
  try {
    await client.connect(transport, timeout)
    const era = client.getNegotiatedProtocolVersion()
    try {
      const result = await send(client, request, timeout)
      return { ok: true, era, result: result as Record<string, unknown> }
    } catch (error) {
      return outcomeOf(error, era)
    }
  } catch (error) {
    return outcomeOf(error, undefined)
  } finally {
    await client.close().catch(() => undefined)
  }
}

function send(client: Client, request: CallRequest, timeout: { timeout: number }): Promise<unknown> {
  switch (request.method) {
    case 'tools/list':
      return client.listTools(undefined, timeout)
    case 'tools/call':
      return client.callTool({ name: request.name, arguments: { ...request.args } }, timeout)
    case 'resources/list':
      return client.listResources(undefined, timeout)
    case 'resources/read':
      return client.readResource({ uri: request.uri }, timeout)
    case 'prompts/list':
      return client.listPrompts(undefined, timeout)
    case 'prompts/get':
      return client.getPrompt({ name: request.name, arguments: { ...request.args } }, timeout)
  }
}
