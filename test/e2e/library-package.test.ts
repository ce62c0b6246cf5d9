import { type ChildProcess, execFileSync, execSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readmeBlock } from '../helpers/readme.js'
import { connect } from '../helpers/server.js'

const ROOT = realpathSync(new URL('../..', import.meta.url).pathname)

/**
 * The README's library example, as a new user would run it: the packed tarball installed in an
 * empty folder with the README's own commands, `server.ts` pasted from the README, type-checked
 * by tsc, run with node, and called by a real MCP client.
 */
describe("the README's library example, from the packed tarball", () => {
  let dir: string
  let child: ChildProcess | undefined
  let stderr = ''
  let url: string
  let key: string

  beforeAll(async () => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-library-')))
    // dist/ is built by the global setup; packing must not build it again.
    const tarball = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n').at(-1) ?? ''
    const [init, install, compile] = readmeBlock('library-setup').split('\n')
    expect(install).toContain('/path/to/mcp-bastion-0.1.0.tgz')
    const run = (line: string): void => {
      execSync(line, { cwd: dir, stdio: 'pipe', env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_prefer_offline: 'true' } })
    }
    run(init ?? '')
    run((install ?? '').replace('/path/to/mcp-bastion-0.1.0.tgz', join(dir, tarball)))
    writeFileSync(join(dir, 'server.ts'), readmeBlock('library'))
    const [typecheck, start] = (compile ?? '').split(' && ')
    expect(start).toBe('node server.js')
    run(typecheck ?? '')
    const spawned = spawn('node', ['server.js'], { cwd: dir, env: { ...process.env, BASTION_PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
    child = spawned
    ;[url, key] = await new Promise<[string, string]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server.js did not say where it listens:\n${stderr}`)), 20_000)
      spawned.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
        const at = /listening on (\S+)/.exec(stderr)
        const created = /\n {2}(bst_\S+)\n/.exec(stderr)
        if (at?.[1] !== undefined && created?.[1] !== undefined) {
          clearTimeout(timer)
          resolve([at[1], created[1]])
        }
      })
      spawned.on('exit', (code) => reject(new Error(`server.js exited (${code}):\n${stderr}`)))
    })
  }, 120_000)

  afterAll(() => {
    child?.kill('SIGTERM')
  })

  it('installs zod as the one copy bastion and the user share (a peer dependency)', () => {
    const pkg = JSON.parse(readFileSync(join(dir, 'node_modules/mcp-bastion/package.json'), 'utf8')) as {
      peerDependencies?: Record<string, string>
      dependencies?: Record<string, string>
    }
    expect(pkg.peerDependencies?.zod).toMatch(/^\^4/)
    expect(pkg.dependencies?.zod).toBeUndefined()
    expect(existsSync(join(dir, 'node_modules/mcp-bastion/node_modules/zod'))).toBe(false)
  })

  it('says where it serves and shows the first-run admin key, once, on stderr', () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/)
    expect(stderr).toContain('First run: created an admin API key')
    expect(stderr.match(/bst_/g)).toHaveLength(1)
  })

  it('serves only greet (no demo tools beside the library’s own), through the whole pipeline', async () => {
    for (const era of ['modern', 'legacy'] as const) {
      const client = await connect(url, era, { authorization: `Bearer ${key}` })
      const { tools } = await client.listTools()
      expect(tools.map((t) => t.name)).toStrictEqual(['greet'])
      const result = await client.callTool({ name: 'greet', arguments: { name: 'Ada' } })
      expect(result.content).toStrictEqual([{ type: 'text', text: expect.stringMatching(/^hello Ada, from key:[0-9a-f]{16}$/) }])
      const refused = await client.callTool({ name: 'greet', arguments: { name: 'x'.repeat(101) } })
      expect(refused.isError).toBe(true)
      await client.close()
    }
    // No demo workspace, database or vault was made: the key store, the audit trail, and the
    // authorization server's signing key (sealed under the keyring) for interactive sign-in.
    expect(readdirSync(join(dir, '.bastion')).sort()).toStrictEqual(['audit.jsonl', 'audit.key', 'keyring.json', 'keys.json', 'signing-keys.json'])
    const lines = readFileSync(join(dir, '.bastion/audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.filter((l) => l.tool === 'greet').map((l) => l.decision)).toStrictEqual(['allow', 'deny', 'allow', 'deny'])
  })
})
