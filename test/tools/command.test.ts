import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CallToolResult } from '@modelcontextprotocol/server'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { commandsSchema } from '../../src/config/command-schema.js'
import { publicText, type SecurityError, toSecurityError } from '../../src/errors.js'
import { runCommandTool } from '../../src/tools/command.js'
import { Workspace } from '../../src/tools/confine.js'
import type { ToolContext, ToolOutput } from '../../src/tools/registry.js'
import { INPUT_HELPERS } from '../../src/transport/mcp-server.js'
import { waitFor } from '../helpers/wait.js'

// Unique sleep durations: `pgrep -f` finds exactly the children of this test run, if any survive.
const TAG = String(process.pid).padStart(8, '0')
const SLEEP_TIMEOUT = `5.${TAG}1`
const SLEEP_ABORT = `5.${TAG}2`
const SLEEP_BACKGROUND = `5.${TAG}3`
const audited: Record<string, unknown>[] = []
const ctxBase: Omit<ToolContext, 'signal'> = {
  requestId: 'r-1',
  principal: { id: 'key:test', kind: 'api-key', name: 't', roles: ['admin'] },
  mcp: {} as ToolContext['mcp'],
  canElicit: false,
  input: INPUT_HELPERS,
  policy: {},
  audit: (fields) => {
    audited.push(fields)
  },
}

let base: string
let root: string
let workspace: Workspace
let tool: ReturnType<typeof runCommandTool>

const sleepParam = { seconds: { type: 'string', pattern: '[0-9]+(\\.[0-9]+)?' } } as const
const COMMANDS = {
  echo: { description: 'print text', executable: '/bin/echo', args: ['{text}'], params: { text: { type: 'string', maxLength: 1000 } } },
  echo_dash: { description: 'print text, dashes allowed', executable: '/bin/echo', args: ['{text}'], params: { text: { type: 'string', allowDash: true } } },
  greet: {
    description: 'pattern and enum',
    executable: '/bin/echo',
    args: ['{word}', '{mode}'],
    params: { word: { type: 'string', pattern: '[a-z]+' }, mode: { type: 'string', enum: ['fast', 'slow'], optional: true } },
  },
  cat: { description: 'print a file', executable: '/bin/cat', args: ['--', '{file}'], params: { file: { type: 'path' } } },
  head: {
    description: 'first lines',
    executable: '/usr/bin/head',
    args: ['-n', '{lines}', '--', '{file}'],
    params: { lines: { type: 'integer', min: 1, max: 100 }, file: { type: 'path' } },
  },
  env: { description: 'print the environment', executable: '/usr/bin/env', env: { EXTRA_VAR: 'configured' } },
  pwd: { description: 'print cwd', executable: '/bin/pwd' },
  pwd_sub: { description: 'print cwd', executable: '/bin/pwd', cwd: 'sub' },
  sleep: { description: 'sleep', executable: '/bin/sleep', args: ['{seconds}'], params: sleepParam, timeoutMs: 300 },
  sleep_long: { description: 'sleep', executable: '/bin/sleep', args: ['{seconds}'], params: sleepParam, timeoutMs: 10_000 },
  yes: { description: 'endless output', executable: '/usr/bin/yes', maxOutputBytes: 4096 },
  sh_argv: { description: 'fixed script', executable: '/bin/sh', args: ['-c', 'echo "$#:$*"', 'sh'] },
  sh_exit: { description: 'fails', executable: '/bin/sh', args: ['-c', 'echo out; echo err >&2; exit 3'] },
  sh_background: { description: 'leaves a child', executable: '/bin/sh', args: ['-c', `/bin/sleep ${SLEEP_BACKGROUND} & echo started`] },
}

beforeAll(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), 'bastion-command-')))
  root = join(base, 'workspace')
  await mkdir(join(root, 'sub'), { recursive: true })
  await writeFile(join(root, 'note.txt'), 'first line\nsecond line\n')
  await writeFile(join(base, 'plain.txt'), 'not a program', { mode: 0o644 })
  await symlink('/etc', join(root, 'etc-link'))
  workspace = await Workspace.open(root)
  tool = runCommandTool({ workspace, commands: commandsSchema.parse(COMMANDS) })
})

afterAll(async () => {
  await rm(base, { recursive: true, force: true })
})

