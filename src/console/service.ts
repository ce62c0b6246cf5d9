import type { AuditRecord } from '../audit/audit-log.js'
import type { StoredGrant } from '../auth/grants.js'
import type { KeyStore } from '../auth/key-store.js'
import type { GrantAdmin } from '../auth/setup.js'
import { SecurityError } from '../errors.js'
import type { BucketLevel } from '../limits/memory-limiter.js'
import { CompiledPolicy, type PolicyDecision, PolicyError, type PolicyTargets, type Target, type TraceEntry } from '../policy/engine.js'
import { type RbacPolicy, rbacRules } from '../policy/rbac.js'
import { type ReplayReport, rebuild, recorded, replay } from '../policy/replay.js'
import { parsePolicyText } from '../policy/source.js'
import type { Principal } from '../principal.js'
import type { ToolRegistry } from '../tools/registry.js'
import { ShownError } from './shown-error.js'
import type { RangeVerification, TrailPage, TrailQuery, TrailReader, TrailStats } from './trail.js'

/** A key as the console shows it: never its hash or secret. */
export interface KeyView {
  readonly id: string
  readonly name: string
  readonly roles: readonly string[]
  readonly source: 'store' | 'config'
  readonly createdAt: string
  readonly expiresAt: string | null
  readonly revokedAt: string | null
  readonly lastUsedAt: string | null
  /** `expiring`: active, and expires within 7 days. */
  readonly state: 'active' | 'expiring' | 'expired' | 'revoked'
}

export interface ExplainResult {
  readonly decision: PolicyDecision
  /** The rules evaluated, denies first. */
  readonly trace: readonly TraceEntry[]
  readonly principal: Principal
  readonly target: string
  /** The arguments decided on (absent for `reachability`). */
  readonly args?: unknown
  /** `arguments`: decided on the call's arguments; `reachability`: refused before they were read, decided on principal and tool. */
  readonly stage: 'arguments' | 'reachability'
  /** What the line recorded, when explaining a line. */
  readonly recorded?: { readonly authz: string; readonly rule: string | undefined; readonly policy: string | undefined }
  /** Principal fields the line does not vouch for (decided as recorded, shown so). */
  readonly unknown: readonly string[]
}

export interface ExplainInput {
  readonly principal: string
  readonly roles: readonly string[]
  readonly tool: string
  readonly args: unknown
  readonly tenant?: string
  readonly scopes?: readonly string[]
}

export interface ConsoleDeps {
  readonly trail: TrailReader | undefined
  readonly keys: KeyStore
  readonly policy: () => CompiledPolicy
  readonly grants: RbacPolicy
  readonly targets: PolicyTargets
  readonly registry: ToolRegistry
  readonly roles: readonly string[]
  readonly oauthGrants: GrantAdmin | undefined
  /** The buckets a principal is charged to now (never consumes). */
  readonly levels: (principal: Principal) => Promise<readonly BucketLevel[]>
  readonly upstreams: () => readonly UpstreamView[]
  readonly alertRules: readonly { readonly id: string; readonly event: string; readonly reason?: string | undefined; readonly threshold: number; readonly windowSeconds: number }[]
}

export interface UpstreamView {
  readonly name: string
  readonly state: string
  readonly since: string
  readonly restarts: number
  readonly pin: string
  readonly tools: readonly string[]
  readonly blocked: Readonly<Record<string, { readonly change: string; readonly fields: readonly string[] }>>
  readonly unpinned: readonly string[]
}

/** Decision lines a replay reads at most: a bounded dry run. */
const REPLAY_MAX_LINES = 200_000

const EXPIRING_MS = 7 * 86_400_000
const stateOf = (revokedAt: string | null, expiresAt: string | null, now: number): KeyView['state'] => {
  if (revokedAt !== null) return 'revoked'
  const at = expiresAt === null ? Number.POSITIVE_INFINITY : Date.parse(expiresAt)
  return at <= now ? 'expired' : at - now <= EXPIRING_MS ? 'expiring' : 'active'
}

/** The rules evaluated, denies first (the order they are decided in), each group in rule order. */
const denyFirst = (trace: readonly TraceEntry[]): TraceEntry[] => [...trace.filter((t) => t.effect === 'deny'), ...trace.filter((t) => t.effect === 'allow')]

const invalid = (why: string): ShownError => new ShownError(why)

/**
 * What the console shows and does, without HTTP: each method is one page's data or one action.
 * Pure over its dependencies; the routes authenticate, check the role, audit and render.
 * Does not check: who asks (the routes do), CSRF (the routes do).
 */
export class ConsoleService {
  constructor(private readonly d: ConsoleDeps) {}

  get trailKind(): TrailReader['kind'] | undefined {
    return this.d.trail?.kind
  }

