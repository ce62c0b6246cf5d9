import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ConsoleSessions, type ConsoleUser, sameSecret } from '../../src/console/sessions.js'

/** A clock the test moves by hand: the sessions' only notion of time. */
function clock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
  }
}

const user = (keyId: string, admin = true): ConsoleUser => ({ principal: `key:${keyId}`, keyId, name: keyId, roles: ['admin'], admin })

const IDLE = 30 * 60_000
const ABSOLUTE = 12 * 3_600_000
const TOKEN = /^[A-Za-z0-9_-]{43}$/

function sessions(max = 100): { s: ConsoleSessions; c: ReturnType<typeof clock> } {
  const c = clock()
  return { s: new ConsoleSessions({ idleMs: IDLE, absoluteMs: ABSOLUTE, max }, c.now), c }
}

describe('ConsoleSessions', () => {
  it('a new session is found by its token, for its user, with a CSRF token of its own', () => {
    const { s } = sessions()
    const { token, session } = s.create(user('aaaaaaaaaaaaaaaa'))
    expect(s.get(token)).toBe(session)
    expect(session.user.keyId).toBe('aaaaaaaaaaaaaaaa')
    expect(session.csrf).toMatch(TOKEN)
    expect(session.csrf).not.toBe(token)
    // The CSRF token is not a second cookie: it opens nothing.
    expect(s.get(session.csrf)).toBeUndefined()
  })

  it('tokens and CSRF tokens are 43 base64url characters (256 bits) and never repeat', () => {
    const { s } = sessions(1000)
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const { token, session } = s.create(user(`k${i}`.padEnd(16, '0')))
      expect(token).toMatch(TOKEN)
      expect(session.csrf).toMatch(TOKEN)
      seen.add(token)
      seen.add(session.csrf)
    }
    expect(seen.size).toBe(400)
  })

  it('idle timeout: unused for idleMs ends the session (one millisecond less does not)', () => {
    const a = sessions()
    const first = a.s.create(user('aaaaaaaaaaaaaaaa'))
    a.c.advance(IDLE - 1)
    expect(a.s.get(first.token)).toBe(first.session)

    const b = sessions()
    const second = b.s.create(user('bbbbbbbbbbbbbbbb'))
    b.c.advance(IDLE)
    expect(b.s.get(second.token)).toBeUndefined()
    // Ended for good: moving on does not bring it back, and the store let go of it.
    expect(b.s.get(second.token)).toBeUndefined()
    expect(b.s.size).toBe(0)
  })

  it('sliding renewal: each use restarts the idle time', () => {
    const { s, c } = sessions()
    const { token, session } = s.create(user('aaaaaaaaaaaaaaaa'))
    for (let i = 0; i < 10; i++) {
      c.advance(IDLE - 1000)
      expect(s.get(token)).toBe(session)
    }
    // Ten idle periods have passed since sign-in; the last use was IDLE - 1000 ago.
    expect(session.lastSeenAt - session.createdAt).toBe(10 * (IDLE - 1000))
    c.advance(IDLE)
    expect(s.get(token)).toBeUndefined()
  })

  it('absolute timeout: absoluteMs after sign-in the session ends however busy it is', () => {
    const { s, c } = sessions()
    const { token } = s.create(user('aaaaaaaaaaaaaaaa'))
    const step = IDLE / 2
    let elapsed = 0
    while (elapsed + step < ABSOLUTE) {
      c.advance(step)
      elapsed += step
      expect(s.get(token)).toBeDefined()
    }
    c.advance(ABSOLUTE - elapsed)
    expect(s.get(token)).toBeUndefined()
  })

  it('past max sessions the least recently used ends, not the oldest', () => {
    const { s, c } = sessions(3)
    const a = s.create(user('aaaaaaaaaaaaaaaa'))
    c.advance(1)
    const b = s.create(user('bbbbbbbbbbbbbbbb'))
    c.advance(1)
    const d = s.create(user('dddddddddddddddd'))
    c.advance(1)
    // a is the oldest by sign-in but used last: b is now the least recently used.
    expect(s.get(a.token)).toBe(a.session)
    const e = s.create(user('eeeeeeeeeeeeeeee'))
    expect(s.size).toBe(3)
    expect(s.get(b.token)).toBeUndefined()
    for (const kept of [a, d, e]) expect(s.get(kept.token)).toBe(kept.session)
  })

  it('an expired session frees its place before a live one is evicted', () => {
    const { s, c } = sessions(2)
    const old = s.create(user('aaaaaaaaaaaaaaaa'))
    // Keep `old` busy until just before its absolute end, then sign in `live`, then use `old` last.
    let elapsed = 0
    while (elapsed + IDLE / 2 < ABSOLUTE - 1000) {
      c.advance(IDLE / 2)
      elapsed += IDLE / 2
      expect(s.get(old.token)).toBe(old.session)
    }
    const live = s.create(user('bbbbbbbbbbbbbbbb'))
    c.advance(500)
    expect(s.get(old.token)).toBe(old.session)
    // `live` is now the least recently used, but `old` passes its absolute end: it must go, not `live`.
    c.advance(ABSOLUTE - elapsed)
    const third = s.create(user('cccccccccccccccc'))
    expect(s.size).toBe(2)
    expect(s.get(live.token)).toBe(live.session)
    expect(s.get(third.token)).toBe(third.session)
    expect(s.get(old.token)).toBeUndefined()
  })

  it('end() ends only the session it names', () => {
    const { s } = sessions()
    const a = s.create(user('aaaaaaaaaaaaaaaa'))
    const b = s.create(user('aaaaaaaaaaaaaaaa'))
    s.end(a.token)
    expect(s.get(a.token)).toBeUndefined()
    expect(s.get(b.token)).toBe(b.session)
    // Ending nothing or an unknown token is harmless.
    s.end(undefined)
    s.end('x'.repeat(43))
    expect(s.get(b.token)).toBe(b.session)
  })

  it('endKey() ends every session of that key and no other', () => {
    const { s } = sessions()
    const mine = [s.create(user('aaaaaaaaaaaaaaaa')), s.create(user('aaaaaaaaaaaaaaaa', false)), s.create(user('aaaaaaaaaaaaaaaa'))]
    const other = s.create(user('bbbbbbbbbbbbbbbb'))
    expect(s.endKey('aaaaaaaaaaaaaaaa')).toBe(3)
    for (const m of mine) expect(s.get(m.token)).toBeUndefined()
    expect(s.get(other.token)).toBe(other.session)
    expect(s.endKey('aaaaaaaaaaaaaaaa')).toBe(0)
  })

  it.each([
    { name: 'undefined', mutate: (_t: string): string | undefined => undefined },
    { name: 'empty', mutate: (_t: string) => '' },
    { name: 'one character short', mutate: (t: string) => t.slice(0, 42) },
    { name: 'one character more', mutate: (t: string) => `${t}A` },
    { name: 'with base64 padding', mutate: (t: string) => `${t}=` },
    { name: 'trailing space', mutate: (t: string) => `${t} ` },
    { name: 'leading space', mutate: (t: string) => ` ${t}` },
    { name: 'last character changed', mutate: (t: string) => `${t.slice(0, 42)}${t.endsWith('A') ? 'B' : 'A'}` },
    { name: 'first character changed', mutate: (t: string) => `${t.startsWith('A') ? 'B' : 'A'}${t.slice(1)}` },
    { name: 'standard base64 alphabet', mutate: (t: string) => t.replaceAll('-', '+').replaceAll('_', '/').replace(/^./, '+') },
    { name: 'upper-cased', mutate: (t: string) => (t.toUpperCase() === t ? t.toLowerCase() : t.toUpperCase()) },
    { name: 'NUL appended inside 43', mutate: (t: string) => `${t.slice(0, 42)}\u0000` },
    { name: 'SHA-256 hex of the token (what the store keys by)', mutate: (t: string) => createHash('sha256').update(t).digest('hex') },
    { name: 'SHA-256 base64url of the token (43 characters)', mutate: (t: string) => createHash('sha256').update(t).digest('base64url') },
  ])('a malformed or altered token never matches: $name', ({ mutate }) => {
    const { s } = sessions()
    const { token, session } = s.create(user('aaaaaaaaaaaaaaaa'))
    const altered = mutate(token)
    expect(altered).not.toBe(token)
    expect(s.get(altered)).toBeUndefined()
    // The real session is untouched by the attempt.
    expect(s.get(token)).toBe(session)
  })

  it('the store keeps digests: no stored key is the token, and its digest opens nothing', () => {
    const { s } = sessions()
    const { token } = s.create(user('aaaaaaaaaaaaaaaa'))
    const hex = createHash('sha256').update(token).digest('hex')
    const b64 = createHash('sha256').update(token).digest('base64url')
    expect(b64).toMatch(TOKEN)
    expect(s.get(hex)).toBeUndefined()
    expect(s.get(b64)).toBeUndefined()
    // Nothing enumerable on the instance holds the token (the map is a private field).
    expect(JSON.stringify(s)).not.toContain(token)
    expect(Object.values(s).map(String).join(' ')).not.toContain(token)
  })

  it('sameSecret compares by value, whatever the lengths', () => {
    expect(sameSecret('abc', 'abc')).toBe(true)
    expect(sameSecret('abc', 'abd')).toBe(false)
    expect(sameSecret('abc', 'abcd')).toBe(false)
    expect(sameSecret('', '')).toBe(true)
    expect(sameSecret('', 'a')).toBe(false)
  })
})
