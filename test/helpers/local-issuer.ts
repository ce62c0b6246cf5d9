import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'

export interface LocalIssuer {
  /** `http://127.0.0.1:<port>`: the `iss` of every token and the base of `/jwks`. */
  readonly issuer: string
  readonly jwksUri: string
  /** An ES256 token for `audience`, valid five minutes; `claims` are written as given (any type). */
  sign(audience: string, claims: Record<string, unknown>): Promise<string>
  close(): Promise<void>
}

/**
 * A minimal token issuer on loopback: one ES256 key served as a JWKS. Claims go into the payload
 * exactly as given, so a test can mint what an attacker's (or a careless) signer would.
 */
export async function startLocalIssuer(): Promise<LocalIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'local-es256', alg: 'ES256', use: 'sig' }
  const server: Server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json')
    if (req.method === 'GET' && req.url === '/jwks') res.end(JSON.stringify({ keys: [jwk] }))
    else res.writeHead(404).end('{}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const now = (): number => Math.floor(Date.now() / 1000)
  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    sign: (audience, claims) =>
      new SignJWT({ iss: issuer, aud: audience, iat: now(), exp: now() + 300, ...claims }).setProtectedHeader({ alg: 'ES256', kid: jwk.kid ?? '' }).sign(privateKey),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
