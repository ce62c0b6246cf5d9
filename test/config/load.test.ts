import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, embeddedConfig, type LoadedConfig, loadConfigFile, readSecret, resolvePath, statePath, validateConfig } from '../../src/config/load.js'

let dir: string
let n = 0

async function yamlFile(text: string): Promise<string> {
  const path = join(dir, `config-${++n}.yaml`)
  await writeFile(path, text)
  return path
}

function configError(run: () => unknown): ConfigError {
  try {
    run()
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error('expected a ConfigError, got success')
}

/** Every object and array reachable from `value` is frozen. */
function unfrozenPaths(value: unknown, path = '$'): string[] {
  if (value === null || typeof value !== 'object') return []
  const own = Object.isFrozen(value) ? [] : [path]
  return [...own, ...Object.entries(value).flatMap(([k, v]) => unfrozenPaths(v, `${path}.${k}`))]
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bastion-config-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('embedded default', () => {
  it('is valid and secure by default', () => {
    const loaded = embeddedConfig({}, '/srv/app')
    expect(loaded.source).toBe('embedded default')
    expect(loaded.baseDir).toBe('/srv/app')
    const { config } = loaded
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080, path: '/mcp', dangerouslyAllowPlaintext: false, maxBodyBytes: 1024 * 1024, maxJsonDepth: 64 })
    expect(config.server.tls).toBeUndefined()
    expect(config.server.sessions).toStrictEqual({ maxTotal: 1000, maxPerPrincipal: 16, idleTimeoutSeconds: 900 })
    expect(config.roles).toStrictEqual({ admin: { permissions: ['*'] }, analyst: { permissions: ['sql:query'] }, reader: { permissions: ['files:read'] } })
    // The SQL tools run over the embedded demo database until a URL is configured; no commands are allowed.
    expect(config.sql.enabled).toBeUndefined()
    expect(config.sql).toMatchObject({ embeddedDir: 'pgdata', statementTimeoutMs: 5000, maxRows: { default: 100, roles: {} }, maxDeleteRows: 1000 })
    expect(config.sql.url).toBeUndefined()
    expect(config.commands).toStrictEqual({})
    expect(config.auth).toMatchObject({ keysFile: 'keys.json', reloadIntervalMs: 1000, keys: [], issuers: [], introspection: [] })
    // The authorization server is on, so that interactive MCP clients can sign in; registration
    // only for native clients (codes reach only the user's own machine); no pre-registered clients.
    expect(config.auth.tokenService.enabled).toBe(true)
    expect(config.auth.login).toMatchObject({ apiKey: true, flowSeconds: 600 })
    expect(config.auth.login.oidc).toBeUndefined()
    expect(config.auth.clients).toMatchObject({ metadataDocuments: true, allowedDomains: [], dangerouslyAllowLoopbackMetadata: false, registered: [] })
    expect(config.auth.clients.registration.mode).toBe('loopback')
    expect(config.auth.resource).toBeUndefined()
    expect(config.workspace).toStrictEqual({ root: 'workspace', maxFileBytes: 1024 * 1024 })
    expect(config.stateDir).toBe('.bastion')
    expect(statePath(loaded, config.audit.file)).toBe('/srv/app/.bastion/audit.jsonl')
  })

  it('is deep-frozen', () => {
    const loaded = embeddedConfig()
    expect(unfrozenPaths(loaded)).toStrictEqual([])
    const permissions = loaded.config.roles.admin?.permissions
    expect(permissions).toStrictEqual(['*'])
    expect(() => {
      ;(permissions as string[]).push('x')
    }).toThrow(TypeError)
    expect(() => {
      ;(loaded.config.server as { port: number }).port = 1
    }).toThrow(TypeError)
    expect(loaded.config.server.port).toBe(8080)
  })

  it('a second load is independent of (and not corrupted by) the first', () => {
    const a = embeddedConfig({ roles: { ops: { permissions: ['files:read'] } } })
    const b = embeddedConfig()
    expect(Object.keys(a.config.roles)).toStrictEqual(['ops'])
    expect(Object.keys(b.config.roles)).toStrictEqual(['admin', 'analyst', 'reader'])
    expect(unfrozenPaths(b)).toStrictEqual([])
  })
})

