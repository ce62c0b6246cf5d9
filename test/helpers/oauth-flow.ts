import { createHash, randomBytes } from 'node:crypto'

/** What a client keeps from the code flow. */
export interface FlowResult {
  readonly clientId: string
  readonly redirectUri: string
  readonly status: number
  readonly tokens: { access_token?: string; refresh_token?: string; error?: string; scope?: string }
}

const form = (fields: Record<string, string>): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields),
})

/** The hidden `flow` field of a sign-in or consent page. */
export function flowField(page: string): string {
  const flow = /name="flow" value="([^"]+)"/.exec(page)?.[1]
  if (flow === undefined) throw new Error(`no flow field in the page: ${page.slice(0, 300)}`)
  return flow
}

/**
 * The whole authorization code flow as a browser and a public client would run it, by fetch: DCR
 * registration (unless a client id is given), the authorization request with PKCE, sign-in with
 * an API key, consent, and the token request.
 */
export async function codeFlow(origin: string, apiKey: string, options: { clientId?: string; redirectUri?: string; scope?: string } = {}): Promise<FlowResult> {
  const redirectUri = options.redirectUri ?? 'http://127.0.0.1:9/callback'
  let clientId = options.clientId
  if (clientId === undefined) {
    const registered = await fetch(`${origin}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: [redirectUri], client_name: 'Test client', token_endpoint_auth_method: 'none' }),
    })
    if (registered.status !== 201) throw new Error(`registration answered ${registered.status}: ${await registered.text()}`)
    clientId = ((await registered.json()) as { client_id: string }).client_id
  }
  const verifier = randomBytes(32).toString('base64url')
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    state: randomBytes(8).toString('hex'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    resource: `${origin}/mcp`,
    ...(options.scope === undefined ? {} : { scope: options.scope }),
  })
  const start = await fetch(`${origin}/oauth/authorize?${query}`)
  if (start.status !== 200) throw new Error(`authorize answered ${start.status}: ${(await start.text()).slice(0, 300)}`)
  const cookie = (start.headers.get('set-cookie') ?? '').split(';')[0] ?? ''
  const post = (fields: Record<string, string>): Promise<Response> =>
    fetch(`${origin}/oauth/authorize`, { ...form(fields), redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin } })
  let answer = await post({ flow: flowField(await start.text()), action: 'key', api_key: apiKey })
  if (answer.status === 200) answer = await post({ flow: flowField(await answer.text()), action: 'allow' })
  if (answer.status !== 303) throw new Error(`sign-in answered ${answer.status}: ${(await answer.text()).slice(0, 300)}`)
  const back = new URL(answer.headers.get('location') ?? '')
  const code = back.searchParams.get('code')
  if (code === null) throw new Error(`no code in the redirect: ${back.href}`)
  const token = await fetch(`${origin}/oauth/token`, form({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: clientId }))
  return { clientId, redirectUri, status: token.status, tokens: (await token.json()) as FlowResult['tokens'] }
}

/** A refresh by a public client. */
export async function refresh(origin: string, clientId: string, refreshToken: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${origin}/oauth/token`, form({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }))
  return { status: r.status, body: (await r.json()) as Record<string, unknown> }
}
