import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listeningProcess, runProcess } from '../helpers/processes.js'
import { readmeBlock, shellCommands } from '../helpers/readme.js'
import { connect } from '../helpers/server.js'

/**
 * The README's "Gateway" section as a user runs it: its `bastion.yaml` fronting the real
 * filesystem and memory servers through `npx`, `upstreams pin`, `serve`, then the MCP client and
 * the Inspector listing what each role may call. The folder sits inside this project so that `npx`
 * finds the servers among its dev dependencies (offline) as it would in a user's project.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const INSPECTOR = '@modelcontextprotocol/inspector@2.12.0'
const READER_TOOLS = ['filesystem__list_directory', 'filesystem__read_text_file']

let dir: string
let env: NodeJS.ProcessEnv
let url = ''
let admin = ''
let reader = ''
let stop: () => Promise<void> = async () => {}

beforeAll(async () => {
  mkdirSync(join(ROOT, 'node_modules', '.cache'), { recursive: true })
  dir = mkdtempSync(join(ROOT, 'node_modules', '.cache', 'bastion-gateway-readme-'))
  mkdirSync(join(dir, 'data'))
  writeFileSync(join(dir, 'data', 'notes.txt'), 'fronted by bastion\n')
  writeFileSync(join(dir, 'bastion.yaml'), readmeBlock('gateway-example'))
  env = { PATH: process.env.PATH ?? '', HOME: dir, LANG: 'C.UTF-8', MEMORY_FILE: join(dir, 'memory.jsonl'), BASTION_PORT: '0', npm_config_update_notifier: 'false' }
  const [pin, serve] = shellCommands(readmeBlock('gateway-commands'))
  expect(pin).toStrictEqual(['npx', 'mcp-bastion', 'upstreams', 'pin'])
  expect(serve).toStrictEqual(['npx', 'mcp-bastion', 'serve'])
  const pinned = await runProcess(pin?.[0] as string, pin?.slice(1) as string[], { cwd: dir, env, timeoutMs: 60_000 })
  expect(pinned.stderr).toBe('')
  expect(pinned.stdout).toContain('pinned filesystem: 14 tools')
  expect(pinned.stdout).toContain('pinned memory: 9 tools')
  const started = await listeningProcess(serve?.[0] as string, serve?.slice(1) as string[], { cwd: dir, env, group: true })
  stop = started.stop
  url = started.url
  admin = /bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(started.stdout)?.[0] ?? ''
  expect(admin, 'the first run prints an admin key').not.toBe('')
  const made = await runProcess('npx', ['mcp-bastion', 'keys', 'create', '--role', 'reader'], { cwd: dir, env })
  reader = /bst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(made.stdout)?.[0] ?? ''
  expect(reader).not.toBe('')
}, 120_000)

afterAll(async () => {
  await stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('README: Gateway', () => {
  it("pins both servers' tools in bastion.lock.json", () => {
    const lock = JSON.parse(readFileSync(join(dir, 'bastion.lock.json'), 'utf8'))
    expect(Object.keys(lock.upstreams).sort()).toStrictEqual(['filesystem', 'memory'])
    expect(lock.upstreams.filesystem.tools.read_text_file.digest).toMatch(/^sha256:[0-9a-f]{64}$/)
  })

  it('lists a reader the two read tools only, and an admin every tool of both servers', async () => {
    const names = async (key: string): Promise<string[]> => {
      const c = await connect(url, 'modern', { authorization: `Bearer ${key}` })
      try {
        return (await c.listTools()).tools.map((t) => t.name).sort()
      } finally {
        await c.close()
      }
    }
    // The key store is re-read on its interval: the reader key made by the CLI arrives within it.
    let readerTools: string[] = []
    for (let i = 0; i < 50 && readerTools.length === 0; i++) {
      readerTools = await names(reader).catch(() => [])
      if (readerTools.length === 0) await new Promise((r) => setTimeout(r, 100))
    }
    expect(readerTools).toStrictEqual(READER_TOOLS)
    const all = await names(admin)
    expect(all).toHaveLength(23)
    expect(all).toEqual(expect.arrayContaining(['filesystem__write_file', 'memory__create_entities', 'memory__read_graph']))
    const c = await connect(url, 'legacy', { authorization: `Bearer ${reader}` })
    try {
      const read = await c.callTool({ name: 'filesystem__read_text_file', arguments: { path: join(dir, 'data', 'notes.txt') } })
      expect(JSON.stringify(read.content)).toContain('fronted by bastion')
    } finally {
      await c.close()
    }
  })

  it('the Inspector lists a reader the same two tools', async () => {
    const home = mkdtempSync(join(dir, 'inspector-home-'))
    const r = await runProcess('npx', ['-y', INSPECTOR, '--cli', url, '--transport', 'http', '--header', `Authorization: Bearer ${reader}`, '--method', 'tools/list'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: home, npm_config_offline: 'true', npm_config_update_notifier: 'false', MCP_INSPECTOR_SECRET_STORE: 'memory' },
      timeoutMs: 30_000,
    })
    expect(r.code, r.stderr).toBe(0)
    const listed = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { tools: { name: string }[] }
    expect(listed.tools.map((t) => t.name).sort()).toStrictEqual(READER_TOOLS)
  })
})
