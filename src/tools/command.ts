import { type ChildProcess, spawn } from 'node:child_process'
import { accessSync, constants, type Stats, statSync } from 'node:fs'
import { z } from 'zod'
import { type CommandConfig, type CommandParam, type CommandsConfig, commandsSchema, PLACEHOLDER } from '../config/command-schema.js'
import { SecurityError } from '../errors.js'
import type { Workspace } from './confine.js'
import type { InProcessTool, ToolOutput } from './registry.js'

export interface RunCommandOptions {
  readonly workspace: Workspace
  readonly commands: CommandsConfig
}

const SAFE_PATH = '/usr/local/bin:/usr/bin:/bin'
const PARAM_NAME = /^[a-z][a-z0-9_]{0,63}$/
const CONTROL = /\p{Cc}/u
// With the `u` flag a surrogate range matches only unpaired halves: text that has no UTF-8 form.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u
// After the child exits, how long its pipes may stay open (held by a descendant that left the group).
const PIPE_GRACE_MS = 250

function inputSchema(names: readonly [string, ...string[]]) {
  return z.strictObject({
    command: z.enum(names).describe('Name of an allowlisted command'),
    args: z
      .record(z.string().max(64), z.union([z.string().max(65_536), z.number()]))
      .default({})
      .describe('Parameter values by name; see the tool description for each command'),
  })
}
export type RunCommandInput = ReturnType<typeof inputSchema>

interface Plan {
  readonly name: string
  readonly config: CommandConfig
  readonly params: ReadonlyMap<string, CommandParam>
  readonly patterns: ReadonlyMap<string, RegExp>
  /** argv template: a literal string, or the name of the param that fills the element. */
  readonly argv: readonly (string | { readonly param: string })[]
}

/**
 * `run_command`: run one allowlisted executable with an argv built from its configured template.
 * No shell: each param fills exactly one argv element, validated against its declared type first.
 * The child gets the workspace (or a configured subdirectory) as cwd, a scrubbed environment
 * (PATH, LANG, HOME = workspace root, plus configured literals), no stdin, a time limit and a cap
 * on stdout + stderr; its whole process group is SIGKILLed before the call settles.
 * @throws Error at construction for an invalid config, an empty allowlist, or an executable that is
 *   not an executable file.
 * Does not check: what the executable does with its arguments, or which files it opens, writes or
 *   deletes (paths in literals and in its own logic are not confined); network use; memory, CPU and
 *   disk use beyond the time limit; descendants that leave the process group (setsid); ReDoS in
 *   operator-written `pattern`s; which roles may run which command (a policy rule on
 *   `args.command` says that; the tool's own permission is `commands:run`).
 */
export function runCommandTool(options: RunCommandOptions): InProcessTool<RunCommandInput> {
  const { workspace } = options
  const parsed = commandsSchema.safeParse(options.commands)
  if (!parsed.success) throw new Error(`run_command: invalid commands config:\n${z.prettifyError(parsed.error)}`)
  const plans = new Map<string, Plan>()
  for (const [name, config] of Object.entries(parsed.data)) plans.set(name, compile(name, config))
  const [first, ...rest] = plans.keys()
  if (first === undefined) throw new Error('run_command: the commands allowlist is empty')
  const longest = Math.max(...[...plans.values()].map((p) => p.config.timeoutMs))
  return {
    name: 'run_command',
    title: 'Run an allowlisted command',
    description: describeCommands(plans),
    input: inputSchema([first, ...rest]),
    permissions: ['commands:run'],
    annotations: { destructiveHint: true, openWorldHint: false },
    // The command's own limit fires first, with its own error; the pipeline's is a backstop.
    timeoutMs: longest + 1000,
    async run({ command, args }, ctx) {
      const plan = plans.get(command)
      if (plan === undefined) throw new SecurityError('ERR_VALIDATION', `unknown command ${command}`, { expose: 'command: not allowlisted' })
      const argv = await bind(plan, args, workspace)
      const cwd = await workingDirectory(plan, workspace)
      const env: Record<string, string> = { PATH: SAFE_PATH, LANG: 'C.UTF-8', HOME: workspace.root, ...plan.config.env }
      const done = await execute(plan, argv, cwd, env, ctx.signal)
      ctx.audit({ command: plan.name, exitCode: done.code, ...(done.killedBy === null ? {} : { signal: done.killedBy }) })
      return outcome(done)
    },
  }
}

