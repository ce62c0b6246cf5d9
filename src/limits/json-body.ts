import { SecurityError } from '../errors.js'

/**
 * Nesting depth of a JSON text, counted on the raw characters before any parser runs, so a
 * hostile `[[[[…` never reaches a recursive consumer. Linear, no allocation. Strings (and escaped
 * quotes inside them) are skipped. Does not check: that the text is valid JSON (JSON.parse does).
 * @throws SecurityError ERR_JSON_TOO_DEEP as soon as the depth passes `max`.
 */
export function assertJsonDepth(text: string, max: number): void {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c /* \ */) i++
      else if (c === 0x22 /* " */) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > max) throw new SecurityError('ERR_JSON_TOO_DEEP', `JSON nesting deeper than ${max}`, { expose: `nesting deeper than ${max}` })
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth--
  }
}

// Strict: invalid UTF-8 is an error, and a byte-order mark is kept (so JSON.parse refuses it) rather
// than silently dropped; two decoders that disagree about a BOM would see two different bodies.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Parse a request body: byte cap, strict UTF-8, depth cap, then JSON.parse exactly once. The parsed
 * value is the one every later stage sees.
 * @throws SecurityError ERR_BODY_TOO_LARGE, ERR_JSON_TOO_DEEP, ERR_PARSE
 */
export function parseJsonBody(body: Uint8Array | string, limits: { maxBytes: number; maxDepth: number }): unknown {
  const size = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.byteLength
  if (size > limits.maxBytes) throw new SecurityError('ERR_BODY_TOO_LARGE', `body over ${limits.maxBytes} bytes`)
  let text: string
  try {
    text = typeof body === 'string' ? body : UTF8.decode(body)
  } catch {
    throw new SecurityError('ERR_PARSE', 'body is not valid UTF-8')
  }
  assertJsonDepth(text, limits.maxDepth)
  try {
    return JSON.parse(text)
  } catch {
    throw new SecurityError('ERR_PARSE', 'body is not valid JSON')
  }
}
