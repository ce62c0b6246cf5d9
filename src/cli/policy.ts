import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { type BoundConfig, bindBuiltins } from '../compose/bind.js'
import { ConfigError, type LoadedConfig } from '../config/load.js'
import { CompiledPolicy, PolicyError, type Target, type TraceEntry } from '../policy/engine.js'
import { rbacRules } from '../policy/rbac.js'
import { replay } from '../policy/replay.js'
import { readPolicyFile } from '../policy/source.js'
import type { Principal } from '../principal.js'

export class PolicyUsageError extends Error {}

let loadConfig: (flag: string | undefined) => LoadedConfig

/**
 * The config bound to the tools the CLI serves, from their definitions: offline policy work
 * opens no state folder, workspace, keyring, database or Redis, and creates nothing.
 */
function offlineBinding(flag: string | undefined): BoundConfig {
  return bindBuiltins(loadConfig(flag))
}

/** The configured policy, or role rules plus a candidate file. @throws ConfigError */
function policyFor(bound: BoundConfig, candidate: string | undefined): CompiledPolicy {
  if (candidate === undefined) return bound.policy
  try {
    return CompiledPolicy.compile([...readPolicyFile(candidate), ...rbacRules(bound.grants)], bound.targets)
  } catch (error) {
    if (error instanceof PolicyError) throw new ConfigError(error.message)
    throw error
  }
}

function formatTrace(trace: readonly TraceEntry[]): string {
  if (trace.length === 0) return '  (no rule covers this target)\n'
  return trace.map((t) => `  ${t.effect.padEnd(5)} ${t.rule.padEnd(32)} ${t.result}${t.detail === undefined ? '' : ` (${t.detail})`}\n`).join('')
}

async function explain(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      policy: { type: 'string' },
      principal: { type: 'string' },
      role: { type: 'string', multiple: true },
      tenant: { type: 'string' },
      scope: { type: 'string', multiple: true },
      tool: { type: 'string' },
      prompt: { type: 'string' },
      resource: { type: 'string' },
      uri: { type: 'string' },
      action: { type: 'string' },
      args: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
  })
  const kinds = [values.tool, values.prompt, values.resource].filter((v) => v !== undefined)
  if (kinds.length !== 1) throw new PolicyUsageError('policy explain: give exactly one of --tool, --prompt, --resource NAME (with --uri)')
  let callArgs: unknown = {}
  if (values.args !== undefined) {
    try {
      callArgs = JSON.parse(values.args)
    } catch {
      throw new PolicyUsageError('policy explain: --args is not JSON')
    }
  }
  const principal: Principal = {
    id: values.principal ?? 'explain',
    kind: 'api-key',
    name: 'explain',
    roles: values.role ?? [],
    ...(values.tenant === undefined ? {} : { tenant: values.tenant }),
    ...(values.scope === undefined ? {} : { scopes: values.scope }),
  }
  const bound = offlineBinding(values.config)
  const policy = policyFor(bound, values.policy)
  let target: Target
  if (values.tool !== undefined) {
    const tool = bound.registry.get(values.tool)
    if (tool === undefined) throw new PolicyUsageError(`policy explain: no tool named ${JSON.stringify(values.tool)} is registered`)
    // Decide on what the tool would receive: the arguments as its schema validates them.
    const parsed = tool.definition.input.safeParse(callArgs)
    if (!parsed.success) throw new PolicyUsageError(`policy explain: the arguments do not validate for ${values.tool}: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
    callArgs = parsed.data
    target = { kind: 'tool', name: values.tool }
  } else if (values.prompt !== undefined) target = { kind: 'prompt', name: values.prompt }
  else {
    const action = values.action ?? 'read'
    if (action !== 'read' && action !== 'list') throw new PolicyUsageError('policy explain: --action is read or list')
    if (values.uri === undefined) throw new PolicyUsageError('policy explain: --resource needs --uri')
    target = { kind: 'resource', name: values.resource ?? '', uri: values.uri, action }
  }
  const trace: TraceEntry[] = []
  const decision = policy.decide(principal, target, callArgs, trace)
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ decision, trace }, null, 2)}\n`)
    return
  }
  process.stdout.write(`${decision.allow ? 'allow' : 'deny'} by ${decision.rule} (policy ${decision.version})${decision.error === undefined ? '' : `: ${decision.error}`}\n`)
  process.stdout.write(`rules evaluated, denies first:\n${formatTrace(trace)}`)
}

async function replayCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      policy: { type: 'string' },
      audit: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      'fail-on-change': { type: 'boolean' },
    },
    strict: true,
  })
  if (values.policy === undefined || values.audit === undefined)
    throw new PolicyUsageError('usage: mcp-bastion policy replay --audit FILE [--audit FILE…] --policy NEW.yaml [--config FILE]')
  const candidate = policyFor(offlineBinding(values.config), values.policy)
  const lines: { where: string; record: Record<string, unknown> }[] = []
  let unreadable = 0
  for (const file of values.audit) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (error) {
      throw new PolicyUsageError(`policy replay: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return
      try {
        const record = JSON.parse(line) as unknown
        if (record !== null && typeof record === 'object' && !Array.isArray(record)) lines.push({ where: `${file}:${i + 1}`, record: record as Record<string, unknown> })
        else unreadable += 1
      } catch {
        unreadable += 1
      }
    })
  }
  const report = replay(lines, candidate)
  if (values.json === true) process.stdout.write(`${JSON.stringify({ policy: candidate.version, ...report, unreadable }, null, 2)}\n`)
  else {
    process.stdout.write(
      `replayed ${report.replayed} decisions against policy ${candidate.version}: ${report.changes.length} would change` +
        `${report.skipped > 0 ? `, ${report.skipped} not replayable` : ''}${unreadable > 0 ? `, ${unreadable} unreadable lines` : ''}\n`,
    )
    for (const c of report.changes) {
      process.stdout.write(
        `  ${c.where} ${c.ts ?? ''} ${c.principal} ${c.target}: ${c.before.allow ? 'allow' : 'deny'} (${c.before.rule}) → ${c.after.allow ? 'allow' : 'deny'} (${c.after.rule})\n`,
      )
    }
  }
  if (values['fail-on-change'] === true && report.changes.length > 0) process.exitCode = 1
}

async function check(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string' } }, allowPositionals: true, strict: true })
  const [file] = positionals
  if (file === undefined || positionals.length > 1) throw new PolicyUsageError('usage: mcp-bastion policy check FILE [--config FILE]')
  const policy = policyFor(offlineBinding(values.config), file)
  process.stdout.write(`${file}: OK (policy ${policy.version}, ${policy.rules.length} rules with the role rules)\n`)
}

/** `mcp-bastion policy explain | replay | check`; `configFor` loads `--config` as every command does. */
export async function policyCommand(args: string[], configFor: (flag: string | undefined) => LoadedConfig): Promise<void> {
  loadConfig = configFor
  const [sub, ...rest] = args
  if (sub === 'explain') return explain(rest)
  if (sub === 'replay') return replayCommand(rest)
  if (sub === 'check') return check(rest)
  throw new PolicyUsageError(`policy: unknown subcommand ${JSON.stringify(sub ?? '')} (explain, replay, check)`)
}
