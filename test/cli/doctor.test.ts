import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { freePort } from '../helpers/processes.js'
import { JSON_HEADERS, MODERN_META, modernHeaders } from '../helpers/server.js'

const BIN = resolve('dist/cli/main.js')
const children: ChildProcess[] = []
const servers: Server[] = []
afterEach(async () => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
})

const tempDir = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'bastion-doctor-')))

interface Finding {
  check: string
  verdict: 'pass' | 'warn' | 'fail'
  reason: string
  fix?: string
}

function doctor(cwd: string, args: string[], env: Record<string, string> = {}): Promise<{ status: number; findings: Finding[]; stdout: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, 'doctor', '--json', ...args], { cwd, env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout) => {
      const status = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
      done({ status, stdout, findings: (JSON.parse(stdout) as { findings: Finding[] }).findings })
    })
  })
}

const verdicts = (findings: readonly Finding[], check: string): string[] => findings.filter((f) => f.check === check).map((f) => f.verdict)
const reasons = (findings: readonly Finding[], check: string): string =>
  findings
    .filter((f) => f.check === check)
    .map((f) => f.reason)
    .join(' | ')

/** `serve` in a folder; resolves with the URL it prints (and the first-run key it printed before). */
function serve(cwd: string): Promise<{ url: string; key: string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  return new Promise((ok, reject) => {
    let out = ''
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /listening on (\S+)/.exec(out)
      if (m?.[1] !== undefined) ok({ url: m[1], key: /(bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43})/.exec(out)?.[1] ?? '' })
    })
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)))
  })
}

