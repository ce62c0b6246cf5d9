/**
 * Is a shared secret (HS256) guessable? A length check alone passes the example secrets that
 * tutorials and libraries publish and that leaked-secret lists collect: long, but words. This
 * estimates the secret's entropy the way a guesser would attack it — words from a vocabulary,
 * repeated units, a small alphabet — and refuses the well-known examples by name.
 * Does not check: that the secret was never published somewhere this list does not know; a
 * secret that passes is only as good as the random source it came from.
 */

/** Bits a secret must carry: a quarter of an HS256 key's 256 is the least an offline guess must not reach. */
export const MIN_SECRET_BITS = 128

// Example secrets from documentation, tutorials and library defaults (normalised: lower case,
// letters and digits only), at least 32 characters or commonly padded to it.
const KNOWN_EXAMPLES = new Set(
  [
    'your-256-bit-secret',
    'a-string-secret-at-least-256-bits-long',
    'your-512-bit-secret',
    'secret',
    'secretkey',
    'mysecretkey',
    'supersecret',
    'supersecretkey',
    'changeme',
    'changethis',
    'keyboard cat',
    'shhhhh',
    'jwtsecret',
    'jwt_secret_key',
    'your_jwt_secret',
    'your-secret-key',
    'my-secret-key',
    'my_super_secret_key',
    'thisismysecretkey',
    'this-is-a-very-long-secret-key',
    'default',
    'password',
    'qwertyuiopasdfghjklzxcvbnm123456',
    '0123456789abcdef0123456789abcdef',
    'abcdefghijklmnopqrstuvwxyz012345',
  ].map(normal),
)

// The words example and leaked secrets are made of (the first entries of public lists of leaked
// JWT secrets, tutorials' placeholders): about 7 bits each to a guesser who tries them first.
const COMMON_WORDS = new Set(
  (
    'an the this that is it my your our me we you for of to at in on and or with not be very so too ' +
    'secret secrets key keys jwt jwts token tokens signing sign signature auth authentication authorization access refresh ' +
    'password passwd pass passphrase private public super top ultra mega hyper strong secure security safe unsafe random ' +
    'long longer string bit bits byte bytes least minimum change changeme default example sample demo test testing dev ' +
    'development prod production staging local app application api server client service backend frontend web site ' +
    'admin user users session sessions cookie hmac sha hash salt value code my mine shh shhh hush hidden dont tell ' +
    'hello world foo bar baz qwerty abc xyz love god letmein welcome master root system company project team ' +
    'node express spring django flask rails laravel next nest js ts java go rust python ruby php net core'
  ).split(/\s+/),
)
const COMMON_WORD_BITS = 7

function normal(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]/g, '')
}

/**
 * Shannon entropy of the character frequencies, in bits per character, with the Miller–Madow
 * correction: counted from a short text the plain estimate reads low (32 random hex digits would
 * seem to carry 3.6 bits each instead of 4).
 */
function shannon(text: string): number {
  const counts = new Map<string, number>()
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1)
  let bits = 0
  for (const n of counts.values()) {
    const p = n / text.length
    bits -= p * Math.log2(p)
  }
  return bits + (counts.size - 1) / (2 * text.length * Math.LN2)
}

/** The shortest unit the text repeats (the whole text when it repeats nothing). */
function repeatedUnit(text: string): string {
  for (let size = 1; size <= text.length / 2; size++) {
    if (text.length % size !== 0 && text.length - (text.length % size) < size * 2) continue
    const unit = text.slice(0, size)
    // A unit repeated, possibly cut short at the end.
    if (unit.repeat(Math.ceil(text.length / size)).startsWith(text)) return unit
  }
  return text
}

function alphabetOf(text: string): { size: number; name: string } {
  if (/^\d+$/.test(text)) return { size: 10, name: 'decimal' }
  if (/^[0-9a-f]+$/.test(text) || /^[0-9A-F]+$/.test(text)) return { size: 16, name: 'hex' }
  if (/^[0-9a-z]+$/.test(text) || /^[0-9A-Z]+$/.test(text)) return { size: 36, name: 'single-case alphanumeric' }
  if (/^[0-9A-Za-z]+$/.test(text)) return { size: 62, name: 'alphanumeric' }
  if (/^[0-9A-Za-z+/_=-]+$/.test(text)) return { size: 64, name: 'base64' }
  return { size: 94, name: 'printable' }
}

/** A guesser's estimate of the secret's entropy in bits, and what it is made of. */
export function secretStrength(secret: string): { bits: number; shape: string } {
  const unit = repeatedUnit(secret)
  if (unit.length < secret.length) {
    const inner = secretStrength(unit)
    return { bits: inner.bits + Math.log2(secret.length / unit.length + 1), shape: `a ${unit.length}-character unit repeated` }
  }
  // Words: letter runs split where the case changes upward (camelCase), digits apart. A text made
  // mostly of the words example secrets are made of is guessed word by word: a few bits for each of
  // those, 11 (a 2,000-word vocabulary) for any other run. Random text has letter runs too, but
  // almost never these words, so it is never taken for a phrase.
  const runs = secret.match(/[A-Z]?[a-z]+|[A-Z]+(?![a-z])/g) ?? []
  const digits = (secret.match(/\d/g) ?? []).length
  const known = runs.filter((r) => COMMON_WORDS.has(r.toLowerCase())).length
  // Hex digits spell a few of these (be, abc): hex is taken as characters.
  if (!/^[0-9a-fA-F]+$/.test(secret) && known >= 2 && known >= 0.5 * runs.length) {
    return { bits: known * COMMON_WORD_BITS + (runs.length - known) * 11 + digits * Math.log2(10), shape: `${runs.length} word(s)${digits > 0 ? ` and ${digits} digit(s)` : ''}` }
  }
  // Otherwise characters drawn from the smallest alphabet that holds them (hex, alphanumerics,
  // base64, printable), unless their frequencies show less.
  const pool = alphabetOf(secret)
  const steps = [...secret].slice(1).filter((c, i) => Math.abs(c.charCodeAt(0) - secret.charCodeAt(i)) <= 1).length
  if (steps >= secret.length / 2) return { bits: Math.log2(pool.size) * (secret.length - steps), shape: 'mostly a run of neighbouring characters (abc…, 123…)' }
  // Frequencies far below what the alphabet allows mean a few characters dominate; short random
  // text reads a little low by this measure, so only a clear shortfall counts.
  const full = Math.log2(pool.size)
  const measured = shannon(secret)
  const perChar = measured < 0.7 * full ? measured : full
  return { bits: perChar * secret.length, shape: `${secret.length} ${pool.name} characters` }
}

/** Why a secret is too weak to sign tokens with, or undefined when it is not. Never includes the secret. */
export function weakSecretReason(secret: string): string | undefined {
  if (KNOWN_EXAMPLES.has(normal(secret)) || KNOWN_EXAMPLES.has(normal(repeatedUnit(secret)))) return 'it is a published example secret'
  const { bits, shape } = secretStrength(secret)
  if (bits < MIN_SECRET_BITS) return `it carries about ${Math.floor(bits)} bits (${shape}); at least ${MIN_SECRET_BITS} are needed`
  return undefined
}
