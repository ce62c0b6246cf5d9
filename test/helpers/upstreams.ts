import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './processes.js'

/** The real MCP servers from npm (dev dependencies) and the fixture upstreams. */
export const SERVERS = {
  filesystem: fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-filesystem/dist/index.js', import.meta.url)),
  memory: fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-memory/dist/index.js', import.meta.url)),
  everything: fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url)),
  drift: fileURLToPath(new URL('../fixtures/upstreams/drift-server.mjs', import.meta.url)),
  http: fileURLToPath(new URL('../fixtures/upstreams/http-server.mjs', import.meta.url)),
  loopbackOnly: fileURLToPath(new URL('../fixtures/upstreams/loopback-only.mjs', import.meta.url)),
}

export interface DriftTool {
  name: string
  title?: string
  description: string
  inputSchema: Record<string, unknown>
  outputSchema?: Record<string, unknown>
  annotations?: Record<string, unknown>
}

/** The drift fixture's definitions, written whole (temp file, rename): the fixture never reads half a file. */
export function writeDefs(path: string, tools: readonly DriftTool[]): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(tools))
  renameSync(`${path}.tmp`, path)
}

export const ECHO: DriftTool = {
  name: 'echo',
  description: 'Echo the arguments back.',
  inputSchema: { type: 'object', properties: { text: { type: 'string', maxLength: 100 } }, required: ['text'], additionalProperties: false },
  annotations: { readOnlyHint: true },
}

/** The HTTP fixture upstream on 127.0.0.1, and the credential headers each request carried. */
export interface HttpUpstream {
  readonly url: string
  readonly port: number
  records(): { method: string; rpcMethod?: string; headers: Record<string, string> }[]
  stop(): Promise<void>
}

export function startHttpUpstream(env: { MODE: string; RECORD_FILE: string; REQUIRE_BEARER?: string; PORT?: string }): Promise<HttpUpstream> {
  const child: ChildProcess = spawn(process.execPath, [SERVERS.http], { env: { PATH: process.env.PATH ?? '', PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
    })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /listening (\d+)/.exec(out)
      if (m?.[1] !== undefined) {
        const port = Number(m[1])
        resolve({
          url: `http://127.0.0.1:${port}/mcp`,
          port,
          records: () => {
            let text = ''
            try {
              text = readFileSync(env.RECORD_FILE, 'utf8')
            } catch {
              return []
            }
            return text
              .split('\n')
              .filter((l) => l !== '')
              .map((l) => JSON.parse(l))
          },
          stop,
        })
      }
    })
    child.once('exit', (code) => reject(new Error(`http upstream exited ${code}: ${out}`)))
  })
}

/** The audit lines of a bastion whose state folder is `<dir>/.bastion` (the default), parsed. */
export function auditLines(dir: string): Record<string, unknown>[] {
  return readFileSync(join(dir, '.bastion', 'audit.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** The text of a tool result's text blocks, joined. */
export const textOf = (r: { content?: unknown }): string => ((r.content as { text?: string }[] | undefined) ?? []).map((c) => c.text ?? '').join('')

/** `mcp-server-everything streamableHttp` on a free port, held to loopback by a preload (it binds every interface otherwise). */
export async function startEverythingHttp(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', SERVERS.loopbackOnly, SERVERS.everything, 'streamableHttp'], {
    env: { PATH: process.env.PATH ?? '', PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
    })
  await new Promise<void>((resolve, reject) => {
    let err = ''
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString()
      if (err.includes('listening on port')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`everything (streamableHttp) exited ${code}: ${err}`)))
  })
  return { url: `http://127.0.0.1:${port}/mcp`, stop }
}
