import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { SecurityError } from '../errors.js'

/** The fields a reader puts in its cursors: short names, strings and whole numbers only. */
export type CursorFields = Readonly<Record<string, string | number>>

const MAX_CURSOR = 512

/**
 * Opaque cursors: base64url JSON, then a MAC under a key made when the reader starts, so a cursor
 * is one this reader made (a client cannot point a page at a byte offset it chose). A cursor from
 * before a restart, or from another reader, is refused like a malformed one.
 * Does not check: that the position still holds the same line (the reader checks that it exists).
 */
export class CursorCodec {
  readonly #key = randomBytes(32)

  encode(fields: CursorFields): string {
    const body = Buffer.from(JSON.stringify(fields)).toString('base64url')
    return `${body}.${this.#mac(body)}`
  }

  /**
   * The fields of a cursor this codec made, each of the type `shape` names.
   * @throws SecurityError ERR_INVALID_REQUEST for anything else
   */
  decode<S extends Readonly<Record<string, 'string' | 'number'>>>(cursor: unknown, shape: S): { readonly [K in keyof S]: S[K] extends 'string' ? string : number } {
    const invalid = (why: string): SecurityError => new SecurityError('ERR_INVALID_REQUEST', `invalid trail cursor: ${why}`)
    if (typeof cursor !== 'string' || cursor.length > MAX_CURSOR) throw invalid('not a cursor')
    const dot = cursor.indexOf('.')
    const body = cursor.slice(0, dot)
    const mac = cursor.slice(dot + 1)
    if (dot < 1 || !/^[A-Za-z0-9_-]+$/.test(body) || !/^[A-Za-z0-9_-]{43}$/.test(mac)) throw invalid('malformed')
    const expected = Buffer.from(this.#mac(body), 'base64url')
    const given = Buffer.from(mac, 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid('not made by this reader (stale or altered)')
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
    } catch {
      throw invalid('malformed')
    }
    if (typeof parsed !== 'object' || parsed === null) throw invalid('malformed')
    const out = new Map<string, string | number>()
    for (const [name, type] of Object.entries(shape)) {
      const value: unknown = Object.hasOwn(parsed, name) ? (parsed as Record<string, unknown>)[name] : undefined
      if (type === 'number' ? !Number.isSafeInteger(value) || (value as number) < 0 : typeof value !== 'string') throw invalid(`field ${name}`)
      out.set(name, value as string | number)
    }
    return Object.fromEntries(out) as { readonly [K in keyof S]: S[K] extends 'string' ? string : number }
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url')
  }
}