function call(input: unknown, signal: AbortSignal = new AbortController().signal): Promise<ToolOutput> {
  return tool.run(tool.input.parse(input), { ...ctxBase, signal })
}

function texts(output: ToolOutput): { isError: boolean; texts: string[] } {
  if (!('content' in output)) throw new Error('expected a call result')
  const result = output as CallToolResult
  return { isError: result.isError === true, texts: result.content.map((c) => (c.type === 'text' ? c.text : `<${c.type}>`)) }
}

async function refusal(promise: Promise<unknown>): Promise<SecurityError> {
  try {
    await promise
  } catch (error) {
    return toSecurityError(error)
  }
  throw new Error('expected a refusal, got success')
}

function expectNoLeak(error: SecurityError, payload?: string): void {
  for (const shown of [publicText(error), error.expose ?? '']) {
    expect(shown).not.toContain(base)
    expect(shown).not.toContain('/bin/')
    if (payload !== undefined && payload.length > 2) expect(shown).not.toContain(payload)
  }
}

function running(pattern: string): boolean {
  try {
    execFileSync('/usr/bin/pgrep', ['-f', pattern])
    return true
  } catch {
    return false
  }
}

describe('run_command: no shell', () => {
  const METACHARACTERS = [
    { name: 'command separator', text: '; rm -rf /' },
    { name: 'command substitution', text: '$(id)' },
    { name: 'backticks', text: '`id`' },
    { name: 'pipe', text: '| cat /etc/passwd' },
    { name: 'and-list creating a file', text: '&& touch pwned' },
    { name: 'glob', text: '*' },
    { name: 'variable expansion', text: '$HOME $IFS~' },
    { name: 'redirection', text: '> pwned' },
  ]

  it.each(METACHARACTERS)('$name reaches echo as one literal argument', async ({ text }) => {
    expect(texts(await call({ command: 'echo', args: { text } }))).toStrictEqual({ isError: false, texts: [`${text}\n`] })
    expect(existsSync(join(root, 'pwned'))).toBe(false)
  })

  it('a fixed /bin/sh script receives only its configured argv', async () => {
    expect(texts(await call({ command: 'sh_argv' })).texts).toStrictEqual(['0:\n'])
    const error = await refusal(call({ command: 'sh_argv', args: { extra: '; id' } }))
    expect(error.code).toBe('ERR_VALIDATION')
    expect(publicText(error)).toBe('invalid arguments: args.extra: unknown parameter')
  })

  it('property: any printable string not starting with "-" is echoed exactly', async () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !/\p{Cc}/u.test(s) && !s.startsWith('-'))
    await fc.assert(
      fc.asyncProperty(text, async (value) => {
        expect(texts(await call({ command: 'echo', args: { text: value } })).texts).toStrictEqual([`${value}\n`])
      }),
      { numRuns: 30 },
    )
  })
})

