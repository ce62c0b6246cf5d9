import type { Principal } from '../principal.js'
import type { CompiledPolicy, Target, TraceEntry } from './engine.js'
import type { PolicyRule } from './schema.js'

/** One recorded decision that a candidate policy would decide differently. */
export interface ReplayChange {
  readonly where: string
  readonly requestId: string | undefined
  readonly ts: string | undefined
  readonly principal: string
  readonly target: string
  readonly before: { readonly allow: boolean; readonly rule: string; readonly policy: string | undefined }
  readonly after: { readonly allow: boolean; readonly rule: string }
}

/** A recorded decision the candidate cannot decide again: its line lacks what the rules read. */
export interface ReplayIncomplete {
  readonly where: string
  readonly requestId: string | undefined
  readonly ts: string | undefined
  readonly principal: string
  readonly target: string
  /** What the rules read and the line does not hold: `principal.name`, `principal.claims (redacted)`, … */
  readonly missing: readonly string[]
  /** The rules that read it. */
  readonly rules: readonly string[]
}

export interface ReplayReport {
  readonly replayed: number
  /** Decision lines that cannot be replayed (arguments omitted as too large, or missing fields). */
  readonly skipped: number
  readonly changes: readonly ReplayChange[]
  /** Decisions not replayed because the line lacks principal data the candidate's rules read. */
  readonly incomplete: readonly ReplayIncomplete[]
}

/** What a policy can see of a principal (CEL `principal.*` and rule subjects); `sub` is `id`. */
export type PrincipalField = 'id' | 'kind' | 'name' | 'roles' | 'scopes' | 'tenant' | 'claims'
const FIELDS: readonly PrincipalField[] = ['id', 'kind', 'name', 'roles', 'scopes', 'tenant', 'claims']
const CLAIMS_MAX_BYTES = 4096
const fieldOrder = (missing: string): number => FIELDS.findIndex((f) => missing.startsWith(`principal.${f} `))

/**
 * The principal fields a decision line carries beside `principal` (the id), `roles`, `tenant` and
 * `scopes` (which every line carries): enough for {@link replay} to rebuild what the policy saw.
 * Claims over 4 KiB of JSON are omitted (`claimsOmitted`); the audit redactor applies to all of it.
 */
export function decisionPrincipal(p: Principal): Record<string, unknown> {
  const fields: Record<string, unknown> = { principalName: p.name, principalKind: p.kind }
  if (p.claims === undefined || Object.keys(p.claims).length === 0) return fields
  const json = JSON.stringify(p.claims) ?? '{}'
  if (Buffer.byteLength(json) > CLAIMS_MAX_BYTES) return { ...fields, claimsOmitted: `over ${CLAIMS_MAX_BYTES} bytes` }
  return { ...fields, claims: p.claims }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])
const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const redacted = (v: unknown): boolean => (JSON.stringify(v) ?? '').includes('[REDACTED')

/** The decision a line records, as a target and arguments to decide again; undefined if it holds no replayable decision. */
export function recorded(record: Record<string, unknown>): { target: Target; args: unknown } | 'skip' | undefined {
  const authz = record.authz
  if (authz !== 'allow' && authz !== 'deny') return undefined
  const method = record.method
  if (method === 'tools/call') {
    const name = str(record.tool)
    if (name === undefined || !Object.hasOwn(record, 'args')) return 'skip'
    return { target: { kind: 'tool', name }, args: record.args }
  }
  if (method === 'prompts/get') {
    const name = str(record.target)
    if (name === undefined || !Object.hasOwn(record, 'args')) return 'skip'
    return { target: { kind: 'prompt', name }, args: record.args }
  }
  if (method === 'resources/read') {
    const name = str(record.target)
    const uri = str(record.uri)
    if (name === undefined || uri === undefined) return 'skip'
    return { target: { kind: 'resource', name, uri, action: 'read' }, args: undefined }
  }
  return undefined
}

/**
 * The principal as faithfully as the line allows, and the fields it cannot vouch for: lines
 * written before `principalName`/`principalKind`/`claims` were recorded, claims omitted as too
 * large, and values the redactor replaced. Tenant and scopes are absent from a line exactly when
 * the principal had none.
 */
export function rebuild(id: string, record: Record<string, unknown>): { principal: Principal; unknown: Map<PrincipalField, string> } {
  const unknown = new Map<PrincipalField, string>()
  const kind = record.principalKind
  const name = str(record.principalName)
  const tenant = str(record.tenant)
  const claims = isRecord(record.claims) ? record.claims : undefined
  if (kind !== 'api-key' && kind !== 'jwt' && kind !== 'opaque') unknown.set('kind', 'not recorded')
  if (name === undefined) unknown.set('name', 'not recorded')
  if (!Array.isArray(record.roles)) unknown.set('roles', 'not recorded')
  if (Object.hasOwn(record, 'claimsOmitted')) unknown.set('claims', 'omitted as too large')
  else if (claims === undefined && !unknown.has('kind') && Object.hasOwn(record, 'claims')) unknown.set('claims', 'not an object')
  else if (claims === undefined && unknown.has('kind')) unknown.set('claims', 'not recorded')
  const principal: Principal = {
    id,
    kind: kind === 'jwt' || kind === 'opaque' ? kind : 'api-key',
    name: name ?? '',
    roles: strings(record.roles),
    ...(tenant === undefined ? {} : { tenant }),
    ...(Array.isArray(record.scopes) ? { scopes: strings(record.scopes) } : {}),
    ...(claims === undefined ? {} : { claims }),
  }
  const values: Record<PrincipalField, unknown> = {
    id,
    kind: principal.kind,
    name: principal.name,
    roles: principal.roles,
    scopes: principal.scopes,
    tenant: principal.tenant,
    claims: principal.claims,
  }
  for (const f of FIELDS) if (!unknown.has(f) && redacted(values[f])) unknown.set(f, 'redacted')
  return { principal, unknown }
}

