import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli, tempDir } from './run.js'

// A port something else holds, for the first row.
let taken: Server
let port = 0
beforeAll(async () => {
  taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  const address = taken.address()
  port = typeof address === 'object' && address !== null ? address.port : 0
})
afterAll(async () => {
  await new Promise((resolve) => taken.close(resolve))
})

const REFUSALS: readonly { name: string; setup: (dir: string) => void; args: () => string[]; line: () => RegExp }[] = [
  {
    name: 'the port is in use (EADDRINUSE)',
    setup: () => {},
    args: () => ['--host', '127.0.0.1', '--port', String(port)],
    line: () => new RegExp(`^mcp-bastion: cannot listen on 127\\.0\\.0\\.1:${port}: the address is in use \\(another process listens there\\) \\(EADDRINUSE\\)$`),
  },
  {
    name: 'the host is not an address of this machine (EADDRNOTAVAIL)',
    setup: (dir) => writeFileSync(join(dir, 'bastion.yaml'), 'server:\n  host: 192.0.2.1\n  allowedHosts: [192.0.2.1]\n  dangerouslyAllowPlaintext: true\n'),
    args: () => ['--port', '0'],
    line: () => /^mcp-bastion: cannot listen on 192\.0\.2\.1: the address is not one of this machine \(server\.host, --host\) \(EADDRNOTAVAIL\)$/,
  },
  {
    name: 'a TLS certificate that is not PEM',
    setup: (dir) => {
      writeFileSync(join(dir, 'bastion.yaml'), 'server:\n  tls:\n    cert: { file: cert.pem }\n    key: { file: key.pem }\n')
      writeFileSync(join(dir, 'cert.pem'), 'not a certificate\n')
      writeFileSync(join(dir, 'key.pem'), 'not a key\n')
    },
    args: () => ['--port', '0'],
    line: () => /^mcp-bastion: server\.tls: the certificate or key does not load \(PEM routines: no start line; ERR_OSSL_PEM_NO_START_LINE\)$/,
  },
  {
    name: 'a key store that is not JSON',
    setup: (dir) => {
      mkdirSync(join(dir, '.bastion'), { mode: 0o700 })
      writeFileSync(join(dir, '.bastion', 'keys.json'), '{"version":1,"keys":[', { mode: 0o600 })
    },
    args: () => ['--port', '0'],
    line: () => /^mcp-bastion: key store \/.+\/\.bastion\/keys\.json: not valid JSON$/,
  },
  {
    name: 'a key store of the wrong shape',
    setup: (dir) => {
      mkdirSync(join(dir, '.bastion'), { mode: 0o700 })
      writeFileSync(join(dir, '.bastion', 'keys.json'), '{"version":2,"keys":[]}', { mode: 0o600 })
    },
    args: () => ['--port', '0'],
    line: () => /^mcp-bastion: key store \/.+\/\.bastion\/keys\.json: version: /,
  },
]

describe('serve: a start-up refusal is one line naming the cause, exit 2 (config or state)', () => {
  it.each(REFUSALS)('$name', ({ setup, args, line }) => {
    const dir = tempDir('bastion-startup-')
    setup(dir)
    const r = cli(dir, ['serve', ...args()])
    expect(r.status).toBe(2)
    const lines = r.stderr.split('\n').filter((l) => l.length > 0 && !l.startsWith('{'))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(line())
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.stdout).not.toContain('Listening')
  })
})