  #trail(): TrailReader {
    if (this.d.trail === undefined) throw new SecurityError('ERR_NOT_FOUND', 'the audit sink is stdout: the console cannot read the trail')
    return this.d.trail
  }

  overview(now = new Date()): Promise<TrailStats> {
    return this.#trail().stats(now)
  }

  /** A page of lines and the chain's verification of the lines it shows. */
  async audit(q: TrailQuery): Promise<{ page: TrailPage; verification: RangeVerification | undefined }> {
    const trail = this.#trail()
    const page = await trail.query(q)
    const first = page.entries[0]
    const last = page.entries[page.entries.length - 1]
    if (first === undefined || last === undefined) return { page, verification: undefined }
    const [older, newer] = q.after === undefined ? [last, first] : [first, last]
    return { page, verification: await trail.verify(older.cursor, newer.cursor) }
  }

  exportLines(q: Omit<TrailQuery, 'limit' | 'before' | 'after'>): AsyncIterable<string> {
    return this.#trail().export(q)
  }

  /** The line with this request id that holds a decision (the tool call's), else its newest line. */
  async line(requestId: string): Promise<AuditRecord | undefined> {
    const page = await this.#trail().query({ requestId, limit: 20 })
    const records = page.entries.map((e) => e.record)
    return records.find((r) => r.authz === 'allow' || r.authz === 'deny') ?? records[0]
  }

  /** `policy explain` for a recorded line: its principal and call decided under the policy in force. */
  explainRecord(record: AuditRecord): ExplainResult {
    const found = recorded(record)
    const id = typeof record.principal === 'string' ? record.principal : undefined
    const tool = typeof record.tool === 'string' ? record.tool : undefined
    if ((found === undefined || found === 'skip') && id !== undefined && tool !== undefined && record.method === 'tools/call' && record.reason === 'ERR_FORBIDDEN')
      return this.#reachability(record, id, tool)
    if (found === undefined || found === 'skip' || id === undefined)
      throw invalid('this line records no policy decision that can be decided again (no arguments recorded, or not a tool, prompt or resource call)')
    const { principal, unknown } = rebuild(id, record)
    const rule = typeof record.rule === 'string' ? record.rule : undefined
    const policy = typeof record.policy === 'string' ? record.policy : undefined
    return {
      ...this.#decide(principal, found.target, found.args),
      recorded: { authz: String(record.authz), rule, policy },
      unknown: [...unknown].map(([f, why]) => `principal.${f} (${why})`),
    }
  }

  /** A call refused before its arguments were read (no rule lets this principal use the tool at all): decided on principal and tool. */
  #reachability(record: AuditRecord, id: string, tool: string): ExplainResult {
    const { principal, unknown } = rebuild(id, record)
    const policy = this.d.policy()
    const trace: TraceEntry[] = []
    const reach = policy.reachable(principal, { kind: 'tool', name: tool }, trace)
    return {
      decision: { allow: reach.allow, rule: reach.rule, version: policy.version },
      trace: denyFirst(trace),
      principal,
      target: `tool ${tool}`,
      stage: 'reachability',
      recorded: {
        authz: String(record.decision),
        rule: typeof record.rule === 'string' ? record.rule : undefined,
        policy: typeof record.policy === 'string' ? record.policy : undefined,
      },
      unknown: [...unknown].map(([f, why]) => `principal.${f} (${why})`),
    }
  }

  /** `policy explain` for a call typed in. */
  explainInput(input: ExplainInput): ExplainResult {
    const tool = this.d.registry.get(input.tool)
    if (tool === undefined) throw invalid(`no tool named ${JSON.stringify(input.tool.slice(0, 128))} is registered`)
    // Decided on what the tool would receive: the arguments as its schema validates them.
    const parsed = tool.definition.input.safeParse(input.args)
    if (!parsed.success) throw invalid(`the arguments do not validate for ${input.tool}: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
    const principal: Principal = {
      id: input.principal,
      kind: input.scopes === undefined || input.scopes.length === 0 ? 'api-key' : 'jwt',
      name: input.principal,
      roles: input.roles,
      ...(input.tenant === undefined || input.tenant === '' ? {} : { tenant: input.tenant }),
      ...(input.scopes === undefined || input.scopes.length === 0 ? {} : { scopes: input.scopes }),
    }
    return { ...this.#decide(principal, { kind: 'tool', name: input.tool }, parsed.data), unknown: [] }
  }

  #decide(principal: Principal, target: Target, args: unknown): Omit<ExplainResult, 'unknown'> {
    const trace: TraceEntry[] = []
    const decision = this.d.policy().decide(principal, target, args, trace)
    const name = target.kind === 'resource' ? `resource ${target.name} ${target.uri}` : `${target.kind} ${target.name}`
    return { decision, trace: denyFirst(trace), principal, target: name, stage: 'arguments', args }
  }

  /**
   * Which recorded decisions (in the time range) a candidate policy would decide differently.
   * @throws SecurityError ERR_INVALID_REQUEST when the candidate does not load (with the reason: it is the operator's own text)
   */
  async replay(candidateYaml: string, range: { from?: string; to?: string }): Promise<ReplayReport & { read: number; truncated: boolean }> {
    let candidate: CompiledPolicy
    try {
      candidate = CompiledPolicy.compile([...parsePolicyText(candidateYaml, 'candidate'), ...rbacRules(this.d.grants)], this.d.targets)
    } catch (error) {
      if (error instanceof PolicyError) throw invalid(error.message.slice(0, 2000))
      throw error
    }
    const lines: { where: string; record: Record<string, unknown> }[] = []
    let truncated = false
    for await (const text of this.#trail().export({ ...range, text: '"authz":' })) {
      if (lines.length >= REPLAY_MAX_LINES) {
        truncated = true
        break
      }
      try {
        const record = JSON.parse(text) as unknown
        if (record !== null && typeof record === 'object' && !Array.isArray(record)) {
          const r = record as Record<string, unknown>
          lines.push({ where: typeof r.requestId === 'string' ? r.requestId : `line ${lines.length + 1}`, record: r })
        }
      } catch {
        // A torn line holds no decision; the verifier reports it.
      }
    }
    return { ...replay(lines, candidate), read: lines.length, truncated }
  }

  async keys(now = Date.now()): Promise<KeyView[]> {
    const stored = this.d.keys.list()
    const seen = this.d.trail === undefined ? new Map<string, string>() : await this.d.trail.lastSeen(stored.map((k) => `key:${k.id}`))
    return stored.map((k) => ({
      id: k.id,
      name: k.name,
      roles: k.roles,
      source: k.source,
      createdAt: k.createdAt,
      expiresAt: k.expiresAt,
      revokedAt: k.revokedAt,
      lastUsedAt: seen.get(`key:${k.id}`) ?? null,
      state: stateOf(k.revokedAt, k.expiresAt, now),
    }))
  }

  /** @returns the key, exactly once. @throws SecurityError ERR_INVALID_REQUEST for an unknown role or a bad expiry */
  createKey(input: { name: string; roles: readonly string[]; expiresDays: number | undefined }): { key: string; id: string } {
    const name = input.name.trim()
    if (name === '' || name.length > 200) throw invalid('a key needs a name of 1–200 characters')
    if (input.roles.length === 0) throw invalid('a key needs at least one role')
    for (const role of input.roles) if (!this.d.roles.includes(role)) throw invalid(`no role named ${JSON.stringify(role.slice(0, 64))} is configured`)
    const days = input.expiresDays
    if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > 3650)) throw invalid('expiry: a whole number of days, 1–3650')
    const { key, stored } = this.d.keys.create({ name, roles: input.roles, expiresAt: days === undefined ? null : new Date(Date.now() + days * 86_400_000) })
    return { key, id: stored.id }
  }

  /** @throws SecurityError ERR_NOT_FOUND for no such key; ERR_INVALID_REQUEST for a key from bastion.yaml */
  revokeKey(id: string): void {
    const key = this.d.keys.list().find((k) => k.id === id)
    if (key === undefined) throw new SecurityError('ERR_NOT_FOUND', `no key ${id}`)
    if (key.source === 'config') throw invalid('this key is declared in bastion.yaml: remove it there')
    this.d.keys.revoke(id)
  }

  async oauthGrants(): Promise<readonly StoredGrant[] | undefined> {
    return this.d.oauthGrants?.list()
  }

  async revokeGrant(id: string): Promise<StoredGrant> {
    if (this.d.oauthGrants === undefined) throw new SecurityError('ERR_NOT_FOUND', 'the token service is off: there are no grants')
    const grant = await this.d.oauthGrants.revoke(id)
    if (grant === undefined) throw new SecurityError('ERR_NOT_FOUND', `no grant ${id}`)
    return grant
  }

  /** The busiest principals of the last hour with their buckets now, recent refusals by rate, alerts fired. */
  async limits(): Promise<{ busiest: { principal: string; requests: number; buckets: readonly BucketLevel[] }[]; refused: TrailPage; alerts: TrailPage }> {
    const trail = this.#trail()
    const stats = await trail.stats(new Date())
    const byId = new Map(this.d.keys.list().map((k) => [`key:${k.id}`, k]))
    const busiest = await Promise.all(
      stats.topPrincipals.slice(0, 10).map(async (c) => {
        const key = byId.get(c.name)
        // Keys' buckets follow their roles now; other principals' roles are not known here.
        const principal: Principal = { id: c.name, kind: 'api-key', name: c.name, roles: key?.roles ?? [], ...(key?.tenant === undefined ? {} : { tenant: key.tenant }) }
        return { principal: c.name, requests: c.count, buckets: await this.d.levels(principal) }
      }),
    )
    const [refused, alerts] = await Promise.all([trail.query({ reason: 'ERR_RATE_LIMITED', limit: 50 }), trail.query({ event: 'alert', limit: 50 })])
    return { busiest, refused, alerts }
  }

  get alertRules(): ConsoleDeps['alertRules'] {
    return this.d.alertRules
  }

  /** Each upstream's state and pins: the fields shown, never its process id or its last error text. */
  upstreams(): readonly UpstreamView[] {
    return this.d
      .upstreams()
      .map((u) => ({ name: u.name, state: u.state, since: u.since, restarts: u.restarts, pin: u.pin, tools: u.tools, blocked: u.blocked, unpinned: u.unpinned }))
  }
}