describe('run_command: argument validation', () => {
  const ATTACKS = [
    { name: 'option injection --help', input: { command: 'echo', args: { text: '--help' } }, code: 'ERR_VALIDATION', expose: 'args.text: must not start with "-"' },
    { name: 'option injection -n', input: { command: 'echo', args: { text: '-n' } }, code: 'ERR_VALIDATION', expose: 'args.text: must not start with "-"' },
    { name: 'newline', input: { command: 'echo', args: { text: 'a\nid' } }, code: 'ERR_VALIDATION', expose: 'args.text: must not contain control characters' },
    { name: 'NUL byte', input: { command: 'echo', args: { text: 'a\u0000b' } }, code: 'ERR_VALIDATION', expose: 'args.text: must not contain control characters' },
    { name: 'escape sequence', input: { command: 'echo', args: { text: '\u001b[2J' } }, code: 'ERR_VALIDATION', expose: 'args.text: must not contain control characters' },
    { name: 'lone surrogate', input: { command: 'echo', args: { text: 'a\uD800' } }, code: 'ERR_VALIDATION', expose: 'args.text: must be well-formed Unicode' },
    { name: 'over maxLength', input: { command: 'echo', args: { text: 'a'.repeat(1001) } }, code: 'ERR_VALIDATION', expose: 'args.text: longer than 1000 characters' },
    { name: 'missing param', input: { command: 'echo' }, code: 'ERR_VALIDATION', expose: 'args.text: required' },
    { name: 'number for a string', input: { command: 'echo', args: { text: 5 } }, code: 'ERR_VALIDATION', expose: 'args.text: must be a string' },
    {
      name: 'unknown odd-named param',
      input: { command: 'echo', args: { text: 'x', 'Evil-Key!': 'y' } },
      code: 'ERR_VALIDATION',
      expose: 'args.(unrecognised name): unknown parameter',
    },
    { name: 'pattern mismatch', input: { command: 'greet', args: { word: 'abc1' } }, code: 'ERR_VALIDATION', expose: 'args.word: does not match the allowed pattern' },
    { name: 'pattern is anchored', input: { command: 'greet', args: { word: 'abc def' } }, code: 'ERR_VALIDATION', expose: 'args.word: does not match the allowed pattern' },
    { name: 'not in enum', input: { command: 'greet', args: { word: 'hi', mode: 'warp' } }, code: 'ERR_VALIDATION', expose: 'args.mode: not one of the allowed values' },
    { name: 'integer below min', input: { command: 'head', args: { lines: 0, file: 'note.txt' } }, code: 'ERR_VALIDATION', expose: 'args.lines: must be between 1 and 100' },
    { name: 'integer above max', input: { command: 'head', args: { lines: 101, file: 'note.txt' } }, code: 'ERR_VALIDATION', expose: 'args.lines: must be between 1 and 100' },
    { name: 'fractional integer', input: { command: 'head', args: { lines: 1.5, file: 'note.txt' } }, code: 'ERR_VALIDATION', expose: 'args.lines: must be an integer' },
    { name: 'string for an integer', input: { command: 'head', args: { lines: '-5', file: 'note.txt' } }, code: 'ERR_VALIDATION', expose: 'args.lines: must be an integer' },
    {
      name: 'path traversal',
      input: { command: 'cat', args: { file: '../../etc/passwd' } },
      code: 'ERR_PATH_FORBIDDEN',
      expose: 'args.file: "." and ".." segments are not accepted',
    },
    {
      name: 'dot segments that stay inside',
      input: { command: 'cat', args: { file: './sub/../note.txt' } },
      code: 'ERR_PATH_FORBIDDEN',
      expose: 'args.file: "." and ".." segments are not accepted',
    },
    {
      name: 'newline in a path (the path rule decides, as for read_file)',
      input: { command: 'cat', args: { file: 'note\n.txt' } },
      code: 'ERR_PATH_FORBIDDEN',
      expose: 'args.file: control characters and line breaks are not accepted',
    },
    {
      name: 'backslash in a path',
      input: { command: 'cat', args: { file: 'sub\\note.txt' } },
      code: 'ERR_PATH_FORBIDDEN',
      expose: 'args.file: backslashes are not accepted; the separator is "/"',
    },
    { name: 'absolute path', input: { command: 'cat', args: { file: '/etc/passwd' } }, code: 'ERR_PATH_FORBIDDEN' },
    { name: 'percent-encoded traversal', input: { command: 'cat', args: { file: '%2e%2e/x' } }, code: 'ERR_PATH_FORBIDDEN' },
    { name: 'symlink out of the workspace', input: { command: 'cat', args: { file: 'etc-link/passwd' } }, code: 'ERR_PATH_FORBIDDEN' },
    { name: 'missing file', input: { command: 'cat', args: { file: 'nope.txt' } }, code: 'ERR_FILE_NOT_FOUND' },
  ] as const

  it.each(ATTACKS)('$name → $code, nothing leaked', async ({ input, code, ...rest }) => {
    const error = await refusal(call(input))
    expect(error.code).toBe(code)
    if ('expose' in rest) expect(error.expose).toBe(rest.expose)
    expectNoLeak(
      error,
      Object.values('args' in input ? input.args : {})
        .map(String)
        .join(''),
    )
  })

  it('allowDash lets a leading dash through as data', async () => {
    expect(texts(await call({ command: 'echo_dash', args: { text: '-x' } })).texts).toStrictEqual(['-x\n'])
  })

  it('an absent optional param drops its argv element; enum and pattern values pass', async () => {
    expect(texts(await call({ command: 'greet', args: { word: 'hi' } })).texts).toStrictEqual(['hi\n'])
    expect(texts(await call({ command: 'greet', args: { word: 'hi', mode: 'slow' } })).texts).toStrictEqual(['hi slow\n'])
  })

  it('a path param reaches the child as the file inside the workspace', async () => {
    expect(texts(await call({ command: 'cat', args: { file: 'note.txt' } })).texts).toStrictEqual(['first line\nsecond line\n'])
    expect(texts(await call({ command: 'head', args: { lines: 1, file: 'note.txt' } })).texts).toStrictEqual(['first line\n'])
  })

  it('the input schema refuses unknown commands and extra keys', () => {
    expect(tool.input.safeParse({ command: 'rm', args: {} }).success).toBe(false)
    expect(tool.input.safeParse({ command: 'echo', args: {}, shell: true }).success).toBe(false)
  })
})

