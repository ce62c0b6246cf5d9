import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import type { AuditLog } from '../audit/audit-log.js'
import { fileStamp, SettledFile } from '../config/json-file.js'
import { describeIssue, parseYaml } from '../config/load.js'
import { CompiledPolicy, PolicyError, type PolicyTargets } from './engine.js'
import { type RbacPolicy, rbacRules } from './rbac.js'
import { type PolicyRule, policyFileSchema } from './schema.js'

/** Read and validate a policy file. @throws PolicyError naming the file, key path or line. */
export function readPolicyFile(path: string): PolicyRule[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new PolicyError(`policy ${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  return parsePolicyText(text, path)
}

/** Validate policy YAML. @throws PolicyError */
export function parsePolicyText(text: string, path: string): PolicyRule[] {
  const yaml = parseYaml(text)
  if ('error' in yaml) throw new PolicyError(`policy ${path}: ${yaml.error}`)
  const parsed = policyFileSchema.safeParse(yaml.value ?? {})
  if (!parsed.success) throw new PolicyError(`policy ${path}:\n${parsed.error.issues.map((i) => `  - ${describeIssue(i)}`).join('\n')}`)
  return parsed.data.rules
}

export interface PolicySourceOptions {
  readonly grants: RbacPolicy
  /** Rules from the main config (when there is no policy file). */
  readonly inline: readonly PolicyRule[]
  /** Absolute path of the watched policy file, if any. */
  readonly file: string | undefined
  readonly targets: PolicyTargets
  readonly reloadIntervalMs: number
  readonly audit: AuditLog
  readonly log: Logger
}

/**
 * The policy in force: role rules, then the config's or the file's rules, compiled into one
 * immutable value. A changed file is compiled completely before one assignment swaps it in, so a
 * request sees the old policy or the new one, never a mix; a file that does not load leaves the
 * old one in force. Both outcomes are audited with the version hash.
 *
 * A change is taken only once the file stood still: checked every `reloadIntervalMs`, it must read
 * the same between two stats and be unmodified for a whole interval (its modification time, or the
 * same stamp and text at the previous check). A prefix of a policy is often valid YAML and a valid
 * policy (no rules at all, a deny without its `when`), so parsing is not enough: a writer that
 * writes line by line is never read mid-file while it keeps writing.
 * Does not check: a writer that stops mid-file for longer than the interval (that prefix is taken;
 * write a temp file and rename it over the path to rule it out); files included from the policy
 * file (there is no include).
 */
export class PolicySource {
  #current: CompiledPolicy
  #lastText: string | undefined
  /** The stamp of the file last taken or refused: the timer reads nothing while it holds. */
  #taken: string
  readonly #watch: SettledFile | undefined
  readonly #timer: NodeJS.Timeout | undefined
  readonly #options: PolicySourceOptions

  /** @throws PolicyError when the initial policy does not load: start-up fails. */
  constructor(options: PolicySourceOptions) {
    this.#options = options
    const { file } = options
    this.#taken = file === undefined ? '' : fileStamp(file)
    this.#lastText = file === undefined ? undefined : safeRead(file)
    this.#current = this.#compile(this.#lastText)
    options.audit.record({
      event: 'policy.loaded',
      decision: 'allow',
      reason: 'OK',
      policy: this.#current.version,
      source: file ?? 'config',
      rules: this.#current.rules.length,
    })
    if (file !== undefined) {
      this.#watch = new SettledFile(file, options.reloadIntervalMs)
      this.#timer = setInterval(() => this.#check(), Math.max(10, options.reloadIntervalMs))
      this.#timer.unref()
    }
  }

  /** One timer tick: take the file if it changed and has stood still. */
  #check(): void {
    const file = this.#options.file
    if (file === undefined || this.#watch === undefined || fileStamp(file) === this.#taken) return
    const look = this.#watch.look()
    if (!look.settled) return
    this.#taken = look.stamp
    this.#take(look.text)
  }

  #compile(text: string | undefined): CompiledPolicy {
    const { grants, inline, file, targets } = this.#options
    let extra = inline
    if (file !== undefined) {
      if (text === undefined) throw new PolicyError(`policy ${file}: cannot read`)
      extra = parsePolicyText(text, file)
    }
    // Policy rules first: among allows the first decides, and an explicit rule (with its output
    // settings) is more specific than a role grant. Denies win wherever they are.
    return CompiledPolicy.compile([...extra, ...rbacRules(grants)], targets)
  }

  current(): CompiledPolicy {
    return this.#current
  }

  /**
   * Load the file again now, without waiting for it to stand still: for a caller that knows the
   * file is whole (it wrote it). Returns what happened; never throws.
   */
  reload(): { ok: true; version: string; changed: boolean } | { ok: false; error: string } {
    const { file } = this.#options
    if (file === undefined) return { ok: true, version: this.#current.version, changed: false }
    this.#taken = fileStamp(file)
    return this.#take(safeRead(file))
  }

  #take(text: string | undefined): { ok: true; version: string; changed: boolean } | { ok: false; error: string } {
    const { file = 'config', audit, log } = this.#options
    if (text !== undefined && text === this.#lastText) return { ok: true, version: this.#current.version, changed: false }
    let next: CompiledPolicy
    try {
      next = this.#compile(text)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      this.#lastText = text
      log.error({ policy: this.#current.version, file }, `policy reload refused, previous version stays in force: ${message}`)
      try {
        audit.record({ event: 'policy.rejected', decision: 'error', reason: 'POLICY_INVALID', policy: this.#current.version, source: file, detail: message.slice(0, 2000) })
      } catch {
        // The operator log has it; the audit sink's failure shows on the next request.
      }
      return { ok: false, error: message }
    }
    const previous = this.#current.version
    this.#current = next
    this.#lastText = text
    log.info({ policy: next.version, previous, file }, 'policy reloaded')
    try {
      audit.record({ event: 'policy.loaded', decision: 'allow', reason: 'OK', policy: next.version, previous, source: file, rules: next.rules.length })
    } catch {
      // As above.
    }
    return { ok: true, version: next.version, changed: next.version !== previous }
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
  }
}

function safeRead(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}
