import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FetchRefused, isPublicAddress, type SafeFetchOptions, safeFetch } from '../../src/auth/safe-fetch.js'

const STRICT: SafeFetchOptions = { timeoutMs: 300, maxBytes: 5120, allowLoopback: false }
const DEV: SafeFetchOptions = { ...STRICT, allowLoopback: true }

let hits = 0
let fixture: Server
let base = ''
beforeAll(async () => {
  fixture = createServer((req, res) => {
    hits += 1
    if (req.url === '/ok') return res.end('{"ok":true}')
    if (req.url === '/redirect') {
      res.writeHead(302, { location: '/ok' })
      return res.end('CANARY')
    }
    if (req.url === '/big') {
      res.writeHead(200, { 'content-length': '10485760' })
      return res.end(Buffer.alloc(10_485_760))
    }
    if (req.url === '/big-chunked') {
      res.on('error', () => undefined)
      for (let i = 0; i < 16; i++) res.write(Buffer.alloc(1024, 0x61))
      return res.end()
    }
    // /slow: never answers
  })
  await new Promise<void>((resolve) => fixture.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(fixture.address() as AddressInfo).port}`
})
afterAll(async () => {
  fixture.closeAllConnections()
  await new Promise((resolve) => fixture.close(resolve))
})

describe('isPublicAddress', () => {
  const NOT_PUBLIC = [
    '10.0.0.1',
    '10.255.255.255',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.0.1',
    '192.168.255.255',
    '127.0.0.1',
    '127.255.255.254',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '192.0.2.1',
    '198.18.0.1',
    '224.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::FFFF:10.0.0.1',
    '::ffff:7f00:1',
    '::ffff:a9fe:a9fe',
    '64:ff9b::7f00:1',
    '2001:db8::1',
    '2002:7f00:1::',
    'not-an-address',
    'localhost',
    '',
  ]
  it.each(NOT_PUBLIC)('%s → not public', (address) => {
    expect(isPublicAddress(address)).toBe(false)
  })

  it('2606:4700:4700::1111 → public', () => {
    expect(isPublicAddress('2606:4700:4700::1111')).toBe(true)
  })

  /**
   * Known bug (reported): NOT_PUBLIC lists `::ffff:0:0/96`, and node:net's BlockList checks an
   * IPv4 address against IPv6 rules as its IPv4-mapped form, so EVERY IPv4 address is "not
   * public": no metadata document or client JWKS on an IPv4 host can be fetched. `it.fails`:
   * these turn red once fixed; then drop `.fails`.
   */
  it.fails.each(['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '::ffff:8.8.8.8'])('known bug: %s → public', (address) => {
    expect(isPublicAddress(address)).toBe(true)
  })

  const octet = fc.integer({ min: 0, max: 255 })
  const privateV4 = fc.oneof(
    fc.tuple(fc.constant(10), octet, octet, octet),
    fc.tuple(fc.constant(127), octet, octet, octet),
    fc.tuple(fc.constant(172), fc.integer({ min: 16, max: 31 }), octet, octet),
    fc.tuple(fc.constant(192), fc.constant(168), octet, octet),
    fc.tuple(fc.constant(169), fc.constant(254), octet, octet),
    fc.tuple(fc.constant(100), fc.integer({ min: 64, max: 127 }), octet, octet),
  )
  it('no private, loopback or link-local IPv4 address is public, nor its IPv4-mapped IPv6 forms', () => {
    fc.assert(
      fc.property(privateV4, (parts) => {
        const v4 = parts.join('.')
        const hex = `${((parts[0] << 8) | parts[1]).toString(16)}:${((parts[2] << 8) | parts[3]).toString(16)}`
        expect([v4, `::ffff:${v4}`, `::ffff:${hex}`, `64:ff9b::${hex}`].map(isPublicAddress)).toStrictEqual([false, false, false, false])
      }),
    )
  })
})

describe('safeFetch refuses before connecting (no allowance)', () => {
  const ROWS: { name: string; url: () => string; reason: RegExp; options?: SafeFetchOptions }[] = [
    { name: '10.x', url: () => 'https://10.0.0.1/doc', reason: /non-public address \(10\.0\.0\.1\)/ },
    { name: '192.168.x', url: () => 'https://192.168.1.1/doc', reason: /non-public address/ },
    { name: '172.16.x', url: () => 'https://172.16.0.1/doc', reason: /non-public address/ },
    { name: 'cloud metadata 169.254.169.254', url: () => 'https://169.254.169.254/latest/meta-data/', reason: /non-public address/ },
    { name: '100.64.x (CGNAT)', url: () => 'https://100.64.0.1/doc', reason: /non-public address/ },
    { name: '0.0.0.0', url: () => 'https://0.0.0.0/doc', reason: /non-public address/ },
    { name: '127.0.0.1', url: () => `${base.replace('http:', 'https:')}/ok`, reason: /non-public address \(127\.0\.0\.1\)/ },
    { name: 'decimal 2130706433', url: () => 'https://2130706433/doc', reason: /non-public address \(127\.0\.0\.1\)/ },
    { name: '::1', url: () => 'https://[::1]/doc', reason: /non-public address \(::1\)/ },
    { name: 'fc00:: (unique local)', url: () => 'https://[fc00::1]/doc', reason: /non-public address/ },
    { name: 'fe80:: (link-local)', url: () => 'https://[fe80::1]/doc', reason: /non-public address/ },
    { name: '::ffff:127.0.0.1 (IPv4-mapped)', url: () => 'https://[::ffff:127.0.0.1]/doc', reason: /non-public address/ },
    { name: 'NAT64 of 127.0.0.1', url: () => 'https://[64:ff9b::7f00:1]/doc', reason: /non-public address/ },
    { name: 'localhost (a name that resolves to loopback)', url: () => 'https://localhost/doc', reason: /non-public address/ },
    // The reason should be "plain http is allowed for loopback only" (see the known bug below).
    { name: 'plain http to a public address', url: () => 'http://93.184.216.34/doc', reason: /plain http is allowed for loopback only|non-public address/ },
    { name: 'plain http to loopback', url: () => `${base}/ok`, reason: /non-public address/ },
    { name: 'file: scheme', url: () => 'file:///etc/passwd', reason: /scheme file: is not https/ },
    { name: 'ftp: scheme', url: () => 'ftp://93.184.216.34/doc', reason: /scheme ftp: is not https/ },
    { name: 'userinfo', url: () => 'https://user:pw@93.184.216.34/doc', reason: /user information/ },
    { name: 'a name that does not resolve', url: () => 'https://no-such-host.invalid/doc', reason: /does not resolve|not resolved within/ },
    { name: 'with the allowance, 10.x is still refused', url: () => 'http://10.0.0.1/doc', reason: /non-public address/, options: DEV },
    { name: 'with the allowance, plain http to a private address', url: () => 'http://192.168.1.1/doc', reason: /non-public address/, options: DEV },
  ]
  it.each(ROWS)('$name → FetchRefused', async ({ url, reason, options }) => {
    const before = hits
    const error = await safeFetch(new URL(url()), options ?? STRICT).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FetchRefused)
    expect((error as Error).message).toMatch(reason)
    expect(hits).toBe(before)
  })
})

describe('known bug: an IPv4 public address is refused as non-public', () => {
  it.fails('plain http to a public address is refused for being plain http', async () => {
    const error = await safeFetch(new URL('http://93.184.216.34/doc'), STRICT).catch((e: unknown) => e)
    expect((error as Error).message).toBe('plain http is allowed for loopback only')
  })
})

describe('safeFetch against a loopback fixture (development allowance)', () => {
  const ROWS: { name: string; path: string; reason: RegExp }[] = [
    { name: 'a redirect is not followed', path: '/redirect', reason: /^answered 302 \(redirects are not followed\)$/ },
    { name: '10 MB declared', path: '/big', reason: /^declares 10485760 bytes, over 5120$/ },
    { name: '16 KiB chunked', path: '/big-chunked', reason: /^body over 5120 bytes$/ },
    { name: 'no answer', path: '/slow', reason: /^no answer within 300 ms$/ },
  ]
  it.each(ROWS)('$name → FetchRefused, its message names the rule only', async ({ path, reason }) => {
    const started = Date.now()
    const error = await safeFetch(new URL(`${base}${path}`), DEV).catch((e: unknown) => e)
    expect(Date.now() - started).toBeLessThan(2000)
    expect(error).toBeInstanceOf(FetchRefused)
    expect((error as Error).message).toMatch(reason)
  })

  it('control: a small document is read', async () => {
    const res = await safeFetch(new URL(`${base}/ok`), DEV)
    expect(res.status).toBe(200)
    expect(res.body.toString()).toBe('{"ok":true}')
  })
})
