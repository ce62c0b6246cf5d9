import type { Logger } from 'pino'
import type { AuditLog } from '../audit/audit-log.js'
import type { UpstreamConfig } from '../config/upstream-schema.js'
import { SecurityError } from '../errors.js'
import { diffDefinitions, digestOf, digestOfValue, type PromptPin, type ResourcePin, type ToolDefinitionPin } from '../gateway/definitions.js'
import type { UpstreamPins } from '../gateway/lock-file.js'
import type { UpstreamConnection } from '../transport/upstream/connection.js'
import type { PinMode } from './upstream-setup.js'

/** Why a served tool is blocked: its upstream definition changed or went away since it was pinned. */
export interface Drift {
  readonly change: 'changed' | 'removed'
  readonly fields: readonly string[]
}

/** What a served tool needs of its upstream's connection (a refusing stand-in for offline checks). */
export type Connection = Pick<UpstreamConnection, 'name' | 'status' | 'ensure' | 'call' | 'readResource' | 'getPrompt' | 'start' | 'close'>

/** For `config check` and `policy`: the definitions, no process started, nothing connected. */
export function detachedConnection(name: string, kind: 'stdio' | 'http'): Connection {
  return {
    name,
    status: () => ({ name, kind, state: 'down', since: new Date(0).toISOString(), restarts: 0 }),
    call: () => Promise.reject(new SecurityError('ERR_INTERNAL', 'upstream tool definitions for policy and config checks: not connected')),
    readResource: () => Promise.reject(new SecurityError('ERR_INTERNAL', 'upstream definitions for policy and config checks: not connected')),
    getPrompt: () => Promise.reject(new SecurityError('ERR_INTERNAL', 'upstream definitions for policy and config checks: not connected')),
    start: async () => {},
    ensure: () => Promise.reject(new SecurityError('ERR_INTERNAL', 'upstream definitions for policy and config checks: not connected')),
    close: async () => {},
  }
}

type Kind = 'tool' | 'resource' | 'prompt'

/**
 * A drift line that cannot be written (the audit sink is down) is logged instead: what it reports
 * (a blocked tool) has already happened, and the sink's failure refuses the next request anyway.
 */
function recordOrLog(audit: AuditLog, log: Logger, fields: Parameters<AuditLog['record']>[0]): void {
  try {
    audit.record(fields)
  } catch (error) {
    log.error({ ...fields, err: { message: error instanceof Error ? error.message : 'error' } }, 'upstream event could not be audited')
  }
}

/** At most this many unpinned names are kept for the report. */
const MAX_UNPINNED = 1000

/** Under `enforce` (and offline): what is served is what is pinned, but for the hidden. */
export function servePins(u: Upstream): void {
  const hidden = new Set(u.config.hide)
  for (const [name, pin] of u.pins?.tools ?? []) if (!hidden.has(name)) u.served.set(name, pin.definition)
  for (const [name, pin] of u.pins?.resources ?? []) if (!hidden.has(name)) u.servedResources.set(name, pin.definition)
  for (const [name, pin] of u.pins?.prompts ?? []) if (!hidden.has(name)) u.servedPrompts.set(name, pin.definition)
}

/** One upstream with what bastion serves of it. */
export class Upstream {
  readonly served = new Map<string, ToolDefinitionPin>()
  readonly servedResources = new Map<string, ResourcePin>()
  readonly servedPrompts = new Map<string, PromptPin>()
  /** Catalog name → why it is blocked, per kind. */
  readonly blocked = new Map<string, Drift>()
  readonly blockedResources = new Map<string, Drift>()
  readonly blockedPrompts = new Map<string, Drift>()
  readonly unpinned = new Set<string>()
  /** Digest of each drift already reported, so that a repeated list does not repeat the audit line. */
  readonly #reported = new Map<string, string>()
  listed = false
  catalogListed = false

  constructor(
    readonly name: string,
    readonly config: UpstreamConfig,
    readonly prefix: string,
    readonly mode: PinMode,
    readonly pins: UpstreamPins | undefined,
    readonly conn: Connection,
  ) {}

  /** Compare a fresh tool list with the pins: block what drifted, unblock what came back, report each change once. */
  compare(live: readonly ToolDefinitionPin[], audit: AuditLog, log: Logger): void {
    const added = this.#compareKind('tool', live, this.pins?.tools, digestOf, this.blocked, audit, log)
    for (const tool of added) if (this.unpinned.size < MAX_UNPINNED) this.unpinned.add(tool)
    // Only a complete comparison verifies the pins (until then, calls are refused as unverified).
    this.listed = true
  }

