import { randomUUID } from 'node:crypto'
import { createLocalJWKSet, exportJWK, generateKeyPair, importJWK, type JWK, type JWTVerifyGetKey } from 'jose'
import { JsonFileView } from '../config/json-file.js'
import { Keyring } from '../protect/keyring.js'

export const SIGNING_ALG = 'ES256'

interface StoredSigningKey {
  readonly kid: string
  /** The private key, encrypted under the keyring (bound to the kid). */
  readonly privateEnvelope?: string
  /** Files written before encryption at rest: re-encrypted by `mcp-bastion secrets rotate`. */
  readonly privateJwk?: JWK
  readonly publicJwk: JWK
  readonly createdAt: number
  /** When a newer key took over; it still verifies until its last token expires. */
  readonly retiredAt: number | null
}

interface SigningFile {
  readonly version: 1
  readonly keys: StoredSigningKey[]
}

function parse(value: unknown): SigningFile {
  if (value === undefined) return { version: 1, keys: [] }
  if (value === null || typeof value !== 'object' || !Array.isArray((value as SigningFile).keys)) throw new Error('signing key file is corrupt')
  return value as SigningFile
}

/**
 * bastion's own token signing keys (ES256), in a 0600 file in the state directory, private parts
 * encrypted at rest under the keyring. One key signs;
 * older keys keep verifying until `accessTokenSeconds` after they were retired, then drop out.
 * A rotation by another process (the CLI) is picked up on the next use.
 * Does not check: who can read the file (the state directory is 0700).
 */
export class SigningKeys {
  readonly path: string
  readonly #accessTtlMs: number
  readonly #file: JsonFileView<SigningFile>
  readonly #keyring: () => Keyring

  constructor(path: string, accessTokenSeconds: number, keyring: () => Keyring) {
    this.path = path
    this.#accessTtlMs = accessTokenSeconds * 1000
    this.#keyring = keyring
    // Consulted on every verification of one of bastion's own tokens: a rotation by the CLI is
    // picked up within a second.
    this.#file = new JsonFileView(path, parse, 1000)
  }

  /** Load, creating a first key if there is none. */
  async init(): Promise<void> {
    if (this.#file.read().keys.length === 0) await this.rotate()
  }

  /** Make a new key the signer; the previous one is retired (still verifying). Returns the new kid. */
  async rotate(): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(SIGNING_ALG, { extractable: true })
    const kid = randomUUID()
    const entry: StoredSigningKey = {
      kid,
      privateEnvelope: this.#keyring().encrypt(JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALG }), `signing-key:${kid}`),
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: SIGNING_ALG, use: 'sig' },
      createdAt: Date.now(),
      retiredAt: null,
    }
    const now = Date.now()
    this.#file.update((current) => ({
      version: 1,
      keys: [...current.keys.filter((k) => k.retiredAt === null || k.retiredAt + this.#accessTtlMs > now).map((k) => (k.retiredAt === null ? { ...k, retiredAt: now } : k)), entry],
    }))
    return kid
  }

  /** The signing key now. */
  async signer(): Promise<{ kid: string; key: Awaited<ReturnType<typeof importJWK>> }> {
    const active = this.#file.read().keys.find((k) => k.retiredAt === null)
    if (active === undefined) throw new Error('no active signing key')
    const jwk = active.privateEnvelope === undefined ? active.privateJwk : (JSON.parse(this.#keyring().decrypt(active.privateEnvelope, `signing-key:${active.kid}`)) as JWK)
    if (jwk === undefined) throw new Error(`signing key ${active.kid} has no private part`)
    return { kid: active.kid, key: await importJWK(jwk, SIGNING_ALG) }
  }

  /** Re-encrypt every private key not under the keyring's active key. Returns how many changed. */
  reencrypt(keyring: Keyring): number {
    let changed = 0
    this.#file.update((current) => ({
      version: 1,
      keys: current.keys.map((k) => {
        if (k.privateEnvelope !== undefined && Keyring.keyIdOf(k.privateEnvelope) === keyring.activeId) return k
        const purpose = `signing-key:${k.kid}`
        const plain = k.privateEnvelope === undefined ? JSON.stringify(k.privateJwk) : keyring.decrypt(k.privateEnvelope, purpose)
        changed += 1
        const { privateJwk: _legacy, ...rest } = k
        return { ...rest, privateEnvelope: keyring.encrypt(plain, purpose) }
      }),
    }))
    return changed
  }

  /**
   * The verification key set, for `jwtVerify`: rebuilt only when the set of keys changes, so keys
   * are imported once, not on every verification.
   */
  keySet(): JWTVerifyGetKey {
    return (header, token) => {
      const jwks = this.jwks()
      const kids = jwks.keys.map((k) => k.kid).join(',')
      if (this.#keySet?.kids !== kids) this.#keySet = { kids, get: createLocalJWKSet(jwks) }
      return this.#keySet.get(header, token)
    }
  }

  #keySet: { kids: string; get: JWTVerifyGetKey } | undefined

  /** Public keys that still verify: the JWKS served at /.well-known/jwks.json. */
  jwks(): { keys: JWK[] } {
    const now = Date.now()
    return {
      keys: this.#file
        .read()
        .keys.filter((k) => k.retiredAt === null || k.retiredAt + this.#accessTtlMs > now)
        .map((k) => k.publicJwk),
    }
  }
}
