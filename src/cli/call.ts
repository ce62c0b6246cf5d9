import { readFileSync } from 'node:fs'
import { isLoopback } from '../config/urls.js'
import { CALL_METHODS, type CallOutcome, type CallRequest, callMcp } from '../transport/call-client.js'
import { CALL } from './commands.js'
import { EXIT, type Parsed, UsageError } from './usage.js'

/** `--arg k=v` (a string) and `--arg k:=JSON` (any JSON value), httpie's convention. */
function parseArgs(items: readonly string[], jsonText: string | undefined): Record<string, unknown> {
  let out: Record<string, unknown> = {}
  if (jsonText !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(jsonText)
    } catch {
      throw new UsageError(CALL, '--args: not JSON')
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(CALL, '--args: a JSON object')
    out = { ...(parsed as Record<string, unknown>) }
  }
  for (const item of items) {
    const json = /^([^=:]+):=(.*)$/s.exec(item)
    const plain = /^([^=]+)=(.*)$/s.exec(item)
    if (json?.[1] !== undefined) {
      try {
        out[json[1]] = JSON.parse(json[2] ?? '')
      } catch {
        throw new UsageError(CALL, `--arg ${json[1]}:=…: the value is not JSON`)
      }
    } else if (plain?.[1] !== undefined) out[plain[1]] = plain[2] ?? ''
    else throw new UsageError(CALL, `--arg ${item.slice(0, 40)}: write NAME=TEXT or NAME:=JSON`)
  }
  return out
}

function requestOf(p: Parsed): CallRequest {
  const given = p.positionals[1]
  const tool = p.string('tool')
  const prompt = p.string('prompt')
  const uri = p.string('uri')
  const method = given ?? (tool !== undefined ? 'tools/call' : prompt !== undefined ? 'prompts/get' : uri !== undefined ? 'resources/read' : 'tools/list')
  if (!(CALL_METHODS as readonly string[]).includes(method)) throw new UsageError(CALL, `METHOD ${method.slice(0, 40)}: one of ${CALL_METHODS.join(', ')}`)
  const args = parseArgs(p.strings('arg'), p.string('args'))
  switch (method as CallRequest['method']) {
    case 'tools/call':
      if (tool === undefined) throw new UsageError(CALL, 'tools/call needs --tool NAME')
      return { method: 'tools/call', name: tool, args }
    case 'prompts/get':
      if (prompt === undefined) throw new UsageError(CALL, 'prompts/get needs --prompt NAME')
      return { method: 'prompts/get', name: prompt, args: Object.fromEntries(Object.entries(args).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])) }
    case 'resources/read':
      if (uri === undefined) throw new UsageError(CALL, 'resources/read needs --uri URI')
      return { method: 'resources/read', uri }
    default:
      return { method: method as 'tools/list' | 'resources/list' | 'prompts/list' }
  }
}

