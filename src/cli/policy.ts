import { readFileSync } from 'node:fs'
import { type BoundConfig, bindBuiltins } from '../compose/bind.js'
import { ConfigError } from '../config/load.js'
import { CompiledPolicy, PolicyError, type Target, type TraceEntry } from '../policy/engine.js'
import { rbacRules } from '../policy/rbac.js'
import { replay } from '../policy/replay.js'
import { readPolicyFile } from '../policy/source.js'
import type { Principal } from '../principal.js'
import { POLICY_EXPLAIN, POLICY_REPLAY } from './commands.js'
import { loadConfig } from './config-path.js'
import { EXIT, type Parsed, UsageError } from './usage.js'

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

/** `--claim NAME=JSON`: the value as JSON, else the text itself. */
function claimsOf(specs: readonly string[]): Record<string, unknown> | undefined {
  if (specs.length === 0) return undefined
  const claims = new Map<string, unknown>()
  for (const spec of specs) {
    const eq = spec.indexOf('=')
    if (eq < 1) throw new UsageError(POLICY_EXPLAIN, `--claim ${JSON.stringify(spec.slice(0, 40))}: write NAME=VALUE`)
    const text = spec.slice(eq + 1)
    let value: unknown = text
    try {
      value = JSON.parse(text)
    } catch {
      // A plain string.
    }
    claims.set(spec.slice(0, eq), value)
  }
  return Object.fromEntries(claims)
}

export function policyExplain(p: Parsed): number {
  const tool = p.string('tool')
  const prompt = p.string('prompt')
  const resource = p.string('resource')
  if ([tool, prompt, resource].filter((v) => v !== undefined).length !== 1)
    throw new UsageError(POLICY_EXPLAIN, 'give exactly one of --tool, --prompt, --resource NAME (with --uri)')
  let callArgs: unknown = {}
  const argsText = p.string('args')
  if (argsText !== undefined) {
    try {
      callArgs = JSON.parse(argsText)
    } catch {
      throw new UsageError(POLICY_EXPLAIN, '--args is not JSON')
    }
  }
  const tenant = p.string('tenant')
  const scopes = p.strings('scope')
  const claims = claimsOf(p.strings('claim'))
  const principal: Principal = {
    id: p.string('principal') ?? 'explain',
    kind: claims === undefined && scopes.length === 0 ? 'api-key' : 'jwt',
    name: p.string('name') ?? 'explain',
    roles: p.strings('role'),
    ...(tenant === undefined ? {} : { tenant }),
    ...(scopes.length === 0 ? {} : { scopes }),
    ...(claims === undefined ? {} : { claims }),
  }
  const bound = offlineBinding(p.string('config'))
  const policy = policyFor(bound, p.string('policy'))
  let target: Target
  if (tool !== undefined) {
    const registered = bound.registry.get(tool)
    if (registered === undefined) throw new UsageError(POLICY_EXPLAIN, `no tool named ${JSON.stringify(tool)} is registered`)
    // Decide on what the tool would receive: the arguments as its schema validates them.
    const parsed = registered.definition.input.safeParse(callArgs)
    if (!parsed.success) throw new UsageError(POLICY_EXPLAIN, `the arguments do not validate for ${tool}: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
    callArgs = parsed.data
    target = { kind: 'tool', name: tool }
  } else if (prompt !== undefined) target = { kind: 'prompt', name: prompt }
  else {
    const action = p.string('action') ?? 'read'
    const uri = p.string('uri')
    if (action !== 'read' && action !== 'list') throw new UsageError(POLICY_EXPLAIN, '--action is read or list')
    if (uri === undefined) throw new UsageError(POLICY_EXPLAIN, '--resource needs --uri')
    target = { kind: 'resource', name: resource ?? '', uri, action }
  }
  const trace: TraceEntry[] = []
  const decision = policy.decide(principal, target, callArgs, trace)
  if (p.flag('json')) {
    process.stdout.write(`${JSON.stringify({ decision, trace }, null, 2)}\n`)
    return EXIT.ok
  }
  process.stdout.write(`${decision.allow ? 'allow' : 'deny'} by ${decision.rule} (policy ${decision.version})${decision.error === undefined ? '' : `: ${decision.error}`}\n`)
  process.stdout.write(`rules evaluated, denies first:\n${formatTrace(trace)}`)
  return EXIT.ok
}

function readAuditLines(files: readonly string[]): { lines: { where: string; record: Record<string, unknown> }[]; unreadable: number } {
  const lines: { where: string; record: Record<string, unknown> }[] = []
  let unreadable = 0
  for (const file of files) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (error) {
      throw new UsageError(POLICY_REPLAY, `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
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
  return { lines, unreadable }
}

/** `policy replay`: exit 1 with `--fail-on-change` when a decision would change or cannot be decided again. */
export function policyReplay(p: Parsed): number {
  const file = p.string('policy')
  const audits = p.strings('audit')
  if (audits.length === 0) throw new UsageError(POLICY_REPLAY, 'missing --audit FILE')
  if (file === undefined) throw new UsageError(POLICY_REPLAY, 'missing --policy FILE')
  const candidate = policyFor(offlineBinding(p.string('config')), file)
  const { lines, unreadable } = readAuditLines(audits)
  const report = replay(lines, candidate)
  if (p.flag('json')) process.stdout.write(`${JSON.stringify({ policy: candidate.version, ...report, unreadable }, null, 2)}\n`)
  else {
    const { replayed, changes, incomplete, skipped } = report
    process.stdout.write(
      `replayed ${replayed} decisions against policy ${candidate.version}: ${changes.length} would change` +
        `${incomplete.length > 0 ? `, ${incomplete.length} lack what the policy reads` : ''}` +
        `${skipped > 0 ? `, ${skipped} not replayable` : ''}${unreadable > 0 ? `, ${unreadable} unreadable lines` : ''}\n`,
    )
    for (const c of changes) {
      process.stdout.write(
        `  ${c.where} ${c.ts ?? ''} ${c.principal} ${c.target}: ${c.before.allow ? 'allow' : 'deny'} (${c.before.rule}) → ${c.after.allow ? 'allow' : 'deny'} (${c.after.rule})\n`,
      )
    }
    for (const i of incomplete) {
      process.stdout.write(`  ${i.where} ${i.ts ?? ''} ${i.principal} ${i.target}: cannot decide again: the line lacks ${i.missing.join(', ')} (read by ${i.rules.join(', ')})\n`)
    }
  }
  return p.flag('fail-on-change') && (report.changes.length > 0 || report.incomplete.length > 0) ? EXIT.failed : EXIT.ok
}

export function policyCheck(p: Parsed): number {
  const file = p.positionals[0] ?? ''
  const policy = policyFor(offlineBinding(p.string('config')), file)
  process.stdout.write(`${file}: OK (policy ${policy.version}, ${policy.rules.length} rules with the role rules)\n`)
  return EXIT.ok
}
