import type { Principal } from '../principal.js'
import type { CompiledPolicy, Target } from './engine.js'

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

export interface ReplayReport {
  readonly replayed: number
  /** Decision lines that cannot be replayed (arguments omitted as too large, or missing fields). */
  readonly skipped: number
  readonly changes: readonly ReplayChange[]
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])

/** The decision a line records, as a target and arguments to decide again; undefined if it holds no replayable decision. */
function recorded(record: Record<string, unknown>): { target: Target; args: unknown } | 'skip' | undefined {
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
 * Decide every recorded decision of an audit trail again under a candidate policy and list the
 * ones that would change: a dry run before deploying. Pure: the caller reads the files.
 * Does not check: calls that never reached an argument decision (refused earlier, by rate limits
 * or because the tool was not reachable at all); arguments recorded as `[REDACTED]` are replayed
 * as recorded.
 */
export function replay(lines: Iterable<{ where: string; record: Record<string, unknown> }>, candidate: CompiledPolicy): ReplayReport {
  let replayed = 0
  let skipped = 0
  const changes: ReplayChange[] = []
  for (const { where, record } of lines) {
    const found = recorded(record)
    if (found === undefined) continue
    const id = str(record.principal)
    if (found === 'skip' || id === undefined) {
      skipped += 1
      continue
    }
    const tenant = str(record.tenant)
    const principal: Principal = {
      id,
      kind: 'api-key',
      name: '',
      roles: strings(record.roles),
      ...(tenant === undefined ? {} : { tenant }),
      ...(Array.isArray(record.scopes) ? { scopes: strings(record.scopes) } : {}),
    }
    let after: { allow: boolean; rule: string }
    try {
      const decision = candidate.decide(principal, found.target, found.args)
      after = { allow: decision.allow, rule: decision.rule }
    } catch {
      skipped += 1
      continue
    }
    replayed += 1
    const beforeAllow = record.authz === 'allow'
    if (after.allow !== beforeAllow) {
      changes.push({
        where,
        requestId: str(record.requestId),
        ts: str(record.ts),
        principal: id,
        target: found.target.kind === 'resource' ? `resource ${found.target.name} ${found.target.uri}` : `${found.target.kind} ${found.target.name}`,
        before: { allow: beforeAllow, rule: str(record.rule) ?? '?', policy: str(record.policy) },
        after,
      })
    }
  }
  return { replayed, skipped, changes }
}