function compile(name: string, config: CommandConfig): Plan {
  let stats: Stats
  try {
    stats = statSync(config.executable)
    accessSync(config.executable, constants.X_OK)
  } catch (error) {
    throw new Error(`run_command: command ${name}: executable ${config.executable} is missing or not executable`, { cause: error })
  }
  if (!stats.isFile()) throw new Error(`run_command: command ${name}: executable ${config.executable} is not a regular file`)
  const params = new Map(Object.entries(config.params))
  const patterns = new Map<string, RegExp>()
  for (const [param, spec] of params) {
    if (spec.type === 'string' && spec.pattern !== undefined) patterns.set(param, new RegExp(`^(?:${spec.pattern})$`, 'u'))
  }
  const argv = config.args.map((element) => {
    const param = PLACEHOLDER.exec(element)?.[1]
    return param === undefined ? element : { param }
  })
  return { name, config, params, patterns, argv }
}

function describeCommands(plans: ReadonlyMap<string, Plan>): string {
  const lines = ['Run an allowlisted command. No shell: each parameter becomes exactly one argument. Commands:']
  for (const plan of plans.values()) {
    const params = [...plan.params].map(([name, p]) => {
      const kind =
        p.type === 'integer'
          ? `integer ${p.min}..${p.max ?? 'max'}`
          : p.type === 'path'
            ? 'workspace-relative path'
            : p.enum === undefined
              ? 'string'
              : `one of ${p.enum.join(', ')}`
      return `${name} (${kind}${p.optional ? ', optional' : ''})${p.description === undefined ? '' : `: ${p.description}`}`
    })
    lines.push(`- ${plan.name}: ${plan.config.description}${params.length === 0 ? ' (no parameters)' : ` Parameters: ${params.join('; ')}`}`)
  }
  return lines.join('\n')
}

function invalid(plan: Plan, param: string, what: string): SecurityError {
  // Only a name-shaped key is echoed back: `expose` never carries arbitrary client input.
  const shown = PARAM_NAME.test(param) ? param : '(unrecognised name)'
  return new SecurityError('ERR_VALIDATION', `command ${plan.name}: args.${JSON.stringify(param)} ${what}`, { expose: `args.${shown}: ${what}` })
}

async function bind(plan: Plan, args: Readonly<Record<string, string | number>>, workspace: Workspace): Promise<string[]> {
  const given = new Map(Object.entries(args))
  for (const key of given.keys()) if (!plan.params.has(key)) throw invalid(plan, key, 'unknown parameter')
  const values = new Map<string, string>()
  for (const [name, param] of plan.params) {
    const value = given.get(name)
    if (value === undefined) {
      if (!param.optional) throw invalid(plan, name, 'required')
      continue
    }
    values.set(name, await check(plan, name, param, value, workspace))
  }
  const argv: string[] = []
  for (const element of plan.argv) {
    if (typeof element === 'string') argv.push(element)
    else {
      const value = values.get(element.param)
      if (value !== undefined) argv.push(value)
    }
  }
  return argv
}

async function check(plan: Plan, name: string, param: CommandParam, value: string | number, workspace: Workspace): Promise<string> {
  if (param.type === 'integer') {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalid(plan, name, 'must be an integer')
    const max = param.max ?? Number.MAX_SAFE_INTEGER
    if (value < param.min || value > max) throw invalid(plan, name, `must be between ${param.min} and ${max}`)
    return String(value)
  }
  if (typeof value !== 'string') throw invalid(plan, name, 'must be a string')
  if (param.type === 'path') {
    // The workspace path rule alone decides (it refuses control characters and ill-formed
    // Unicode too): a path this refuses, read_file and write_file refuse, with the same text.
    try {
      return await workspace.resolve(value)
    } catch (error) {
      if (!(error instanceof SecurityError)) throw error
      throw new SecurityError(error.code, `command ${plan.name}: args.${name}: ${error.message}`, { cause: error, expose: `args.${name}: ${error.expose ?? 'refused'}` })
    }
  }
  if (CONTROL.test(value)) throw invalid(plan, name, 'must not contain control characters')
  if (LONE_SURROGATE.test(value)) throw invalid(plan, name, 'must be well-formed Unicode')
  if (value.length > param.maxLength) throw invalid(plan, name, `longer than ${param.maxLength} characters`)
  if (!param.allowDash && value.startsWith('-')) throw invalid(plan, name, 'must not start with "-"')
  if (param.enum !== undefined && !param.enum.includes(value)) throw invalid(plan, name, 'not one of the allowed values')
  const pattern = plan.patterns.get(name)
  if (pattern !== undefined && !pattern.test(value)) throw invalid(plan, name, 'does not match the allowed pattern')
  return value
}

