#!/usr/bin/env node
import { SecurityError } from '../errors.js'
import { VERSION } from '../version.js'
import {
  ALL_COMMANDS,
  AUDIT_ROTATE_KEY,
  AUDIT_VERIFY,
  CALL,
  CONFIG_CHECK,
  type CommandGroup,
  DOCTOR,
  GRANTS_LIST,
  GRANTS_REVOKE,
  GROUPS,
  groupHelp,
  KEYS_CREATE,
  KEYS_LIST,
  KEYS_REVOKE,
  KEYS_ROTATE_SIGNING,
  POLICY_CHECK,
  POLICY_EXPLAIN,
  POLICY_REPLAY,
  SECRETS_ROTATE,
  SERVE,
  UPSTREAMS_DIFF,
  UPSTREAMS_LIST,
  UPSTREAMS_PIN,
  UPSTREAMS_STATUS,
} from './commands.js'
import { type CommandSpec, EXIT, helpText, type Parsed, parseCommand, shortUsage, UsageError, wantsHelp } from './usage.js'

type Run = (p: Parsed) => number | Promise<number> | Promise<void>

// Each command's module is loaded when it runs: help and usage mistakes answer without loading the
// server, the config schema or the SDK (a tenth of the start-up time).
const RUN = new Map<CommandSpec, () => Promise<Run>>([
  [SERVE, async () => (await import('./serve.js')).serve],
  [DOCTOR, async () => (await import('./doctor.js')).doctor],
  [CALL, async () => (await import('./call.js')).call],
  [KEYS_CREATE, async () => (await import('./keys.js')).keysCreate],
  [KEYS_LIST, async () => (await import('./keys.js')).keysList],
  [KEYS_REVOKE, async () => (await import('./keys.js')).keysRevoke],
  [KEYS_ROTATE_SIGNING, async () => (await import('./keys.js')).keysRotateSigning],
  [GRANTS_LIST, async () => (await import('./grants.js')).grantsList],
  [GRANTS_REVOKE, async () => (await import('./grants.js')).grantsRevoke],
  [UPSTREAMS_LIST, async () => (await import('./upstreams.js')).upstreamsList],
  [UPSTREAMS_PIN, async () => (await import('./upstreams.js')).upstreamsPin],
  [UPSTREAMS_DIFF, async () => (await import('./upstreams.js')).upstreamsDiff],
  [UPSTREAMS_STATUS, async () => (await import('./upstreams.js')).upstreamsStatus],
  [CONFIG_CHECK, async () => (await import('./config-check.js')).configCheck],
  [AUDIT_VERIFY, async () => (await import('./audit.js')).auditVerify],
  [AUDIT_ROTATE_KEY, async () => (await import('./audit.js')).auditRotateKey],
  [SECRETS_ROTATE, async () => (await import('./secrets.js')).secretsRotate],
  [POLICY_CHECK, async () => (await import('./policy.js')).policyCheck],
  [POLICY_EXPLAIN, async () => (await import('./policy.js')).policyExplain],
  [POLICY_REPLAY, async () => (await import('./policy.js')).policyReplay],
])

const HELP = `mcp-bastion ${VERSION} — a security-first MCP server

Usage: mcp-bastion <command> [options]     (mcp-bastion <command> --help, or mcp-bastion help <command>)

Commands:
${ALL_COMMANDS.map((s) => `  ${s.name.padEnd(21)}${s.brief}\n`).join('')}
Config: --config, else $BASTION_CONFIG, else ./bastion.yaml if present, else the embedded default.
Overrides: $BASTION_HOST, $BASTION_PORT (flags win). stdio mode reads the API key from $MCP_API_KEY.

Exit status: 0 ok; 1 the check failed (audit trail tampered, replay changes with --fail-on-change,
config check found problems) or the command could not do its work; 2 usage, config or state error;
3 audit verify found no audit key.
`

/** What a command line names: a command (with its remaining arguments), a group, or nothing known. */
function resolve(argv: readonly string[]): { spec: CommandSpec; rest: readonly string[] } | { group: CommandGroup; sub: string | undefined } | undefined {
  const [first, second, ...rest] = argv
  if (first === 'serve') return { spec: SERVE, rest: argv.slice(1) }
  if (first === 'doctor') return { spec: DOCTOR, rest: argv.slice(1) }
  if (first === 'call') return { spec: CALL, rest: argv.slice(1) }
  const group = first === undefined ? undefined : GROUPS.get(first)
  if (group === undefined) return undefined
  const spec = second === undefined ? undefined : group.subcommands.get(second)
  return spec === undefined ? { group, sub: second } : { spec, rest }
}