describe('validateConfig', () => {
  const UNKNOWN_KEYS = [
    { name: 'top level', input: { servr: {} }, says: 'unknown key "servr"' },
    { name: 'server', input: { server: { prot: 1 } }, says: 'server: unknown key "prot"' },
    { name: 'server.tls', input: { server: { tls: { cert: { env: 'C' }, key: { env: 'K' }, kye: { env: 'K' } } } }, says: 'server.tls: unknown key "kye"' },
    { name: 'server.sessions', input: { server: { sessions: { maxTotl: 5 } } }, says: 'server.sessions: unknown key "maxTotl"' },
    { name: 'audit', input: { audit: { path: 'x' } }, says: 'audit: unknown key "path"' },
    { name: 'auth', input: { auth: { reloadInterval: 0 } }, says: 'auth: unknown key "reloadInterval"' },
    { name: 'auth.keys[0]', input: { auth: { keys: [{ name: 'k', roles: ['admin'], key: { env: 'K' }, expire: '2030-01-01' }] } }, says: 'auth.keys.0: unknown key "expire"' },
    { name: 'a role', input: { roles: { admin: { permissions: ['*'], permisions: ['x'] } } }, says: 'roles.admin: unknown key "permisions"' },
    { name: 'a tool rule', input: { tools: { read_file: { perms: ['x'] } } }, says: 'tools.read_file: unknown key "perms"' },
    { name: 'workspace', input: { workspace: { maxBytes: 1 } }, says: 'workspace: unknown key "maxBytes"' },
    { name: 'several at once', input: { server: { a: 1, b: 2 } }, says: 'server: unknown keys "a", "b"' },
  ] as const

  it.each(UNKNOWN_KEYS)('unknown key in $name is an error naming its path', ({ input, says }) => {
    const error = configError(() => validateConfig(input, 'bastion.yaml', dir))
    expect(error.message).toMatch(/^config bastion\.yaml:\n {2}- /)
    expect(error.message).toContain(says)
  })

  const WRONG_TYPES = [
    { name: 'port as a string', input: { server: { port: '8080' } }, path: 'server.port: ' },
    { name: 'port out of range', input: { server: { port: 70000 } }, path: 'server.port: ' },
    { name: 'plaintext opt-out as a string', input: { server: { dangerouslyAllowPlaintext: 'yes' } }, path: 'server.dangerouslyAllowPlaintext: ' },
    { name: 'depth limit below the floor', input: { server: { maxJsonDepth: 2 } }, path: 'server.maxJsonDepth: ' },
    { name: 'origin not a URL', input: { server: { allowedOrigins: ['example.com'] } }, path: 'server.allowedOrigins.0: ' },
    { name: 'path not absolute', input: { server: { path: 'mcp' } }, path: 'server.path: an absolute URL path' },
    { name: 'permissions as a string', input: { roles: { admin: { permissions: '*' } } }, path: 'roles.admin.permissions: ' },
    { name: 'role name with a space', input: { roles: { 'bad role': { permissions: [] } } }, path: 'roles.bad role: ' },
    { name: 'key with no roles', input: { auth: { keys: [{ name: 'k', roles: [], key: { env: 'K' } }] } }, path: 'auth.keys.0.roles: ' },
    { name: 'bad expiry', input: { auth: { keys: [{ name: 'k', roles: ['r'], key: { env: 'K' }, expires: 'next year' }] } }, path: 'auth.keys.0.expires: ' },
    {
      name: 'env ref not a variable name',
      input: { auth: { keys: [{ name: 'k', roles: ['r'], key: { env: 'A-B' } }] } },
      path: 'auth.keys.0.key.env: an environment variable name',
    },
    { name: 'negative reload interval', input: { auth: { reloadIntervalMs: -1 } }, path: 'auth.reloadIntervalMs: ' },
    { name: 'workspace enabled as a string', input: { workspace: { enabled: 'true' } }, path: 'workspace.enabled: ' },
    { name: 'whole config not an object', input: ['server'], path: '(top level): ' },
  ] as const

  it.each(WRONG_TYPES)('$name → error naming $path', ({ input, path }) => {
    expect(configError(() => validateConfig(input, 'bastion.yaml', dir)).message).toContain(`  - ${path}`)
  })

  it('lists every problem, not only the first', () => {
    const message = configError(() => validateConfig({ server: { port: 'x', kye: 1 }, workspace: { enabled: 1 } }, 'c.yaml', dir)).message
    expect(message.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(3)
  })

  const INLINE_SECRET = 'bst_0123456789abcdef_SECRETSECRETSECRETSECRETSECRETSECRETSECRE'
  const INLINE = [
    { name: 'inline string', key: INLINE_SECRET },
    { name: 'inline under an unknown field', key: { env: 'K', value: INLINE_SECRET } },
    { name: 'inline as a number', key: 12345678901234 },
  ] as const

  it.each(INLINE)('an inline secret ($name) is refused without echoing its value', ({ key }) => {
    const message = configError(() => validateConfig({ auth: { keys: [{ name: 'k', roles: ['admin'], key }] } }, 'c.yaml', dir)).message
    expect(message).toContain('auth.keys.0.key')
    expect(message).not.toContain('SECRET')
    expect(message).not.toContain('12345678901234')
  })

  it('returns a deep-frozen result for a full config', () => {
    const loaded = validateConfig(
      {
        server: { allowedHosts: ['mcp.local'], tls: { cert: { file: 'c.pem' }, key: { env: 'TLS_KEY' } } },
        auth: { keys: [{ name: 'k', roles: ['admin'], key: { env: 'K' }, expires: '2030-01-01' }] },
        tools: { read_file: { permissions: ['files:read'] } },
      },
      'c.yaml',
      dir,
    )
    expect(unfrozenPaths(loaded)).toStrictEqual([])
    expect(Object.isFrozen(loaded.config.server.tls?.cert)).toBe(true)
  })
})

describe('loadConfigFile', () => {
  it('loads YAML, resolves relative paths against the file, and freezes the result', async () => {
    const sub = join(dir, 'nested')
    await mkdir(sub)
    const path = join(sub, 'bastion.yaml')
    await writeFile(path, 'server:\n  port: 0\nstateDir: state\nworkspace:\n  root: ws\n')
    const loaded = loadConfigFile(path)
    expect(loaded.source).toBe(path)
    expect(loaded.baseDir).toBe(sub)
    expect(loaded.config.server.port).toBe(0)
    expect(resolvePath(loaded, loaded.config.workspace.root)).toBe(join(sub, 'ws'))
    expect(resolvePath(loaded, '/abs/x')).toBe('/abs/x')
    expect(statePath(loaded, 'keys.json')).toBe(join(sub, 'state', 'keys.json'))
    expect(unfrozenPaths(loaded)).toStrictEqual([])
  })

  it('an empty file is the default config', async () => {
    expect(loadConfigFile(await yamlFile('')).config.server.port).toBe(8080)
  })

  const BAD_YAML = [
    { name: 'duplicate key in a mapping', text: 'server:\n  port: 1\n  port: 2\n', says: 'Map keys must be unique' },
    { name: 'duplicate top-level key', text: 'server:\n  port: 1\nserver:\n  port: 2\n', says: 'Map keys must be unique' },
    {
      name: 'duplicate opt-out (last-wins would flip it)',
      text: 'server:\n  dangerouslyAllowPlaintext: false\n  dangerouslyAllowPlaintext: true\n',
      says: 'Map keys must be unique',
    },
    { name: 'bad indentation', text: 'server:\n  port: 1\n    host: x\n', says: 'invalid YAML' },
    { name: 'unclosed flow sequence', text: 'server:\n  allowedHosts: [a, b\n', says: 'invalid YAML' },
  ] as const

  it.each(BAD_YAML)('$name is refused', async ({ text, says }) => {
    const path = await yamlFile(text)
    const message = configError(() => loadConfigFile(path)).message
    expect(message).toContain(`config ${path}: invalid YAML:`)
    expect(message).toContain(says)
    expect(message).toMatch(/line \d+/)
  })

  it('an alias bomb (billion laughs) is a ConfigError, not a crash or a hang', async () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
    for (let i = 1; i < 9; i++) {
      const name = String.fromCharCode(97 + i)
      const prev = String.fromCharCode(96 + i)
      lines.push(`${name}: &${name} [${Array.from({ length: 10 }, () => `*${prev}`).join(', ')}]`)
    }
    const path = await yamlFile(lines.join('\n'))
    expect(configError(() => loadConfigFile(path)).message).toContain(`config ${path}: `)
  })

  it('a missing file is a ConfigError naming the path and the errno', () => {
    expect(configError(() => loadConfigFile(join(dir, 'missing.yaml'))).message).toBe(
      `config ${join(dir, 'missing.yaml')}: no such file; give an existing file, or no config for the embedded default`,
    )
  })

  it('YAML merge keys and prototype keys are unknown keys, not silent merges', async () => {
    const path = await yamlFile('base: &b {port: 1}\nserver:\n  <<: *b\n__proto__:\n  polluted: true\n')
    const message = configError(() => loadConfigFile(path)).message
    expect(message).toContain('server: unknown key "<<"')
    expect(message).toContain('unknown keys "base", "__proto__"')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('a wrong type in a file names the key path', async () => {
    const path = await yamlFile('server:\n  tls:\n    cert: {file: c.pem}\n    key: {env: K}\n    kye: {env: K}\n  port: "80"\n')
    const message = configError(() => loadConfigFile(path)).message
    expect(message).toContain('server.tls: unknown key "kye"')
    expect(message).toContain('server.port: ')
  })
})

describe('readSecret', () => {
  const loaded: LoadedConfig = embeddedConfig({}, '/nonexistent-base')

  it('reads an environment variable', () => {
    expect(readSecret(loaded, { env: 'BASTION_TEST_KEY' }, 'auth.keys.0.key', { BASTION_TEST_KEY: 'v4lue' })).toBe('v4lue')
  })

  const MISSING = [
    { name: 'unset', env: { OTHER_SECRET: 'do-not-print-me' } },
    { name: 'empty', env: { BASTION_TEST_KEY: '', OTHER_SECRET: 'do-not-print-me' } },
  ] as const

  it.each(MISSING)('a missing variable ($name) names the variable and the key path, never a value', ({ env }) => {
    const message = configError(() => readSecret(loaded, { env: 'BASTION_TEST_KEY' }, 'server.tls.key', env)).message
    expect(message).toBe('config embedded default: server.tls.key: environment variable BASTION_TEST_KEY is not set')
    expect(message).not.toContain('do-not-print-me')
  })

  it('reads a file relative to the config directory, trimmed', async () => {
    await writeFile(join(dir, 'secret.txt'), '  s3cret-from-file\n')
    const fromDir = embeddedConfig({}, dir)
    expect(readSecret(fromDir, { file: 'secret.txt' }, 'x')).toBe('s3cret-from-file')
  })

  it('an unreadable file names the reference and the errno, not the contents or the resolved host path', () => {
    const message = configError(() => readSecret(loaded, { file: 'missing.pem' }, 'server.tls.cert')).message
    expect(message).toBe('config embedded default: server.tls.cert: cannot read file missing.pem (ENOENT)')
  })
})
