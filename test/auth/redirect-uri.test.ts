import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isNativeRedirect, redirectKind, redirectMatches } from '../../src/auth/redirect-uri.js'

const WEB = 'https://app.example/cb'
const LOOP = 'http://127.0.0.1/cb'

describe('redirectKind: what a client may register', () => {
  const ROWS: { uri: string; kind: string }[] = [
    { uri: WEB, kind: 'https' },
    { uri: LOOP, kind: 'loopback' },
    { uri: 'http://[::1]:8080/cb', kind: 'loopback' },
    { uri: 'http://localhost/cb', kind: 'loopback' },
    { uri: 'com.example.app:/cb', kind: 'private-use' },
    { uri: 'https://app.example/cb#x', kind: 'has a fragment' },
    { uri: 'https://app.example/cb#', kind: 'has a fragment' },
    { uri: 'https://user@app.example/cb', kind: 'has user information' },
    { uri: 'https://:pw@app.example/cb', kind: 'has user information' },
    { uri: 'http://app.example/cb', kind: 'loopback hosts only' },
    { uri: 'http://127.0.0.2/cb', kind: 'loopback hosts only' },
    { uri: 'http://localhost.evil.example/cb', kind: 'loopback hosts only' },
    { uri: 'javascript:alert(1)', kind: 'scheme javascript:' },
    { uri: 'data:text/html,x', kind: 'scheme data:' },
    { uri: 'file:///etc/passwd', kind: 'scheme file:' },
    { uri: 'myapp:/cb', kind: 'scheme myapp:' },
    { uri: '/cb', kind: 'not an absolute URI' },
    { uri: '', kind: 'not an absolute URI' },
    { uri: `https://app.example/${'a'.repeat(2048)}`, kind: 'longer than 2048' },
  ]
  it.each(ROWS)('$uri → $kind', ({ uri, kind }) => {
    const got = redirectKind(uri)
    if (typeof got === 'string') expect(got).toBe(kind)
    else expect(got.refused).toContain(kind)
  })

  it('native: loopback and private-use only', () => {
    expect([WEB, LOOP, 'com.example.app:/cb', 'javascript:x'].map(isNativeRedirect)).toStrictEqual([false, true, true, false])
  })
})

describe('redirectMatches: exact, except a loopback port', () => {
  const ROWS: { registered: string; presented: string; match: boolean }[] = [
    { registered: WEB, presented: WEB, match: true },
    { registered: WEB, presented: 'https://app.example/cb/', match: false },
    { registered: WEB, presented: 'https://app.example:443/cb', match: false },
    { registered: WEB, presented: 'https://APP.EXAMPLE/cb', match: false },
    { registered: WEB, presented: 'https://app.example@evil.example/cb', match: false },
    { registered: WEB, presented: 'https://app.example/cb?x', match: false },
    { registered: WEB, presented: 'https://app.example/cb#', match: false },
    { registered: WEB, presented: 'https://app.example/x/../cb', match: false },
    { registered: LOOP, presented: 'http://127.0.0.1:1/cb', match: true },
    { registered: LOOP, presented: 'http://127.0.0.1:65535/cb', match: true },
    { registered: 'http://127.0.0.1:8080/cb', presented: 'http://127.0.0.1:9090/cb', match: true },
    { registered: 'http://127.0.0.1:8080/cb', presented: LOOP, match: true },
    { registered: 'http://[::1]/cb', presented: 'http://[::1]:4000/cb', match: true },
    { registered: 'http://localhost/cb', presented: 'http://localhost:4000/cb', match: true },
    { registered: 'http://127.0.0.1/cb?a=1', presented: 'http://127.0.0.1:4000/cb?a=1', match: true },
    { registered: 'http://127.0.0.1/cb?a=1', presented: 'http://127.0.0.1:4000/cb?a=2', match: false },
    { registered: LOOP, presented: 'http://localhost:4000/cb', match: false },
    { registered: LOOP, presented: 'http://[::1]:4000/cb', match: false },
    { registered: LOOP, presented: 'https://127.0.0.1:4000/cb', match: false },
    { registered: LOOP, presented: 'http://127.0.0.1:4000/cb/', match: false },
    { registered: LOOP, presented: 'http://127.0.0.1:4000/CB', match: false },
    { registered: LOOP, presented: 'HTTP://127.0.0.1:4000/cb', match: false },
    { registered: LOOP, presented: 'http://127.0.0.1:4000@evil.example/cb', match: false },
    { registered: LOOP, presented: 'http://127.0.0.1:4000/cb#x', match: false },
    { registered: LOOP, presented: 'http://127.1:4000/cb', match: false },
    { registered: LOOP, presented: 'http://0x7f000001:4000/cb', match: false },
    { registered: LOOP, presented: 'http://127.0.0.1:99999/cb', match: false },
    { registered: 'http://127.0.0.1', presented: 'http://127.0.0.1:4000', match: true },
    { registered: 'http://127.0.0.1', presented: 'http://127.0.0.1:4000.evil.example', match: false },
    // Not loopback: a port on a private-use or https URI is never ignored.
    { registered: 'https://127.0.0.1/cb', presented: 'https://127.0.0.1:4000/cb', match: false },
    { registered: 'com.example.app:/cb', presented: 'com.example.app:/cb/x', match: false },
  ]
  it.each(ROWS)('$registered ← $presented → $match', ({ registered, presented, match }) => {
    expect(redirectMatches(registered, presented)).toBe(match)
  })
})

