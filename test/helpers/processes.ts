import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

export const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

/** A free loopback TCP port (closed again before it is returned). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** A process that says `listening on URL` on stdout; resolves then, with what it printed until then. */
export function listeningProcess(
  command: string,
  args: readonly string[],
  options: { readonly cwd: string; readonly env?: NodeJS.ProcessEnv; readonly group?: boolean },
): Promise<{ url: string; stdout: string; child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(command, args, { cwd: options.cwd, detached: options.group === true, stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env })
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      // With `group`, the process and what it started (npm and its script): the whole group.
      if (options.group === true) process.kill(-(child.pid ?? 0), 'SIGTERM')
      else child.kill('SIGTERM')
    })
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString()
    })
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /listening on (\S+)/.exec(out)
      if (m?.[1] !== undefined) resolve({ url: m[1], stdout: out, child, stop })
    })
    child.once('exit', (code) => reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${out}\n${err}`)))
  })
}

/** A `mcp-bastion serve` process; resolves once it listens, with what it printed until then (a first run's admin key). */
export function serveProcess(cwd: string, args: string[], env: Record<string, string> = {}): Promise<{ url: string; stdout: string; child: ChildProcess; stop(): Promise<void> }> {
  return listeningProcess(process.execPath, [BIN, 'serve', '--port', '0', ...args], { cwd, env: { ...process.env, ...env } })
}

/** Run a command to its end (killed after `timeoutMs`, default 15 s); stdin is closed, as in CI. */
export function runProcess(
  command: string,
  args: readonly string[],
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Its own process group: at the deadline the whole group goes (npx leaves its child running otherwise, holding the pipes).
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString()
    })
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString()
    })
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
      } catch {
        child.kill('SIGKILL')
      }
    }, options.timeoutMs ?? 15_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/**
 * A private redis-server on a free loopback port, for outage tests: stopping it never touches the
 * machine's shared Redis. Fails loudly if redis-server is not installed.
 */
export async function privateRedis(): Promise<{ port: number; url: string; stop(): Promise<void>; start(): Promise<void>; signal(signal: 'SIGSTOP' | 'SIGCONT'): void }> {
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
      child = proc
      let out = ''
      proc.once('error', (e) => reject(new Error(`cannot start redis-server: ${e.message}`)))
      proc.stdout?.on('data', (c: Buffer) => {
        out += c.toString()
        if (out.includes('Ready to accept connections')) resolve()
      })
      proc.once('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)))
    })
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      const proc = child
      if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return resolve()
      proc.once('exit', () => resolve())
      proc.kill('SIGKILL')
    })
  /** Pause (a hung server: connected, never answers) or resume the process started here, by its PID. */
  const signal = (sig: 'SIGSTOP' | 'SIGCONT'): void => {
    const pid = child?.pid
    if (pid === undefined || child?.exitCode !== null || child.signalCode !== null) throw new Error('the private redis-server is not running')
    process.kill(pid, sig)
  }
  await start()
  return { port, url: `redis://127.0.0.1:${port}`, stop, start, signal }
}