describe('mcp-bastion doctor', () => {
  it('the embedded default, before and while it serves: no fail, every live check passes', async () => {
    const dir = tempDir()
    const before = await doctor(dir, [])
    expect(before.status).toBe(0)
    expect(before.findings.filter((f) => f.verdict === 'fail')).toEqual([])
    const { url, key } = await serve(dir)
    const live = await doctor(dir, ['--url', url])
    expect(live.findings.filter((f) => f.verdict === 'fail')).toEqual([])
    expect(live.status).toBe(0)
    for (const check of ['live.reachable', 'live.auth', 'live.headers', 'live.host', 'live.origin', 'live.metadata', 'live.tls'])
      expect(verdicts(live.findings, check)).toEqual(['pass'])
    expect(verdicts(live.findings, 'audit')).toEqual(['pass'])
    expect(verdicts(live.findings, 'state')).toEqual(['pass'])
    // The first-run admin key never expires, and has not been used yet: said, not failed.
    expect(verdicts(live.findings, 'keys')).toEqual(['warn', 'warn'])
    expect(reasons(live.findings, 'keys')).toMatch(/never expire.*\| 1 key\(s\) never used/)
    // Once it is used, the audit trail says so.
    const used = await fetch(url, {
      method: 'POST',
      headers: { ...JSON_HEADERS, ...modernHeaders('tools/list'), authorization: `Bearer ${key}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: MODERN_META } }),
    })
    expect(used.status).toBe(200)
    expect(reasons((await doctor(dir, [])).findings, 'keys')).not.toContain('never used')
  }, 60_000)

  it('a weak deployment fails, each check for its reason, and never prints a secret', async () => {
    const dir = tempDir()
    const weakSecret = 'ThisIsMySuperSecretKeyForJWTSigning123456'
    writeFileSync(join(dir, 'hs.secret'), weakSecret)
    chmodSync(join(dir, 'hs.secret'), 0o644)
    // An issuer whose clock is ten minutes off, by the Date header of its JWKS answer.
    const issuer = createServer((_req, res) => res.writeHead(200, { date: new Date(Date.now() - 600_000).toUTCString(), 'content-type': 'application/json' }).end('{"keys":[]}'))
    servers.push(issuer)
    await new Promise<void>((r) => issuer.listen(0, '127.0.0.1', r))
    const redisPort = await freePort()
    const config = {
      server: { host: '0.0.0.0' },
      roles: { admin: { permissions: ['*'] }, ops: { permissions: ['*'] }, reader: { permissions: ['files:read'] } },
      limits: { anonymous: { rate: '10000/min' }, backend: 'redis', redis: { url: { env: 'DOCTOR_REDIS' } } },
      auth: {
        issuers: [
          { name: 'weak', issuer: 'https://weak.example', algorithms: ['HS256'], secret: { file: 'hs.secret' }, dangerouslyAllowWeakSecret: true },
          { name: 'skewed', issuer: 'https://skewed.example', algorithms: ['ES256'], jwksUri: `http://127.0.0.1:${(issuer.address() as AddressInfo).port}/jwks` },
        ],
      },
      upstreams: { notes: { command: process.execPath, args: ['notes-server.mjs'], pin: 'warn' } },
    }
    writeFileSync(join(dir, 'bastion.yaml'), stringify(config))
    // A state folder others can read, a key store others can read, and an edited audit trail.
    execFileSync(process.execPath, [BIN, 'keys', 'create', '--role', 'reader', '--name', 'ci', '--config', 'bastion.yaml'], {
      cwd: dir,
      env: { ...process.env, DOCTOR_REDIS: 'redis://127.0.0.1:1' },
    })
    chmodSync(join(dir, '.bastion'), 0o755)
    chmodSync(join(dir, '.bastion', 'keys.json'), 0o644)
    const trail = join(dir, '.bastion', 'audit.jsonl')
    writeFileSync(trail, readFileSync(trail, 'utf8').replace('"decision":"allow"', '"decision":"deny"'))

    const r = await doctor(dir, ['--config', 'bastion.yaml'], { DOCTOR_REDIS: `redis://127.0.0.1:${redisPort}` })
    expect(r.status).toBe(1)
    const f = r.findings
    expect(verdicts(f, 'tls')).toEqual(['fail'])
    expect(reasons(f, 'tls')).toMatch(/0\.0\.0\.0 is not loopback and server\.tls is not set/)
    expect(verdicts(f, 'dangerous-options')).toEqual(['warn'])
    expect(reasons(f, 'dangerous-options')).toContain('auth.issuers.0.dangerouslyAllowWeakSecret')
    expect(reasons(f, 'secrets')).toMatch(/hs\.secret is readable by every user \(mode 644\)/)
    expect(reasons(f, 'secrets')).toMatch(/auth\.issuers\.0\.secret: the HS256 secret is guessable: it carries about \d+ bits \(9 word/)
    expect(verdicts(f, 'secrets')).toEqual(['fail', 'fail'])
    expect(reasons(f, 'state')).toMatch(/state folder \.bastion has mode 755/)
    expect(reasons(f, 'state')).toMatch(/\.bastion\/keys\.json has mode 644/)
    expect(verdicts(f, 'config')).toEqual([])
    expect(verdicts(f, 'roles')).toEqual(['warn'])
    expect(reasons(f, 'roles')).toContain('role ops holds *')
    expect(reasons(f, 'limits')).toContain('limits.anonymous is 10000/min')
    expect(reasons(f, 'keys')).toMatch(/1 key\(s\) never expire.*1 key\(s\) never used/)
    expect(verdicts(f, 'audit')).toEqual(['fail'])
    expect(reasons(f, 'audit')).toMatch(/does not verify: \d+ problem\(s\), first at .*audit\.jsonl:\d+/)
    expect(verdicts(f, 'services')).toEqual(['fail'])
    expect(reasons(f, 'services')).toContain('Redis at limits.redis.url does not answer')
    expect(verdicts(f, 'issuers')).toEqual(['fail'])
    expect(reasons(f, 'issuers')).toMatch(/auth\.issuers\.1: the issuer's clock is (59\d|60\d) s off/)
    expect(verdicts(f, 'upstreams')).toEqual(['warn'])
    expect(reasons(f, 'upstreams')).toContain('upstream notes has no pinned tool definitions and pin: warn')
    for (const finding of f) if (finding.verdict !== 'pass') expect(finding.fix).toBeTruthy()
    expect(r.stdout).not.toContain(weakSecret)
  }, 60_000)

  it('TLS: an RSA key under 2048 bits fails, a certificate close to expiry warns', async () => {
    const dir = tempDir()
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:1024', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=localhost'], {
      cwd: dir,
      stdio: 'ignore',
    })
    chmodSync(join(dir, 'key.pem'), 0o600)
    chmodSync(join(dir, 'cert.pem'), 0o600)
    writeFileSync(join(dir, 'bastion.yaml'), stringify({ server: { tls: { cert: { file: 'cert.pem' }, key: { file: 'key.pem' } } } }))
    const r = await doctor(dir, ['--config', 'bastion.yaml'])
    expect(r.status).toBe(1)
    expect(verdicts(r.findings, 'tls.key')).toEqual(['fail'])
    expect(reasons(r.findings, 'tls.key')).toContain('RSA key has 1024 bits')
    expect(verdicts(r.findings, 'tls.expiry')).toEqual(['warn'])
    expect(reasons(r.findings, 'tls.expiry')).toMatch(/expires in 0 day\(s\)/)
  }, 30_000)

  it('live: a server that answers anything without a credential fails every live check it can', async () => {
    const open = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'x-powered-by': 'Express' }).end('ok'))
    servers.push(open)
    await new Promise<void>((r) => open.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(open.address() as AddressInfo).port}/mcp`
    const r = await doctor(tempDir(), ['--url', url])
    expect(r.status).toBe(1)
    expect(verdicts(r.findings, 'live.auth')).toEqual(['fail'])
    expect(reasons(r.findings, 'live.auth')).toContain('got 200, not 401')
    expect(verdicts(r.findings, 'live.headers')).toEqual(['fail'])
    expect(reasons(r.findings, 'live.headers')).toMatch(/cacheable.*text\/plain.*x-powered-by/)
    expect(verdicts(r.findings, 'live.host')).toEqual(['fail'])
    expect(verdicts(r.findings, 'live.origin')).toEqual(['fail'])
    expect(verdicts(r.findings, 'live.metadata')).toEqual(['fail'])
  }, 30_000)

  it('an upstream without pins under the default enforce mode fails (start-up refuses it)', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'bastion.yaml'), stringify({ upstreams: { notes: { command: process.execPath, args: ['notes-server.mjs'] } } }))
    const r = await doctor(dir, ['--config', 'bastion.yaml'])
    expect(r.status).toBe(1)
    expect(verdicts(r.findings, 'upstreams')).toEqual(['fail'])
    expect(reasons(r.findings, 'upstreams')).toContain('upstream notes has no pinned tool definitions: start-up refuses it')
    expect(reasons(r.findings, 'config')).toContain('upstreams.notes: not pinned')
  }, 30_000)

  it('a URL that does not answer is one failure, not a crash', async () => {
    const r = await doctor(tempDir(), ['--url', `http://127.0.0.1:${await freePort()}/mcp`])
    expect(r.status).toBe(1)
    expect(verdicts(r.findings, 'live.reachable')).toEqual(['fail'])
  }, 30_000)
})