async function workingDirectory(plan: Plan, workspace: Workspace): Promise<string> {
  if (plan.config.cwd === undefined) return workspace.root
  try {
    const real = await workspace.resolve(plan.config.cwd)
    const { handle } = await workspace.openChecked(real, 'directory')
    await handle.close()
    return real
  } catch (error) {
    throw new SecurityError('ERR_TOOL_FAILED', `command ${plan.name}: configured cwd is not a workspace directory`, { cause: error, expose: 'command could not start' })
  }
}

/** SIGKILL the child's whole process group (it leads one: `detached`). Gone already is fine. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // ESRCH: every member has exited.
  }
}

interface Finished {
  readonly code: number | null
  readonly killedBy: NodeJS.Signals | null
  readonly stdout: Buffer
  readonly stderr: Buffer
}

function execute(plan: Plan, argv: string[], cwd: string, env: Record<string, string>, signal: AbortSignal): Promise<Finished> {
  const { executable, timeoutMs, maxOutputBytes } = plan.config
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    let child: ChildProcess
    try {
      child = spawn(executable, argv, { cwd, env, shell: false, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true, detached: true })
    } catch (error) {
      return reject(startFailure(plan, error))
    }
    let stopped: 'timeout' | 'output' | 'abort' | undefined
    let settled = false
    let grace: NodeJS.Timeout | undefined
    let total = 0
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    const stop = (why: 'timeout' | 'output' | 'abort'): void => {
      stopped ??= why
      killGroup(child)
    }
    const timer = setTimeout(() => stop('timeout'), timeoutMs)
    const onAbort = (): void => stop('abort')
    signal.addEventListener('abort', onAbort, { once: true })
    const collect =
      (into: Buffer[]) =>
      (chunk: Buffer): void => {
        if (stopped !== undefined) return
        total += chunk.length
        if (total > maxOutputBytes) stop('output')
        else into.push(chunk)
      }
    child.stdout?.on('data', collect(stdout))
    child.stderr?.on('data', collect(stderr))
    const finish = (code: number | null, killedBy: NodeJS.Signals | null, failure?: unknown): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      clearTimeout(grace)
      signal.removeEventListener('abort', onAbort)
      if (failure !== undefined) reject(startFailure(plan, failure))
      else if (stopped === 'abort') reject(signal.reason)
      else if (stopped === 'timeout') {
        reject(new SecurityError('ERR_TOOL_TIMEOUT', `command ${plan.name} ran past ${timeoutMs} ms; killed`, { expose: `command ran longer than ${timeoutMs} ms` }))
      } else if (stopped === 'output') {
        const message = `command ${plan.name} wrote more than ${maxOutputBytes} bytes; killed`
        reject(new SecurityError('ERR_OUTPUT_TOO_LARGE', message, { expose: `command output over ${maxOutputBytes} bytes` }))
      } else resolve({ code, killedBy, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) })
    }
    // No 'exit' follows a failed spawn: nothing runs, so the call can settle at once.
    child.on('error', (error) => {
      if (child.pid === undefined) finish(null, null, error)
    })
    child.once('exit', () => {
      // Descendants left in the group die with the call. Node has reaped the leader; its pid stays
      // reserved as the group id while any member lives. With none left this is ESRCH, unless a
      // new process took the pid and led a group within these microseconds (the residual race).
      killGroup(child)
      grace = setTimeout(() => {
        child.stdout?.destroy()
        child.stderr?.destroy()
      }, PIPE_GRACE_MS)
    })
    child.once('close', (code, killedBy) => finish(code, killedBy))
  })
}

function startFailure(plan: Plan, error: unknown): SecurityError {
  const code = error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.name) : 'unknown error'
  return new SecurityError('ERR_TOOL_FAILED', `command ${plan.name} could not start: ${code}`, { cause: error, expose: 'command could not start' })
}

function decode(bytes: Buffer, stream: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    return `(${stream} is not valid UTF-8: ${bytes.length} bytes not shown)`
  }
}

function outcome({ code, killedBy, stdout, stderr }: Finished): ToolOutput {
  const out = decode(stdout, 'stdout')
  const err = stderr.length === 0 ? [] : [{ type: 'text' as const, text: `stderr:\n${decode(stderr, 'stderr')}` }]
  if (code === 0) return { content: [{ type: 'text', text: out }, ...err] }
  const status = code === null ? `terminated by signal ${killedBy ?? 'unknown'}` : `exit code ${code}`
  const shown = out === '' ? [] : [{ type: 'text' as const, text: out }]
  return { isError: true, content: [{ type: 'text', text: status }, ...shown, ...err] }
}
