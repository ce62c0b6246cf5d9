import { describe, expect, it } from 'vitest'
import { isUnspecified, ResourceUri, servedAt } from '../../src/compose/address.js'

const LOOPBACK = ['localhost', '127.0.0.1', '[::1]']

describe('servedAt: the printed URL is always answerable', () => {
  it.each([
    { name: 'loopback', requested: '127.0.0.1', address: '127.0.0.1', url: 'http://127.0.0.1:8080/mcp', hosts: LOOPBACK },
    { name: 'another 127/8 address', requested: '127.0.0.2', address: '127.0.0.2', url: 'http://127.0.0.2:8080/mcp', hosts: [...LOOPBACK, '127.0.0.2'] },
    { name: 'localhost by name', requested: 'localhost', address: '127.0.0.1', url: 'http://127.0.0.1:8080/mcp', hosts: LOOPBACK },
    { name: 'IPv6 loopback', requested: '::1', address: '::1', url: 'http://[::1]:8080/mcp', hosts: LOOPBACK },
    { name: 'every IPv4 interface', requested: '0.0.0.0', address: '0.0.0.0', url: 'http://127.0.0.1:8080/mcp', hosts: LOOPBACK },
    { name: 'every interface (IPv6)', requested: '::', address: '::', url: 'http://[::1]:8080/mcp', hosts: LOOPBACK },
    { name: 'one interface', requested: '10.1.2.3', address: '10.1.2.3', url: 'http://10.1.2.3:8080/mcp', hosts: ['10.1.2.3'] },
    { name: 'a name for one interface', requested: 'MCP.internal', address: '10.1.2.3', url: 'http://10.1.2.3:8080/mcp', hosts: ['10.1.2.3', 'mcp.internal'] },
  ])('$name', ({ requested, address, url, hosts }) => {
    const served = servedAt({ requested, address, port: 8080, secure: false, path: '/mcp', allowedHosts: [] })
    expect(served.url).toBe(url)
    expect([...served.allowedHosts].sort()).toStrictEqual([...hosts].sort())
    expect(served.allowedHosts).toContain(new URL(served.url).host.replace(/:\d+$/, ''))
  })

  it('adds server.allowedHosts (lowercased) and says https with TLS', () => {
    const served = servedAt({ requested: '0.0.0.0', address: '0.0.0.0', port: 443, secure: true, path: '/mcp', allowedHosts: ['MCP.Example.com'] })
    expect(served.url).toBe('https://127.0.0.1:443/mcp')
    expect(served.allowedHosts).toContain('mcp.example.com')
    expect(served.allowedHosts).not.toContain('0.0.0.0')
  })

  it.each(['0.0.0.0', '::', '[::]', '::0', '0:0:0:0:0:0:0:0'])('%s is every interface', (h) => expect(isUnspecified(h)).toBe(true))
  it.each(['127.0.0.1', '::1', '10.0.0.1', 'localhost', '0.0.0.1'])('%s is not', (h) => expect(isUnspecified(h)).toBe(false))
})

describe('ResourceUri', () => {
  it('without auth.resource: unknown until fixed to the served URL, fixed once', () => {
    const r = new ResourceUri(undefined)
    expect(r.get()).toBeUndefined()
    expect(r.fix('http://127.0.0.1:1/mcp')).toBe('http://127.0.0.1:1/mcp')
    expect(r.get()).toBe('http://127.0.0.1:1/mcp')
    expect(() => r.fix('http://127.0.0.2:1/mcp')).toThrow(/already fixed/)
    expect(r.get()).toBe('http://127.0.0.1:1/mcp')
  })

  it('auth.resource wins over the served URL', () => {
    const r = new ResourceUri('https://mcp.example.com/mcp')
    expect(r.fix('http://127.0.0.1:1/mcp')).toBe('https://mcp.example.com/mcp')
    expect(r.get()).toBe('https://mcp.example.com/mcp')
  })
})
