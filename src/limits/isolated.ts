import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { SecurityError } from '../errors.js'

/** How an isolated tool is run: which module and export, and its caps. */
export interface IsolateOptions {
  /** Module (path or file URL) whose export runs the tool: `(args, { requestId, principal, signal }) => result`. */
  readonly module: string | URL
  /** Export to call. Default `run`. */
  readonly export?: string
  /** Memory cap of the tool's process, MiB (V8 heap limit and resident set). Default 256. */
  readonly memoryMb?: number
  /** CPU time cap of the tool's process, ms (user + system, start-up included). Default 10,000. */
  readonly cpuMs?: number
  /** Environment of the tool's process, besides PATH, LANG and TZ. Nothing else is inherited. */
  readonly env?: Readonly<Record<string, string>>
}

export interface IsolatedRun {
  readonly module: string
  readonly exportName: string
  readonly args: unknown
  readonly context: { readonly requestId: string; readonly principal: unknown }
  readonly memoryMb: number
  readonly cpuMs: number
  readonly maxOutputBytes: number
  readonly env: Readonly<Record<string, string>>
  readonly signal: AbortSignal
  /** After an abort, how long the tool may take to stop before it is killed. */
  readonly graceMs?: number
}

export interface IsolatedUsage {
  readonly cpuMs: number
  readonly peakRssBytes: number
}

export class IsolatedRunError extends SecurityError {
  constructor(
    code: ConstructorParameters<typeof SecurityError>[0],
    message: string,
    readonly usage: IsolatedUsage,
  ) {
    super(code, message)
  }
}

const TICK_MS = 1000 / 100 // USER_HZ is 100 on every Linux ABI Node supports.
const POLL_MS = 20

/**
 * The runner is a plain Node entry point, so it is always the built file: the package's import map
 * (`#isolated-runner` in package.json) says where that is, like `main` and `bin` do.
 * @throws SecurityError ERR_INTERNAL when it is not there (not built).
 */
function runnerPath(): string {
  let path: string
  try {
    path = fileURLToPath(import.meta.resolve('#isolated-runner'))
  } catch (error) {
    throw new SecurityError('ERR_INTERNAL', 'isolated runner: package.json "imports" does not map #isolated-runner', { cause: error })
  }
  if (!existsSync(path)) throw new SecurityError('ERR_INTERNAL', `isolated runner not found at ${path}; run npm run build`)
  return path
}

/** CPU time (ms) and resident set (bytes, current and peak) of a live process, from /proc. */
function sample(pid: number): { cpuMs: number; rss: number; hwm: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const cpuMs = (Number(fields[11]) + Number(fields[12])) * TICK_MS
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) * 1024
    return { cpuMs, rss: kb('VmRSS'), hwm: kb('VmHWM') }
  } catch {
    return undefined
  }
}

function drain(stream: Readable | null, keep: number): () => string {
  let kept = ''
  stream?.on('data', (chunk: Buffer) => {
    if (kept.length < keep) kept += chunk.toString('utf8', 0, Math.min(chunk.length, keep - kept.length))
  })
  return () => kept
}

/**
 * Run one tool call in a fresh Node process: nothing shared with the server but what is passed,
 * a scrubbed environment, a V8 heap limit, and a watchdog that kills the process (SIGKILL) when
 * its CPU time or resident memory passes its cap, when its result is too large, or when the call
 * is aborted and the tool does not stop within the grace period. Resolves when the process is
 * gone, so a concurrency slot is held exactly as long as the work runs.
 * @throws IsolatedRunError ERR_TOOL_RESOURCE_LIMIT, ERR_OUTPUT_TOO_LARGE, ERR_TOOL_FAILED; or the
 *   signal's reason when aborted.
 * Does not check: what the tool does with the file system or network (a process boundary, not a
 * sandbox: run tools you trust not to be malicious, and confine them with the tools' own checks).
 */