  /** The same for resources and prompts. */
  compareCatalog(resources: readonly ResourcePin[], prompts: readonly PromptPin[], audit: AuditLog, log: Logger): void {
    this.#compareKind('resource', resources, this.pins?.resources, digestOfValue, this.blockedResources, audit, log)
    this.#compareKind('prompt', prompts, this.pins?.prompts, digestOfValue, this.blockedPrompts, audit, log)
    this.catalogListed = true
  }

  /** One kind: returns the names listed but not pinned. */
  #compareKind<T extends { readonly name: string }>(
    kind: Kind,
    live: readonly T[],
    pins: ReadonlyMap<string, { readonly digest: string; readonly definition: T }> | undefined,
    digestOfDef: (d: T) => string,
    blocked: Map<string, Drift>,
    audit: AuditLog,
    log: Logger,
  ): string[] {
    const byName = new Map(live.map((d) => [d.name, d]))
    const hidden = new Set(this.config.hide)
    if (this.mode === 'off' || pins === undefined) return []
    const enforced = this.mode === 'enforce'
    const report = (name: string, change: 'changed' | 'removed' | 'added', fields: readonly string[], digest: string): void => {
      const key = `${kind}:${name}`
      if (this.#reported.get(key) === digest) return
      this.#reported.set(key, digest)
      log.warn(
        { upstream: this.name, [kind]: name, change, fields },
        enforced ? `upstream ${kind} definition drifted: blocked until re-pinned` : `upstream ${kind} definition drifted (pin: warn)`,
      )
      recordOrLog(audit, log, {
        event: 'upstream.drift',
        decision: enforced ? 'deny' : 'allow',
        reason: 'UPSTREAM_DRIFT',
        upstream: this.name,
        [kind]: `${this.prefix}${name}`,
        change,
        fields: fields.join(',').slice(0, 1000),
        ...(digest === '' ? {} : { digest }),
      })
    }
    for (const [name, pin] of pins) {
      if (hidden.has(name)) continue
      const current = byName.get(name)
      const catalogName = `${this.prefix}${name}`
      if (current === undefined) {
        // Blocked first: an audit sink that fails while reporting must not leave it callable.
        if (enforced) blocked.set(catalogName, { change: 'removed', fields: [`(${kind})`] })
        report(name, 'removed', [`(${kind})`], 'removed')
        continue
      }
      const digest = digestOfDef(current)
      if (digest === pin.digest) {
        if (blocked.delete(catalogName)) {
          this.#reported.delete(`${kind}:${name}`)
          log.info({ upstream: this.name, [kind]: name }, `upstream ${kind} definition matches its pin again: unblocked`)
          recordOrLog(audit, log, { event: 'upstream.pin_matched', decision: 'allow', reason: 'OK', upstream: this.name, [kind]: catalogName })
        }
        continue
      }
      const fields = diffDefinitions(pin.definition as unknown as ToolDefinitionPin, current as unknown as ToolDefinitionPin).map((c) => c.path)
      if (enforced) blocked.set(catalogName, { change: 'changed', fields })
      report(name, 'changed', fields, digest)
    }
    const added: string[] = []
    const addedDigests: string[] = []
    for (const [name, def] of byName) {
      if (hidden.has(name) || pins.has(name)) continue
      added.push(name)
      addedDigests.push(`${name}=${digestOfDef(def)}`)
    }
    // One line per listing that adds something new, however many it adds (an upstream listing
    // thousands of names cannot flood the trail): the count and the first names.
    if (added.length > 0) {
      const digest = digestOfValue(addedDigests.sort())
      const key = `${kind}:(added)`
      if (this.#reported.get(key) !== digest) {
        this.#reported.set(key, digest)
        const first = added.slice(0, 20).map((n) => `${this.prefix}${n}`)
        log.warn({ upstream: this.name, kind, added: added.length, first }, `upstream lists ${kind}s that are not pinned: not served until pinned`)
        recordOrLog(audit, log, {
          event: 'upstream.drift',
          decision: enforced ? 'deny' : 'allow',
          reason: 'UPSTREAM_DRIFT',
          upstream: this.name,
          [kind]: first[0],
          change: 'added',
          count: added.length,
          names: first.join(',').slice(0, 2000),
        })
      }
    }
    return added.slice(0, MAX_UNPINNED)
  }
}
