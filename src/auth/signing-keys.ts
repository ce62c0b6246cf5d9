import { randomUUID } from 'node:crypto'
import { statSync } from 'node:fs'
import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose'
import { readJsonFile, updateJsonFile } from '../config/json-file.js'

export const SIGNING_ALG = 'ES256'

interface StoredSigningKey {
  readonly kid: string
  readonly privateJwk: JWK
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
 * bastion's own token signing keys (ES256), in a 0600 file in the state directory. One key signs;
 * older keys keep verifying until `accessTokenSeconds` after they were retired, then drop out.
 * A rotation by another process (the CLI) is picked up on the next use.
 * Does not check: who can read the file (the state directory is 0700).
 */
export class SigningKeys {
  readonly path: string
  readonly #accessTtlMs: number
  #file: SigningFile = { version: 1, keys: [] }
  #stamp = ''

  constructor(path: string, accessTokenSeconds: number) {
    this.path = path
    this.#accessTtlMs = accessTokenSeconds * 1000
  }

  /** Load, creating a first key if there is none. */
  async init(): Promise<void> {
    this.#reload()
    if (this.#file.keys.length === 0) await this.rotate()
  }

  #reload(): void {
    let stamp: string
    try {
      const st = statSync(this.path)
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`
    } catch {
      stamp = 'missing'
    }
    if (stamp === this.#stamp) return
    this.#file = parse(readJsonFile(this.path))
    this.#stamp = stamp
  }

  /** Make a new key the signer; the previous one is retired (still verifying). Returns the new kid. */
  async rotate(): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(SIGNING_ALG, { extractable: true })
    const kid = randomUUID()
    const entry: StoredSigningKey = {
      kid,
      privateJwk: { ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALG },
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: SIGNING_ALG, use: 'sig' },
      createdAt: Date.now(),
      retiredAt: null,
    }
    const now = Date.now()
    this.#file = updateJsonFile(this.path, parse, (current) => ({
      version: 1,
      keys: [...current.keys.filter((k) => k.retiredAt === null || k.retiredAt + this.#accessTtlMs > now).map((k) => (k.retiredAt === null ? { ...k, retiredAt: now } : k)), entry],
    }))
    this.#stamp = ''
    return kid
  }

  /** The signing key now. */
  async signer(): Promise<{ kid: string; key: Awaited<ReturnType<typeof importJWK>> }> {
    this.#reload()
    const active = this.#file.keys.find((k) => k.retiredAt === null)
    if (active === undefined) throw new Error('no active signing key')
    return { kid: active.kid, key: await importJWK(active.privateJwk, SIGNING_ALG) }
  }

  /** Public keys that still verify: the JWKS served at /.well-known/jwks.json. */
  jwks(): { keys: JWK[] } {
    this.#reload()
    const now = Date.now()
    return { keys: this.#file.keys.filter((k) => k.retiredAt === null || k.retiredAt + this.#accessTtlMs > now).map((k) => k.publicJwk) }
  }
}