/** `principal` in a CEL condition: a field (`.name`, `["name"]`), or the whole value (every field). */
const PRINCIPAL_REF = /(?<![\w.])principal\b(?:\s*\.\s*([A-Za-z_]\w*)|\s*\[\s*["']([A-Za-z_]\w*)["']\s*\])?/g

function conditionFields(when: string | undefined): Set<PrincipalField> {
  const fields = new Set<PrincipalField>()
  if (when === undefined) return fields
  for (const m of when.matchAll(PRINCIPAL_REF)) {
    const field = m[1] ?? m[2]
    if (field === undefined) for (const f of FIELDS) fields.add(f)
    else if (field === 'sub') fields.add('id')
    else if ((FIELDS as readonly string[]).includes(field)) fields.add(field as PrincipalField)
    // Any other name fails the policy's own type check, so it never reaches here.
  }
  return fields
}

function subjectFields(rule: PolicyRule): Set<PrincipalField> {
  const s = rule.subjects
  const fields = new Set<PrincipalField>()
  if (s === '*') return fields
  if (s.principals !== undefined) fields.add('id')
  if (s.roles !== undefined) fields.add('roles')
  if (s.scopes !== undefined) fields.add('scopes')
  if (s.tenants !== undefined) fields.add('tenant')
  if (s.claims !== undefined) fields.add('claims')
  return fields
}

/** Per rule id: the principal fields its subjects read, and those its subjects and condition read. */
function readsOf(candidate: CompiledPolicy): Map<string, { subject: Set<PrincipalField>; all: Set<PrincipalField> }> {
  const reads = new Map<string, { subject: Set<PrincipalField>; all: Set<PrincipalField> }>()
  for (const rule of candidate.rules) {
    const subject = subjectFields(rule)
    const all = new Set([...subject, ...conditionFields(rule.when)])
    const seen = reads.get(rule.id)
    reads.set(rule.id, seen === undefined ? { subject, all } : { subject: new Set([...seen.subject, ...subject]), all: new Set([...seen.all, ...all]) })
  }
  return reads
}

/**
 * Decide every recorded decision of an audit trail again under a candidate policy and list the
 * ones that would change: a dry run before deploying. The principal is rebuilt from the line
 * (id, kind, name, roles, tenant, scopes, claims); a decision whose evaluated rules read a field
 * the line does not hold is reported as incomplete, not decided on a guess. Pure: the caller
 * reads the files.
 * Does not check: calls that never reached an argument decision (refused earlier, by rate limits
 * or because the tool was not reachable at all); arguments recorded as `[REDACTED]` are replayed
 * as recorded.
 */
export function replay(lines: Iterable<{ where: string; record: Record<string, unknown> }>, candidate: CompiledPolicy): ReplayReport {
  const reads = readsOf(candidate)
  let replayed = 0
  let skipped = 0
  const changes: ReplayChange[] = []
  const incomplete: ReplayIncomplete[] = []
  for (const { where, record } of lines) {
    const found = recorded(record)
    if (found === undefined) continue
    const id = str(record.principal)
    if (found === 'skip' || id === undefined) {
      skipped += 1
      continue
    }
    const { principal, unknown } = rebuild(id, record)
    let after: { allow: boolean; rule: string }
    const trace: TraceEntry[] = []
    try {
      const decision = candidate.decide(principal, found.target, found.args, trace)
      after = { allow: decision.allow, rule: decision.rule }
    } catch {
      skipped += 1
      continue
    }
    const target = found.target.kind === 'resource' ? `resource ${found.target.name} ${found.target.uri}` : `${found.target.kind} ${found.target.name}`
    const missing = new Set<string>()
    const readers = new Set<string>()
    for (const t of trace) {
      const r = reads.get(t.rule)
      for (const f of (t.result === 'subject-mismatch' ? r?.subject : r?.all) ?? []) {
        const why = unknown.get(f)
        if (why === undefined) continue
        missing.add(`principal.${f} (${why})`)
        readers.add(t.rule)
      }
    }
    const common = { where, requestId: str(record.requestId), ts: str(record.ts), principal: id, target }
    if (missing.size > 0) {
      incomplete.push({ ...common, missing: [...missing].sort((a, b) => fieldOrder(a) - fieldOrder(b)), rules: [...readers] })
      continue
    }
    replayed += 1
    const beforeAllow = record.authz === 'allow'
    if (after.allow !== beforeAllow) changes.push({ ...common, before: { allow: beforeAllow, rule: str(record.rule) ?? '?', policy: str(record.policy) }, after })
  }
  return { replayed, skipped, changes, incomplete }
}
