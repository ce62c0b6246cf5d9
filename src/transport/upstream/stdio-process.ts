import { type ChildProcess, spawn } from 'node:child_process'
import { type JSONRPCMessage, parseJSONRPCMessage, serializeMessage, type Transport } from '@modelcontextprotocol/client'

/** How to start one upstream process. */
export interface ProcessSpec {
  readonly command: string
  readonly args: readonly string[]
  readonly cwd: string
  /** Its whole environment: nothing else is inherited. */
  readonly env: Readonly<Record<string, string>>
  /** A line longer than this (bytes) is refused and the process stopped: it cannot be resynchronised safely. */
  readonly maxMessageBytes: number
  /** Each line the process writes to stderr (cut to 2,000 characters), for the operator log. */
  readonly onStderr: (line: string) => void
}

/** Kill a process group; it may already be gone. */
function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // Already exited.
  }
}

/**
 * One run of an upstream MCP server over stdio (newline-delimited JSON-RPC, MCP "stdio"
 * transport), in its own process group so that whatever it starts (npx starts node, which may
 * start more) is stopped with it. Written here rather than using the SDK's stdio transport because
 * that one inherits a default environment, does not start a process group, and probes versions
 * with sibling processes; bastion needs exactly the environment it was given and one process.
 * Does not check: what the messages mean (the client does), or the process's resource use (the
 * caps in its spec are applied by whoever built the command line).
 */
export class UpstreamProcess implements Transport {
  onclose?: () => void
  onerror?: (error: Error) => void
  onmessage?: <T extends JSONRPCMessage>(message: T) => void
  readonly #spec: ProcessSpec
  #child: ChildProcess | undefined
  #chunks: Buffer[] = []
  #buffered = 0
  #stderr = ''
  #closed = false
  /** Settles when the process has exited. */
  exited: Promise<number | null> = Promise.resolve(null)

  constructor(spec: ProcessSpec) {
    this.#spec = spec
  }

  get pid(): number | undefined {
    return this.#child?.pid
  }

  async start(): Promise<void> {
    if (this.#child !== undefined) throw new Error('already started')
    const { command, args, cwd, env } = this.#spec
    const child = spawn(command, [...args], { cwd, env: { ...env }, stdio: ['pipe', 'pipe', 'pipe'], detached: true, windowsHide: true })
    this.#child = child
    this.exited = new Promise((resolve) => child.once('close', (code) => resolve(code)))
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', (error) => {
        reject(new Error(`cannot start ${command} (${(error as NodeJS.ErrnoException).code ?? 'error'})`))
      })
    })
    child.stdout?.on('data', (chunk: Buffer) => this.#read(chunk))
    child.stderr?.on('data', (chunk: Buffer) => this.#readStderr(chunk))
    // A process that stops reading its stdin makes writes fail: reported, and the process is stopped.
    child.stdin?.on('error', (error) => this.onerror?.(new Error(`upstream stdin: ${error.message}`)))
    child.once('exit', () => {
      // The leader is gone: whatever it left in its group goes too, and pipes a leftover held are
      // closed, so that the exit is seen at once (and restarted) rather than when the last one ends.
      killGroup(child.pid, 'SIGKILL')
      child.stdout?.destroy()
      child.stderr?.destroy()
    })
    child.once('close', () => {
      this.#closed = true
      if (this.#stderr !== '') this.#spec.onStderr(this.#stderr.slice(0, 2000))
      this.onclose?.()
    })
  }

  #read(chunk: Buffer): void {
    let start = 0
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      this.#chunks.push(chunk.subarray(start, nl))
      const line = Buffer.concat(this.#chunks).toString('utf8')
      this.#chunks = []
      this.#buffered = 0
      start = nl + 1
      this.#line(line)
      if (this.#closed) return
    }
    if (start < chunk.length) {
      this.#chunks.push(chunk.subarray(start))
      this.#buffered += chunk.length - start
      if (this.#buffered > this.#spec.maxMessageBytes) this.#refuse(`a message over ${this.#spec.maxMessageBytes} bytes`)
    }
  }

  #line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    if (line.trim() === '') return
    if (Buffer.byteLength(line) > this.#spec.maxMessageBytes) {
      this.#refuse(`a message over ${this.#spec.maxMessageBytes} bytes`)
      return
    }
    let message: JSONRPCMessage
    try {
      message = parseJSONRPCMessage(JSON.parse(line))
    } catch {
      // Not JSON-RPC (a server printing logs on stdout): dropped, never forwarded.
      this.onerror?.(new Error('upstream wrote a line that is not a JSON-RPC message'))
      return
    }
    this.onmessage?.(message)
  }

  #readStderr(chunk: Buffer): void {
    this.#stderr += chunk.toString('utf8')
    let nl = this.#stderr.indexOf('\n')
    while (nl !== -1) {
      const line = this.#stderr.slice(0, nl).trimEnd()
      if (line !== '') this.#spec.onStderr(line.slice(0, 2000))
      this.#stderr = this.#stderr.slice(nl + 1)
      nl = this.#stderr.indexOf('\n')
    }
    // Bounded: a process writing one endless line is logged in pieces.
    if (this.#stderr.length > 64 * 1024) {
      this.#spec.onStderr(this.#stderr.slice(0, 2000))
      this.#stderr = ''
    }
  }

  #refuse(why: string): void {
    this.#chunks = []
    this.#buffered = 0
    this.onerror?.(new Error(`upstream sent ${why}: stopping it`))
    void this.close()
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.#child?.stdin
    if (stdin === undefined || stdin === null || this.#closed) throw new Error('upstream process is not running')
    const text = serializeMessage(message)
    await new Promise<void>((resolve, reject) => {
      stdin.write(text, (error) => (error ? reject(new Error('upstream process stopped reading')) : resolve()))
    })
  }

  /** Stop it and everything it started: SIGTERM to the group, SIGKILL after a grace. */
  async close(): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin?.end()
      killGroup(child.pid, 'SIGTERM')
      const grace = setTimeout(() => killGroup(child.pid, 'SIGKILL'), 2000)
      grace.unref()
      await this.exited
      clearTimeout(grace)
    }
    // Whatever it left behind in its group.
    killGroup(child.pid, 'SIGKILL')
  }
}
