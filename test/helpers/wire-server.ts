import { mkdtempSync, realpathSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { type AuditSink, type Bastion, type BastionConfigInput, createBastion, MemoryRateLimiter, type RateLimiter } from '../../src/index.js'
import type { BucketLevel, Charge, TakeDecision } from '../../src/limits/token-bucket.js'

/** An audit sink that stores lines in memory and, while `failing`, refuses every write (a full disk, a dead database). */
export class SwitchableSink implements AuditSink {
  readonly lines: string[] = []
  /** Lines it refused to store while failing. */
  readonly refused: string[] = []
  failing = false
  write(line: string): void {
    if (this.failing) {
      this.refused.push(line)
      throw new Error('EIO: audit disk failed at /var/log/bastion/audit.jsonl')
    }
    this.lines.push(line)
  }
  close(): void {}
}

/** The memory backend, or, while `down`, a backend that cannot answer (Redis gone). */
export class SwitchableLimiter implements RateLimiter {
  readonly backend = 'memory'
  readonly #inner = new MemoryRateLimiter()
  down = false
  async take(charges: readonly Charge[], peek?: boolean): Promise<TakeDecision> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6390 (redis)')
    return this.#inner.take(charges, peek)
  }
  async levels(charges: readonly Charge[]): Promise<readonly BucketLevel[]> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6390 (redis)')
    return this.#inner.levels(charges)
  }
  async close(): Promise<void> {
    await this.#inner.close()
  }
}

export type AuditLine = Record<string, unknown>

export interface WireServer {
  readonly bastion: Bastion
  readonly url: string
  readonly port: number
  readonly dir: string
  readonly sink: SwitchableSink
  readonly limiter: SwitchableLimiter
  /** A key with these roles, created in the store now. */
  key(roles: string[], expiresAt?: Date | null): string
  /** Audit lines stored so far. */
  audit(): AuditLine[]
  /** Audit lines stored after this call. */
  mark(): () => AuditLine[]
  close(): Promise<void>
}

/**
 * A real bastion on 127.0.0.1:0 in a fresh state directory, whose audit sink and rate-limit backend
 * the test can break on demand. Alert rules are off: their lines would add to the one-line counts.
 * `prepare` writes what must be in the base folder before start-up (a lock file).
 */
export async function startWireServer(config: BastionConfigInput, setup?: (b: Bastion) => void, prepare?: (dir: string) => void): Promise<WireServer> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'bastion-wire-')))
  prepare?.(dir)
  const sink = new SwitchableSink()
  const limiter = new SwitchableLimiter()
  const bastion = await createBastion({
    baseDir: dir,
    logger: pino({ level: 'silent' }),
    announce: false,
    auditSink: sink,
    rateLimiter: limiter,
    config: { ...config, auth: { reloadIntervalMs: 0, ...config.auth }, alerts: { rules: [] } },
  })
  setup?.(bastion)
  const running = await bastion.listen({ host: '127.0.0.1', port: 0 })
  const audit = (): AuditLine[] => sink.lines.map((l) => JSON.parse(l) as AuditLine)
  return {
    bastion,
    url: running.url,
    port: running.port,
    dir,
    sink,
    limiter,
    key: (roles, expiresAt = null) => bastion.keys.create({ name: roles.join('+'), roles, expiresAt }).key,
    audit,
    mark() {
      const start = sink.lines.length
      return () => audit().slice(start)
    },
    close: () => bastion.close(),
  }
}

export interface RawResponse {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/**
 * One request with node:http, which (unlike fetch) sends a header given as an array as repeated
 * header lines and lets the test set Host.
 */
export function nodeRequest(url: string, options: { method?: string; headers: Record<string, string | string[]>; body?: string; localAddress?: string }): Promise<RawResponse> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const init = { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: options.method ?? 'POST', headers: options.headers }
    const req = httpRequest(options.localAddress === undefined ? init : { ...init, localAddress: options.localAddress }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => {
        text += c.toString()
      })
      res.on('end', () => {
        const headers = new Headers()
        for (const [name, value] of Object.entries(res.headers)) if (typeof value === 'string') headers.set(name, value)
        resolve({ status: res.statusCode ?? 0, headers, text })
      })
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Bytes on a socket, for requests no HTTP client will send (control characters, no Host). */
export function rawRequest(port: number, head: string, body = ''): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1')
    })
    socket.on('error', reject)
    socket.on('end', () => {
      const split = data.indexOf('\r\n\r\n')
      const lines = data.slice(0, split).split('\r\n')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
      const headers = new Headers()
      for (const line of lines.slice(1)) {
        const at = line.indexOf(':')
        if (at > 0) headers.append(line.slice(0, at).trim(), line.slice(at + 1).trim())
      }
      let text = data.slice(split + 4)
      // Chunked bodies (Node's own responses): join the chunks.
      if (headers.get('transfer-encoding') === 'chunked') {
        let out = ''
        let rest = text
        for (;;) {
          const eol = rest.indexOf('\r\n')
          const size = Number.parseInt(rest.slice(0, eol), 16)
          if (!(size > 0)) break
          out += rest.slice(eol + 2, eol + 2 + size)
          rest = rest.slice(eol + 2 + size + 2)
        }
        text = out
      }
      resolve({ status, headers, text })
    })
    socket.end(`${head}\r\n\r\n${body}`, 'latin1')
  })
}

/** JSON-RPC messages of a JSON or SSE response, as they arrive; the raw text is collected in `raw`. */
export async function* messagesOf(res: Response, raw: { text: string }): AsyncGenerator<Record<string, unknown>> {
  if (res.body === null) return
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    raw.text += await res.text()
    if (raw.text.length > 0) yield JSON.parse(raw.text) as Record<string, unknown>
    return
  }
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      const chunk = decoder.decode(value, { stream: true })
      raw.text += chunk
      buffer += chunk
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const data = buffer
          .slice(0, end)
          .split('\n')
          .find((l) => l.startsWith('data: '))
          ?.slice(6)
        buffer = buffer.slice(end + 2)
        if (data !== undefined && data.length > 0) yield JSON.parse(data) as Record<string, unknown>
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined)
  }
}
