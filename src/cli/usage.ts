/**
 * Exit statuses, the same for every command (README "CLI"): a script can tell a failed check from
 * a mistyped command line.
 */
export const EXIT = {
  ok: 0,
  /** The check failed: audit trail tampered, replay found changes with `--fail-on-change`, config check found problems; or the command could not do its work. */
  failed: 1,
  /** A usage or configuration error: nothing was done. */
  usage: 2,
  /** `audit verify` found no audit key: nothing was verified. */
  noAuditKey: 3,
} as const

export interface Flag {
  readonly name: string
  /** The value's placeholder (`FILE`); absent for a boolean flag. */
  readonly value?: string
  readonly multiple?: boolean
  readonly help: string
}

/** One command: what `--help` prints and what its command line may hold. */
export interface CommandSpec {
  /** `keys create`. */
  readonly name: string
  /** Synopsis lines, without the leading `mcp-bastion `. */
  readonly usage: readonly string[]
  /** One line for the command list of `mcp-bastion --help`. */
  readonly brief: string
  readonly summary: string
  readonly flags: readonly Flag[]
  /** How many positional arguments (default none). */
  readonly positionals?: { readonly name: string; readonly min: number; readonly max: number }
  readonly examples: readonly string[]
}

/** A mistake on the command line; `command` is the command whose usage follows the message. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
  constructor(
    readonly command: CommandSpec | undefined,
    message: string,
  ) {
    super(message)
  }
}

const HELP_FLAG: Flag = { name: 'help', help: 'show this help (also -h)' }

function flagLabel(f: Flag): string {
  return `--${f.name}${f.value === undefined ? '' : ` ${f.value}`}`
}

/** The synopsis lines, each under the first (continuation lines start with a space and are aligned as written). */
export function synopsis(spec: CommandSpec, indent: string): string {
  return spec.usage.map((u, i) => `${i === 0 ? '' : indent}${u.startsWith(' ') ? `            ${u}` : `mcp-bastion ${u}`}`).join('\n')
}

/** The full help of a command: synopsis, one line per flag, examples. */
export function helpText(spec: CommandSpec): string {
  const flags = [...spec.flags, HELP_FLAG]
  const width = Math.max(...flags.map((f) => flagLabel(f).length)) + 2
  return [
    `Usage: ${synopsis(spec, '       ')}`,
    '',
    spec.summary,
    '',
    'Options:',
    ...flags.map((f) => `  ${flagLabel(f).padEnd(width)}${f.help}${f.multiple === true ? ' (repeatable)' : ''}`),
    '',
    `Example${spec.examples.length > 1 ? 's' : ''}:`,
    ...spec.examples.map((e) => `  ${e}`),
    '',
  ].join('\n')
}

/** What follows a usage error's one line: the synopsis and where the options are described. */
export function shortUsage(spec: CommandSpec): string {
  return `Usage: ${synopsis(spec, '       ')}\nRun 'mcp-bastion ${spec.name} --help' for the options.\n`
}

/** Is help asked for (`--help` or `-h` before any `--`)? */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false
    if (a === '--help' || a === '-h') return true
  }
  return false
}

/** A parsed command line: flag values by name and the positional arguments. */
export class Parsed {
  readonly #values: ReadonlyMap<string, readonly string[]>
  readonly #booleans: ReadonlySet<string>
  constructor(
    values: ReadonlyMap<string, readonly string[]>,
    booleans: ReadonlySet<string>,
    readonly positionals: readonly string[],
  ) {
    this.#values = values
    this.#booleans = booleans
  }
  string(name: string): string | undefined {
    return this.#values.get(name)?.at(-1)
  }
  strings(name: string): readonly string[] {
    return this.#values.get(name) ?? []
  }
  flag(name: string): boolean {
    return this.#booleans.has(name)
  }
}

/** A known flag close to an unknown one, for "did you mean". */
function closest(name: string, flags: readonly Flag[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j)
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0] ?? 0
      row[0] = i
      for (let j = 1; j <= b.length; j++) {
        const here = row[j] ?? 0
        row[j] = Math.min(here + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
        prev = here
      }
    }
    return row[b.length] ?? 0
  }
  const best = flags.map((f) => ({ f: f.name, d: distance(name, f.name) })).sort((x, y) => x.d - y.d)[0]
  return best !== undefined && best.d <= 2 ? best.f : undefined
}

/**
 * Parse a command line against a spec. `--name value` and `--name=value`; a value starting with
 * `-` only as `--name=-x`; arguments after `--` are positional.
 * @throws UsageError naming the flag or argument, with the spec for the usage that follows
 */
export function parseCommand(spec: CommandSpec, args: readonly string[]): Parsed {
  const fail = (message: string): never => {
    throw new UsageError(spec, message)
  }
  const byName = new Map(spec.flags.map((f) => [f.name, f]))
  const values = new Map<string, string[]>()
  const booleans = new Set<string>()
  const positionals: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? ''
    if (arg === '--') {
      positionals.push(...args.slice(i + 1))
      break
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg)
      continue
    }
    if (!arg.startsWith('--')) fail(`unknown option ${arg.slice(0, 40)}`)
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    const flag = byName.get(name)
    if (flag === undefined) {
      const near = closest(name, spec.flags)
      fail(`unknown option --${name.slice(0, 40)}${near === undefined ? '' : ` (did you mean --${near}?)`}`)
      continue
    }
    if (flag.value === undefined) {
      if (eq !== -1) fail(`option --${name} takes no value`)
      if (booleans.has(name)) fail(`option --${name} is given twice`)
      booleans.add(name)
      continue
    }
    let value: string
    if (eq !== -1) value = arg.slice(eq + 1)
    else {
      const next = args[i + 1]
      if (next === undefined || (next.startsWith('-') && next !== '-')) fail(`option --${name} needs a value (${flag.value})`)
      value = next ?? ''
      i += 1
    }
    if (value === '') fail(`option --${name} needs a value (${flag.value}), not an empty string`)
    const seen = values.get(name)
    if (seen !== undefined && flag.multiple !== true) fail(`option --${name} is given twice`)
    values.set(name, [...(seen ?? []), value])
  }
  const { name, min, max } = spec.positionals ?? { name: '', min: 0, max: 0 }
  if (positionals.length > max) fail(`unexpected argument ${JSON.stringify(positionals[max]?.slice(0, 80))}`)
  if (positionals.length < min) fail(`missing ${name}`)
  return new Parsed(values, booleans, positionals)
}
