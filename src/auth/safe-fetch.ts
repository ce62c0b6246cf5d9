import { lookup } from 'node:dns/promises'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { BlockList, isIP, type LookupFunction } from 'node:net'

/** Addresses that are not on the public internet (RFC 6890 special-purpose registries). */
const NOT_PUBLIC = new BlockList()
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  NOT_PUBLIC.addSubnet(net, bits, 'ipv4')
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001::', 23],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  NOT_PUBLIC.addSubnet(net, bits, 'ipv6')

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/** Is this address public (not private, loopback, link-local, reserved, documentation, multicast)? */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return false
  const type = family === 4 ? 'ipv4' : 'ipv6'
  // An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
  if (mapped !== undefined) return isPublicAddress(mapped)
  return !NOT_PUBLIC.check(address, type)
}

export interface SafeFetchOptions {
  readonly timeoutMs: number
  readonly maxBytes: number
  /** Loopback addresses (and plain HTTP to them) allowed: development only. */
  readonly allowLoopback: boolean
}

export interface SafeResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: Buffer
}

/** Why a fetch was refused or failed; the message names the rule, never the response body. */
export class FetchRefused extends Error {
  override readonly name = 'FetchRefused'
}

/**
 * GET a URL someone else named (a client's metadata document or JWKS) without letting them aim
 * bastion at its own network: HTTPS only (plain HTTP to loopback with the development allowance),
 * every address the name resolves to must be public (or loopback with the allowance), and the
 * connection goes to the address that was checked (no second lookup to rebind); no redirects
 * (a 3xx is a refusal); the whole exchange within `timeoutMs`; at most `maxBytes` read.
 * Does not check: the content (callers parse and validate it).
 * @throws FetchRefused
 */
export async function safeFetch(target: URL, options: SafeFetchOptions): Promise<SafeResponse> {
  const plain = target.protocol === 'http:'
  if (target.protocol !== 'https:' && !plain) throw new FetchRefused(`scheme ${target.protocol} is not https`)
  if (target.username !== '' || target.password !== '') throw new FetchRefused('URL has user information')
  const host = target.hostname.replace(/^\[|\]$/g, '')
  const addresses = isIP(host) !== 0 ? [{ address: host, family: isIP(host) }] : await resolveAll(host, options.timeoutMs)
  if (addresses.length === 0) throw new FetchRefused('host does not resolve')
  const allowed = (a: string): boolean => isPublicAddress(a) || (options.allowLoopback && LOOPBACK.check(a, isIP(a) === 4 ? 'ipv4' : 'ipv6'))
  const refused = addresses.find((a) => !allowed(a.address))
  if (refused !== undefined) throw new FetchRefused(`host resolves to a non-public address (${refused.address})`)
  if (plain && !addresses.every((a) => LOOPBACK.check(a.address, a.family === 4 ? 'ipv4' : 'ipv6'))) throw new FetchRefused('plain http is allowed for loopback only')
  const [first] = addresses
  if (first === undefined) throw new FetchRefused('host does not resolve')
  const pinned: LookupFunction = (_name, opts, callback) => {
    if (typeof opts === 'object' && opts !== null && (opts as { all?: boolean }).all === true) callback(null, [{ address: first.address, family: first.family }])
    else callback(null, first.address, first.family)
  }
  const send = plain ? httpRequest : httpsRequest
  return new Promise<SafeResponse>((resolve, reject) => {
    const signal = AbortSignal.timeout(options.timeoutMs)
    const req = send(target, { method: 'GET', lookup: pinned, signal, headers: { accept: 'application/json', 'user-agent': 'mcp-bastion' } }, (res) => {
      const status = res.statusCode ?? 0
      if (status >= 300 && status < 400) {
        res.destroy()
        reject(new FetchRefused(`answered ${status} (redirects are not followed)`))
        return
      }
      const declared = Number(res.headers['content-length'] ?? '0')
      if (declared > options.maxBytes) {
        res.destroy()
        reject(new FetchRefused(`declares ${declared} bytes, over ${options.maxBytes}`))
        return
      }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > options.maxBytes) {
          res.destroy()
          reject(new FetchRefused(`body over ${options.maxBytes} bytes`))
          return
        }
        chunks.push(chunk)
      })
      res.on('end', () => resolve({ status, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', () => reject(new FetchRefused(signal.aborted ? `no answer within ${options.timeoutMs} ms` : 'connection failed')))
    })
    req.on('error', () => reject(new FetchRefused(signal.aborted ? `no answer within ${options.timeoutMs} ms` : 'connection failed')))
    req.end()
  })
}

async function resolveAll(host: string, timeoutMs: number): Promise<{ address: string; family: number }[]> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      lookup(host, { all: true, verbatim: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new FetchRefused(`name not resolved within ${timeoutMs} ms`)), timeoutMs)
      }),
    ])
  } catch (error) {
    if (error instanceof FetchRefused) throw error
    throw new FetchRefused('host does not resolve')
  } finally {
    clearTimeout(timer)
  }
}

/** Seconds a response may be reused per its Cache-Control (RFC 9111 §5.2.2), capped; 0 for no-store/no-cache. */
export function freshFor(headers: SafeResponse['headers'], capSeconds: number): number {
  const raw = headers['cache-control']
  const value = (Array.isArray(raw) ? raw.join(',') : (raw ?? '')).toLowerCase()
  if (/(^|,)\s*(no-store|no-cache|private)\s*(,|$)/.test(value)) return 0
  const maxAge = /(^|,)\s*max-age\s*=\s*"?(\d{1,10})"?/.exec(value)?.[2]
  return maxAge === undefined ? capSeconds : Math.min(Number(maxAge), capSeconds)
}