describe('run_command: environment and cwd', () => {
  it('passes only PATH, LANG, HOME and the configured variables', async () => {
    process.env.BASTION_TEST_CANARY = `canary-${TAG}`
    try {
      const [out = ''] = texts(await call({ command: 'env' })).texts
      expect(out).not.toContain('canary-')
      const vars = Object.fromEntries(
        out
          .trimEnd()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      )
      expect(vars).toStrictEqual({ PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: root, EXTRA_VAR: 'configured' })
    } finally {
      delete process.env.BASTION_TEST_CANARY
    }
  })

  it('runs in the workspace root, or the configured subdirectory', async () => {
    expect(texts(await call({ command: 'pwd' })).texts).toStrictEqual([`${root}\n`])
    expect(texts(await call({ command: 'pwd_sub' })).texts).toStrictEqual([`${join(root, 'sub')}\n`])
  })
})

describe('run_command: limits and outcomes', () => {
  it('kills a command past its timeout with ERR_TOOL_TIMEOUT', async () => {
    const started = performance.now()
    const error = await refusal(call({ command: 'sleep', args: { seconds: SLEEP_TIMEOUT } }))
    expect(error.code).toBe('ERR_TOOL_TIMEOUT')
    expect(performance.now() - started).toBeLessThan(2000)
    expect(running(`sleep ${SLEEP_TIMEOUT}`)).toBe(false)
    expectNoLeak(error)
  })

  it('kills a command over the output cap with ERR_OUTPUT_TOO_LARGE', async () => {
    const started = performance.now()
    const error = await refusal(call({ command: 'yes' }))
    expect(error.code).toBe('ERR_OUTPUT_TOO_LARGE')
    expect(performance.now() - started).toBeLessThan(2000)
    expectNoLeak(error)
  })

  it('an aborted call rejects with the signal reason and kills the child', async () => {
    const controller = new AbortController()
    const reason = new Error('client went away')
    const started = performance.now()
    const pending = call({ command: 'sleep_long', args: { seconds: SLEEP_ABORT } }, controller.signal)
    // Aborted once the child runs, not after a guessed delay: the kill is what this test is about.
    await waitFor(() => running(`sleep ${SLEEP_ABORT}`), { what: `the child sleep ${SLEEP_ABORT} to run`, intervalMs: 20 })
    controller.abort(reason)
    await expect(pending).rejects.toBe(reason)
    expect(performance.now() - started).toBeLessThan(2000)
    expect(running(`sleep ${SLEEP_ABORT}`)).toBe(false)
  })

  it('an already aborted signal never starts the command', async () => {
    const controller = new AbortController()
    controller.abort(new Error('gone'))
    await expect(call({ command: 'pwd' }, controller.signal)).rejects.toThrow('gone')
  })

  it('kills background descendants when the command exits', async () => {
    expect(texts(await call({ command: 'sh_background' })).texts).toStrictEqual(['started\n'])
    expect(running(`sleep ${SLEEP_BACKGROUND}`)).toBe(false)
  })

  it('a non-zero exit is an in-band error with the exit code and both streams', async () => {
    audited.length = 0
    expect(texts(await call({ command: 'sh_exit' }))).toStrictEqual({ isError: true, texts: ['exit code 3', 'out\n', 'stderr:\nerr\n'] })
    expect(audited).toStrictEqual([{ command: 'sh_exit', exitCode: 3 }])
  })

  it('an executable that vanished after construction fails with ERR_TOOL_FAILED, no host path', async () => {
    const script = join(base, 'gone.sh')
    await writeFile(script, '#!/bin/sh\necho hi\n')
    await chmod(script, 0o755)
    const vanishing = runCommandTool({ workspace, commands: commandsSchema.parse({ gone: { description: 'd', executable: script } }) })
    await rm(script)
    const error = await refusal(vanishing.run(vanishing.input.parse({ command: 'gone' }), { ...ctxBase, signal: new AbortController().signal }))
    expect(error.code).toBe('ERR_TOOL_FAILED')
    expect(error.message).toContain('could not start: ENOENT')
    expectNoLeak(error)
  })
})