export function runIsolated(run: IsolatedRun): Promise<{ result: unknown; usage: IsolatedUsage }> {
  return new Promise((resolve, reject) => {
    const memoryBytes = run.memoryMb * 1024 * 1024
    const child = spawn(process.execPath, [`--max-old-space-size=${run.memoryMb}`, '--max-semi-space-size=8', runnerPath()], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: process.env.LANG ?? 'C.UTF-8', TZ: process.env.TZ ?? 'UTC', ...run.env },
      detached: false,
    })
    let usage: IsolatedUsage = { cpuMs: 0, peakRssBytes: 0 }
    let verdict: { code: 'ERR_TOOL_RESOURCE_LIMIT' | 'ERR_OUTPUT_TOO_LARGE'; why: string } | undefined
    let aborted: unknown
    const chunks: Buffer[] = []
    let received = 0
    // The runner checks the size first; this bounds what a runner that did not could send.
    const ceiling = run.maxOutputBytes * 6 + 65_536
    const stderr = drain(child.stderr, 2048)
    drain(child.stdout, 0)
    const kill = (): void => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
    const result = child.stdio[3] as Readable | null
    result?.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received > ceiling) {
        verdict ??= { code: 'ERR_OUTPUT_TOO_LARGE', why: `result exceeds ${run.maxOutputBytes} bytes` }
        kill()
        return
      }
      chunks.push(chunk)
    })
    const watchdog = setInterval(() => {
      const pid = child.pid
      const now = pid === undefined ? undefined : sample(pid)
      if (now === undefined) return
      usage = { cpuMs: now.cpuMs, peakRssBytes: Math.max(usage.peakRssBytes, now.hwm) }
      if (now.cpuMs > run.cpuMs) verdict ??= { code: 'ERR_TOOL_RESOURCE_LIMIT', why: `cpu time ${now.cpuMs} ms over the cap of ${run.cpuMs} ms` }
      else if (now.rss > memoryBytes) verdict ??= { code: 'ERR_TOOL_RESOURCE_LIMIT', why: `resident memory ${now.rss} bytes over the cap of ${memoryBytes}` }
      if (verdict !== undefined) kill()
    }, POLL_MS)
    let graceTimer: NodeJS.Timeout | undefined
    const onAbort = (): void => {
      aborted = run.signal.reason ?? new Error('aborted')
      child.stdin?.write('abort\n', () => undefined)
      graceTimer = setTimeout(kill, run.graceMs ?? 250)
    }
    if (run.signal.aborted) onAbort()
    else run.signal.addEventListener('abort', onAbort, { once: true })
    child.stdin?.on('error', () => undefined)
    child.stdin?.write(`${JSON.stringify({ module: String(run.module), exportName: run.exportName, args: run.args, context: run.context, maxOutputBytes: run.maxOutputBytes })}\n`)

    child.on('error', (error) => {
      clearInterval(watchdog)
      reject(new IsolatedRunError('ERR_TOOL_FAILED', `cannot start isolated tool: ${error.message}`, usage))
    })
    child.on('close', (code, signal) => {
      clearInterval(watchdog)
      if (graceTimer !== undefined) clearTimeout(graceTimer)
      run.signal.removeEventListener('abort', onAbort)
      const tail = stderr()
      if (verdict !== undefined) return reject(new IsolatedRunError(verdict.code, verdict.why, usage))
      if (aborted !== undefined) return reject(aborted)
      if (/heap out of memory|Allocation failed/i.test(tail)) return reject(new IsolatedRunError('ERR_TOOL_RESOURCE_LIMIT', `V8 heap limit of ${run.memoryMb} MiB reached`, usage))
      let reply: { ok: boolean; result?: unknown; code?: string; detail?: string; maxRssBytes?: number; cpuMs?: number }
      try {
        reply = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof reply
      } catch {
        return reject(new IsolatedRunError('ERR_TOOL_FAILED', `isolated tool exited (${signal ?? code}) without a result: ${tail.slice(0, 500)}`, usage))
      }
      usage = { cpuMs: Math.max(usage.cpuMs, reply.cpuMs ?? 0), peakRssBytes: Math.max(usage.peakRssBytes, reply.maxRssBytes ?? 0) }
      if (reply.ok) return resolve({ result: reply.result, usage })
      const failure = reply.code === 'ERR_OUTPUT_TOO_LARGE' ? 'ERR_OUTPUT_TOO_LARGE' : 'ERR_TOOL_FAILED'
      return reject(new IsolatedRunError(failure, reply.detail ?? 'isolated tool failed', usage))
    })
  })
}