/** `help [command [subcommand]]`. */
function help(topic: readonly string[]): number {
  if (topic.length === 0) {
    process.stdout.write(HELP)
    return EXIT.ok
  }
  const found = resolve(topic)
  if (found !== undefined && 'spec' in found && found.rest.length === 0) process.stdout.write(helpText(found.spec))
  else if (found !== undefined && 'group' in found && found.sub === undefined) process.stdout.write(groupHelp(found.group))
  else throw new UsageError(undefined, `help: no command ${JSON.stringify(topic.join(' ').slice(0, 80))}`)
  return EXIT.ok
}

async function main(argv: readonly string[]): Promise<number | undefined> {
  const [command] = argv
  if (command === undefined || command === '--help' || command === '-h') return help([])
  if (command === 'help') return help(argv.slice(1))
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${VERSION}\n`)
    return EXIT.ok
  }
  const found = resolve(argv)
  if (found === undefined) throw new UsageError(undefined, `unknown command ${JSON.stringify(command.slice(0, 80))}`)
  if ('group' in found) {
    const { group, sub } = found
    if (sub === undefined || sub === '--help' || sub === '-h') {
      if (sub === undefined) {
        process.stderr.write(`mcp-bastion ${group.name}: missing subcommand (${[...group.subcommands.keys()].join(', ')})\n${groupHelp(group)}`)
        return EXIT.usage
      }
      process.stdout.write(groupHelp(group))
      return EXIT.ok
    }
    process.stderr.write(`mcp-bastion ${group.name}: unknown subcommand ${JSON.stringify(sub.slice(0, 80))} (${[...group.subcommands.keys()].join(', ')})\n${groupHelp(group)}`)
    return EXIT.usage
  }
  const { spec, rest } = found
  if (wantsHelp(rest)) {
    process.stdout.write(helpText(spec))
    return EXIT.ok
  }
  const load = RUN.get(spec)
  if (load === undefined) throw new Error(`no implementation for ${spec.name}`)
  const parsed = parseCommand(spec, rest)
  const status = await (await load())(parsed)
  return typeof status === 'number' ? status : undefined
}

/** One line naming what went wrong, then (for a usage error) the command's usage. */
function report(error: unknown): number {
  if (error instanceof UsageError) {
    const where = error.command === undefined ? 'mcp-bastion' : `mcp-bastion ${error.command.name}`
    process.stderr.write(`${where}: ${error.message}\n${error.command === undefined ? `Run 'mcp-bastion --help' for the commands.\n` : shortUsage(error.command)}`)
    return EXIT.usage
  }
  // By name: the config module is loaded only by the commands that read a config.
  if (error instanceof Error && (error.name === 'ConfigError' || error.name === 'StateFileError' || error.name === 'LockFileError')) {
    process.stderr.write(`mcp-bastion: ${error.message}\n`)
    return EXIT.usage
  }
  const startup = startupRefusal(error)
  if (startup !== undefined) {
    process.stderr.write(`mcp-bastion: ${startup}\n`)
    return EXIT.usage
  }
  if (error instanceof SecurityError) {
    process.stderr.write(`mcp-bastion: refused: ${error.code}\n`)
    return EXIT.failed
  }
  process.stderr.write(`mcp-bastion: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]}\n`)
  return EXIT.failed
}

const LISTEN_ERRORS = new Map([
  ['EADDRINUSE', 'the address is in use (another process listens there)'],
  ['EADDRNOTAVAIL', 'the address is not one of this machine (server.host, --host)'],
  ['EACCES', 'permission denied (a port below 1024 needs privileges)'],
])

/** A start-up refusal whose cause is the configuration or the machine: one line, exit 2. */
function startupRefusal(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined
  const e = error as NodeJS.ErrnoException & { address?: unknown; port?: unknown; reason?: unknown; library?: unknown }
  const why = e.code === undefined ? undefined : LISTEN_ERRORS.get(e.code)
  if (e.syscall === 'listen' && why !== undefined) {
    const host = typeof e.address === 'string' ? (e.address.includes(':') ? `[${e.address}]` : e.address) : undefined
    const where = host === undefined ? '' : typeof e.port === 'number' && e.port > 0 ? ` ${host}:${e.port}` : ` ${host}`
    return `cannot listen on${where}: ${why} (${e.code})`
  }
  // OpenSSL refuses a certificate or key: server.tls is the one place serve loads them.
  if (typeof e.code === 'string' && e.code.startsWith('ERR_OSSL')) {
    const reason = typeof e.reason === 'string' ? `${typeof e.library === 'string' ? `${e.library}: ` : ''}${e.reason}` : e.code
    return `server.tls: the certificate or key does not load (${reason}; ${e.code})`
  }
  return undefined
}

main(process.argv.slice(2)).then(
  (status) => {
    if (status !== undefined) process.exitCode = status
  },
  (error: unknown) => process.exit(report(error)),
)