describe('commands config', () => {
  const BAD = [
    { name: 'relative executable', command: { executable: 'bin/echo' }, fragment: 'must be an absolute path' },
    { name: 'dot-dot executable', command: { executable: '/usr/../bin/echo' }, fragment: 'must not contain .. segments' },
    { name: 'placeholder inside an element', command: { args: ['--n={count}'], params: { count: { type: 'integer' } } }, fragment: 'args[0] "--n={count}" mixes a placeholder' },
    { name: 'undeclared placeholder', command: { args: ['{text}'] }, fragment: 'args[0] uses {text}, which is not a declared param' },
    { name: 'unused param', command: { args: [], params: { text: { type: 'string' } } }, fragment: 'param text is declared but no args element uses it' },
    { name: 'invalid pattern', command: { args: ['{t}'], params: { t: { type: 'string', pattern: '(' } } }, fragment: 'not a valid regular expression' },
    { name: 'min above max', command: { args: ['{n}'], params: { n: { type: 'integer', min: 5, max: 1 } } }, fragment: 'min is greater than max' },
    { name: 'string option on an integer', command: { args: ['{n}'], params: { n: { type: 'integer', allowDash: true } } }, fragment: 'allowDash' },
    { name: 'lower-case env name', command: { env: { path: '/tmp' } }, fragment: 'upper-case letters' },
    { name: 'cwd outside the path rule', command: { cwd: '../elsewhere' }, fragment: 'not a workspace path: "." and ".." segments are not accepted' },
    { name: 'absolute cwd', command: { cwd: '/tmp' }, fragment: 'not a workspace path: absolute paths are not accepted' },
  ]

  it.each(BAD)('$name is refused', ({ command, fragment }) => {
    const result = commandsSchema.safeParse({ run: { description: 'd', executable: '/bin/echo', ...command } })
    expect(result.success).toBe(false)
    expect(JSON.stringify(result.error?.issues)).toContain(JSON.stringify(fragment).slice(1, -1))
  })

  it('refuses a command name that is not lower-case snake case', () => {
    expect(commandsSchema.safeParse({ 'Run-It': { description: 'd', executable: '/bin/echo' } }).success).toBe(false)
  })

  it('fills the documented defaults', () => {
    expect(commandsSchema.parse({ run: { description: 'd', executable: '/bin/echo' } })).toStrictEqual({
      run: { description: 'd', executable: '/bin/echo', args: [], params: {}, timeoutMs: 10_000, maxOutputBytes: 1024 * 1024, env: {} },
    })
  })

  const UNUSABLE = [
    { name: 'a missing executable', executable: '/nonexistent/bin/tool', message: 'missing or not executable' },
    { name: 'a file without the execute bit', executable: '__BASE__/plain.txt', message: 'missing or not executable' },
    { name: 'a directory', executable: '/usr/bin', message: 'not a regular file' },
  ]

  it.each(UNUSABLE)('runCommandTool refuses $name', ({ executable, message }) => {
    expect(() => runCommandTool({ workspace, commands: commandsSchema.parse({ run: { description: 'd', executable: executable.replace('__BASE__', base) } }) })).toThrow(message)
  })

  it('runCommandTool refuses an empty allowlist', () => {
    expect(() => runCommandTool({ workspace, commands: {} })).toThrow('allowlist is empty')
  })

  it('describes every command and its params', () => {
    expect(tool.description).toContain('- head: first lines Parameters: lines (integer 1..100); file (workspace-relative path)')
    expect(tool.description).toContain('mode (one of fast, slow, optional)')
    expect(tool.permissions).toStrictEqual(['commands:run'])
  })
})