/** `ID:SECRET@TOKEN_URL` (the secret may also come from $MCP_CLIENT_SECRET: `ID@TOKEN_URL`). */
function parseClientCredentials(text: string): { id: string; secret: string; tokenUrl: URL } {
  const at = text.search(/@https?:\/\//)
  if (at < 0) throw new UsageError(CALL, '--client-credentials: write ID:SECRET@TOKEN_URL')
  const who = text.slice(0, at)
  const colon = who.indexOf(':')
  const id = colon < 0 ? who : who.slice(0, colon)
  const secret = colon < 0 ? (process.env.MCP_CLIENT_SECRET ?? '') : who.slice(colon + 1)
  if (id === '' || secret === '') throw new UsageError(CALL, '--client-credentials: a client id and a secret (after the colon, or in $MCP_CLIENT_SECRET)')
  let tokenUrl: URL
  try {
    tokenUrl = new URL(text.slice(at + 1))
  } catch {
    throw new UsageError(CALL, '--client-credentials: the token URL is not a URL')
  }
  if (tokenUrl.protocol !== 'https:' && !isLoopback(tokenUrl.hostname))
    throw new UsageError(CALL, '--client-credentials: the token URL must be https (plain http only to loopback)')
  return { id, secret, tokenUrl }
}

/** An access token by the client credentials grant (RFC 6749 §4.4), client_secret_basic, with `openid-client`. */
async function clientCredentialsToken(c: { id: string; secret: string; tokenUrl: URL }): Promise<string> {
  const oidc = await import('openid-client')
  const config = new oidc.Configuration({ issuer: c.tokenUrl.origin, token_endpoint: c.tokenUrl.href }, c.id, undefined, oidc.ClientSecretBasic(c.secret))
  if (c.tokenUrl.protocol === 'http:') oidc.allowInsecureRequests(config)
  const tokens = await oidc.clientCredentialsGrant(config)
  return tokens.access_token
}

/** The one credential of the command line, as a header; none when no option gives one. */
function keyOf(p: Parsed): string | undefined {
  const key = p.string('key')
  const file = p.string('key-file')
  if (key !== undefined && file !== undefined) throw new UsageError(CALL, 'give --key or --key-file, not both')
  if (file !== undefined) {
    try {
      return readFileSync(file, 'utf8').trim()
    } catch (error) {
      throw new UsageError(CALL, `--key-file ${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
  }
  return key ?? (process.env.MCP_API_KEY || undefined)
}

/** The server's refusal as one plain line: its code, text and request id. */
function describeError(outcome: Extract<CallOutcome, { ok: false }>): string {
  const data = outcome.error.data as { code?: unknown; requestId?: unknown } | undefined
  const code = typeof data?.code === 'string' ? `${data.code} (${outcome.error.code})` : `error ${outcome.error.code}`
  const status = outcome.status === undefined ? '' : `, HTTP ${outcome.status}`
  const id = typeof data?.requestId === 'string' ? ` (request id ${data.requestId})` : ''
  return `${code}${status}: ${outcome.error.message}${id}`
}

const textOf = (blocks: unknown): string[] =>
  (Array.isArray(blocks) ? blocks : []).map((b: { type?: string; text?: string; mimeType?: string; resource?: { text?: string; uri?: string } }) =>
    b.type === 'text'
      ? (b.text ?? '')
      : b.type === 'resource'
        ? (b.resource?.text ?? `[resource ${b.resource?.uri ?? ''}]`)
        : `[${b.type ?? 'content'}${b.mimeType === undefined ? '' : ` ${b.mimeType}`}]`,
  )

/** What people read of a result. */
function render(request: CallRequest, result: Record<string, unknown>): string {
  const first = (s: unknown): string => (typeof s === 'string' ? (s.split('\n')[0] ?? '') : '')
  switch (request.method) {
    case 'tools/list':
      return (result.tools as { name: string; description?: string }[]).map((t) => `${t.name}  ${first(t.description)}`).join('\n')
    case 'resources/list':
      return (result.resources as { uri: string; name: string }[]).map((r) => `${r.uri}  ${r.name}`).join('\n')
    case 'prompts/list':
      return (result.prompts as { name: string; description?: string }[]).map((x) => `${x.name}  ${first(x.description)}`).join('\n')
    case 'resources/read':
      return (result.contents as { text?: string; blob?: string; mimeType?: string }[])
        .map((c) => c.text ?? `[binary ${Buffer.from(c.blob ?? '', 'base64').length} bytes${c.mimeType === undefined ? '' : ` ${c.mimeType}`}]`)
        .join('\n')
    case 'prompts/get':
      return (result.messages as { role: string; content: unknown }[]).map((m) => `${m.role}: ${textOf([m.content]).join('')}`).join('\n')
    case 'tools/call': {
      const texts = textOf(result.content)
      return texts.length > 0 ? texts.join('\n') : JSON.stringify(result.structuredContent ?? {}, null, 2)
    }
  }
}

/**
 * `call URL [METHOD] [--tool NAME --arg k=v …]`: one request with the SDK's client, in the era the
 * server offers; the result on stdout, a refusal on stderr as the server's code, text and request
 * id. Exit 0 on a result, 1 on a refusal or a tool error, 2 on a usage mistake.
 */
export async function call(p: Parsed): Promise<number> {
  const raw = p.positionals[0] ?? ''
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new UsageError(CALL, `URL ${raw.slice(0, 200)}: not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(CALL, 'URL: http or https only')
  const request = requestOf(p)
  const era = p.string('era') ?? 'auto'
  if (era !== 'auto' && era !== 'modern' && era !== 'legacy') throw new UsageError(CALL, '--era: auto, modern or legacy')
  const seconds = Number(p.string('timeout') ?? '30')
  if (!(seconds > 0 && seconds <= 3600)) throw new UsageError(CALL, '--timeout: seconds, 1 to 3600')
  const credentials = p.string('client-credentials')
  const key = keyOf(p)
  if (credentials !== undefined && key !== undefined) throw new UsageError(CALL, 'give an API key or --client-credentials, not both')
  const client = credentials === undefined ? undefined : parseClientCredentials(credentials)
  const send = async (): Promise<CallOutcome> => {
    let bearer = key
    if (client !== undefined) {
      try {
        bearer = await clientCredentialsToken(client)
      } catch (error) {
        // openid-client: an OAuth error body (`error`), a 401 challenge (`status`), or a transport failure.
        const e = error as { error?: string; status?: number; message?: string }
        const why = e.error ?? (e.status === undefined ? (e.message ?? 'error') : `HTTP ${e.status}`)
        return { ok: false, era: undefined, error: { code: 0, message: `the token endpoint refused the client: ${why}` } }
      }
    }
    return callMcp({ url, headers: bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }, era, timeoutMs: seconds * 1000 }, request)
  }
  let outcome = await send()
  // A token that expired or was revoked between the grant and the call: a new one, once.
  if (!outcome.ok && client !== undefined && outcome.status === 401) outcome = await send()
  if (p.flag('json')) {
    process.stdout.write(`${JSON.stringify(outcome, null, 2)}\n`)
    return outcome.ok && outcome.result.isError !== true ? EXIT.ok : EXIT.failed
  }
  if (!outcome.ok) {
    process.stderr.write(`mcp-bastion call: ${describeError(outcome)}\n`)
    return EXIT.failed
  }
  const text = render(request, outcome.result)
  if (outcome.result.isError === true) {
    const meta = (outcome.result._meta as Record<string, { code?: string }> | undefined)?.['bastion/error']
    process.stderr.write(`mcp-bastion call: tool error${meta?.code === undefined ? '' : ` ${meta.code}`}: ${text}\n`)
    return EXIT.failed
  }
  process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`)
  return EXIT.ok
}