const segment = fc.stringMatching(/^[a-z0-9_-]{1,8}$/)
const path = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`)
const host = fc.constantFrom('127.0.0.1', '[::1]', 'localhost')

describe('redirectMatches: properties', () => {
  it('an https registration matches itself and no other string', () => {
    fc.assert(
      fc.property(fc.domain(), path, fc.string({ maxLength: 40 }), (domain, p, other) => {
        const registered = `https://${domain}${p}`
        expect(redirectMatches(registered, registered)).toBe(true)
        if (other !== registered) expect(redirectMatches(registered, other)).toBe(false)
        expect(redirectMatches(registered, `${registered}${other}`)).toBe(other === '')
      }),
    )
  })

  it('a loopback registration matches on any port, with the same host, path and query only', () => {
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), path, (h, port, p) => {
        expect(redirectMatches(`http://${h}${p}`, `http://${h}:${port}${p}`)).toBe(true)
        expect(redirectMatches(`http://${h}${p}`, `http://${h}:${port}${p}/x`)).toBe(false)
        expect(redirectMatches(`http://${h}${p}`, `http://${h}:${port}${p}#`)).toBe(false)
        expect(redirectMatches(`http://${h}${p}`, `http://${h}:${port}@evil.example${p}`)).toBe(false)
      }),
    )
  })

  it('whatever is presented, a match sends the code to the registered scheme, host, path and query', () => {
    const junk = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('@evil.example', ':80', '#', '?x', '/..', '%2e', '.', '\\', '\t'))
    fc.assert(
      fc.property(host, path, fc.array(junk, { maxLength: 3 }), fc.nat({ max: 30 }), (h, p, bits, at) => {
        const registered = `http://${h}${p}`
        let presented = `http://${h}:4000${p}`
        for (const b of bits) {
          const i = at % (presented.length + 1)
          presented = `${presented.slice(0, i)}${b}${presented.slice(i)}`
        }
        if (!redirectMatches(registered, presented)) return
        const a = new URL(registered)
        const b = new URL(presented)
        expect([b.protocol, b.hostname, b.pathname, b.search, b.hash, b.username, b.password]).toStrictEqual([a.protocol, a.hostname, a.pathname, a.search, '', '', ''])
      }),
      { numRuns: 2000 },
    )
  })
})
