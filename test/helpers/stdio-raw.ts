import { spawn } from 'node:child_process'
import { BIN } from './processes.js'

export type RpcMessage = Record<string, unknown> & { id?: string | number | null; method?: string }

/**
 * The built CLI in stdio mode (`mcp-bastion serve --stdio`), spoken to line by line: every byte
 * the server writes is kept, so a test reads exactly what left the process. Requests the server
 * sends (elicitation) are answered by `onRequest`.
 */
export interface RawStdio {
  /** Every line the server wrote on stdout, in order. */
  readonly lines: string[]
  /** What the server wrote on stderr. */
  stderr(): string
  /** Write one raw line (no JSON encoding: malformed input is the point of some tests). */
  writeLine(line: string): void
  /** Send a request and wait for the answer with its id. */
  request(message: RpcMessage, timeoutMs?: number): Promise<RpcMessage>
  notify(message: RpcMessage): void
  /** Messages the server wrote with this id (answers), parsed. */
  answersTo(id: string | number | null): RpcMessage[]
  onRequest: ((request: RpcMessage) => unknown) | undefined
  /** The server's process id when it runs as a child process (undefined in this process). */
  readonly pid: number | undefined
  close(): Promise<void>
}

export function spawnStdio(cwd: string, key: string, args: string[] = [], env: Record<string, string> = {}): RawStdio {
  const child = spawn(process.execPath, [BIN, 'serve', '--stdio', ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env, MCP_API_KEY: key },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let err = ''
  child.stderr?.on('data', (c: Buffer) => {
    err += c.toString()
  })
  const stdin = child.stdin
  const stdout = child.stdout
  if (stdin === null || stdout === null) throw new Error('no pipes')
  return rawOver(stdin, stdout, {
    pid: child.pid,
    stderr: () => err,
    close: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        stdin.end()
        setTimeout(() => child.kill('SIGKILL'), 3000).unref()
      }),
  })
}

/** The same line protocol over any pair of streams (a bastion served in this process). */
export function rawOver(toServer: NodeJS.WritableStream, fromServer: NodeJS.ReadableStream, io: { stderr(): string; close(): Promise<void>; pid?: number | undefined }): RawStdio {
  const lines: string[] = []
  const waiting = new Map<string | number, (m: RpcMessage) => void>()
  let buffer = ''
  const raw: RawStdio = {
    lines,
    pid: io.pid,
    stderr: io.stderr,
    writeLine(line) {
      toServer.write(`${line}\n`)
    },
    request(message, timeoutMs = 10_000) {
      const id = message.id
      if (id === undefined || id === null) throw new Error('a request needs an id')
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id)
          reject(new Error(`no answer to ${String(id)} within ${timeoutMs} ms; stderr: ${io.stderr().slice(-2000)}`))
        }, timeoutMs)
        waiting.set(id, (m) => {
          clearTimeout(timer)
          resolve(m)
        })
        raw.writeLine(JSON.stringify(message))
      })
    },
    notify(message) {
      raw.writeLine(JSON.stringify(message))
    },
    answersTo(id) {
      return lines.map(parse).filter((m): m is RpcMessage => m !== undefined && m.id === id && m.method === undefined)
    },
    onRequest: undefined,
    close: io.close,
  }
  fromServer.on('data', (c: Buffer | string) => {
    buffer += c.toString()
    for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
      const line = buffer.slice(0, end)
      buffer = buffer.slice(end + 1)
      lines.push(line)
      const m = parse(line)
      if (m === undefined) continue
      if (typeof m.method === 'string' && m.id !== undefined && m.id !== null) {
        // A request from the server (elicitation): answered by the test, or refused.
        void Promise.resolve(raw.onRequest?.(m)).then((answer) => {
          const reply =
            answer === undefined ? { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'not handled by the test' } } : { jsonrpc: '2.0', id: m.id, result: answer }
          raw.writeLine(JSON.stringify(reply))
        })
        continue
      }
      if (m.method === undefined && m.id !== undefined && m.id !== null) waiting.get(m.id)?.(m)
    }
  })
  return raw
}

function parse(line: string): RpcMessage | undefined {
  try {
    const v: unknown = JSON.parse(line)
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as RpcMessage) : undefined
  } catch {
    return undefined
  }
}

/** A 2025-11-25 initialize over stdio, then `notifications/initialized`. */
export async function initializeStdio(raw: RawStdio, capabilities: Record<string, unknown> = {}): Promise<RpcMessage> {
  const answer = await raw.request({
    jsonrpc: '2.0',
    id: 'init',
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities, clientInfo: { name: 'wire', version: '1' } },
  })
  raw.notify({ jsonrpc: '2.0', method: 'notifications/initialized' })
  return answer
}
