import { isIPv6 } from 'node:net'
import type { LimitsConfig, RateSpec } from '../config/schema.js'
import type { Principal } from '../principal.js'
import { type BucketShape, type Charge, parseRate } from './token-bucket.js'

/** A bucket's shape from config: capacity is the burst, or the rate's count. */
export function shapeOf(spec: RateSpec): BucketShape {
  const rate = parseRate(spec.rate)
  if (rate === undefined) throw new Error(`invalid rate ${JSON.stringify(spec.rate)}`)
  return { capacity: spec.burst ?? rate.count, perMs: rate.perMs }
}

/** A record entry by an untrusted name: own properties only (`__proto__` is a valid tool name). */
function ownEntry<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined
}

/** Execution limits of one tool, after defaults and config overrides. */
export interface ToolLimits {
  readonly timeoutMs: number
  readonly maxOutputBytes: number
  readonly memoryMb: number | undefined
  readonly cpuMs: number | undefined
}

/**
 * The client-address part of a bucket key: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by
 * its /64 (one host usually owns a whole /64, so per-address keys would be free to multiply).
 */
export function addressKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown'
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address)
  if (mapped?.[1] !== undefined) return mapped[1]
  if (!isIPv6(address)) return address
  const [head = '', tail = ''] = address.toLowerCase().split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const full = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left
  return `${full
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`
}

/**
 * Which buckets a request is charged to, decided from config alone. Pure: no I/O, no clock.
 * Every authenticated request is charged to the principal's bucket (rate from its most
 * generous role, else `limits.principal`), its tenant's and the global bucket; a `tools/call`
 * is charged the tool's cost and, in addition, to its tier's and its own bucket.
 */
export class RatePlan {
  readonly #limits: LimitsConfig
  readonly #anonymous: BucketShape
  readonly #principal: BucketShape
  readonly #roles = new Map<string, BucketShape>()
  readonly #tenant: BucketShape | undefined
  readonly #global: BucketShape | undefined
  readonly #tiers = new Map<string, BucketShape & { scope: 'principal' | 'global' }>()
  readonly #tools = new Map<string, BucketShape & { scope: 'principal' | 'global' }>()

  /**
   * @param problem called with a key path and reason for each inconsistency (a tool cost larger
   *   than a bucket that can ever hold it would refuse that tool forever).
   */
  constructor(limits: LimitsConfig, problem: (where: string, why: string) => void = () => undefined) {
    this.#limits = limits
    this.#anonymous = shapeOf(limits.anonymous)
    this.#principal = shapeOf(limits.principal)
    for (const [role, spec] of Object.entries(limits.roles)) this.#roles.set(role, shapeOf(spec))
    this.#tenant = limits.tenant === undefined ? undefined : shapeOf(limits.tenant)
    this.#global = limits.global === undefined ? undefined : shapeOf(limits.global)
    for (const [tier, spec] of Object.entries(limits.tiers)) this.#tiers.set(tier, { ...shapeOf(spec), scope: spec.scope })
    for (const [tool, spec] of Object.entries(limits.tools)) if (spec.rate !== undefined) this.#tools.set(tool, { ...shapeOf(spec.rate), scope: spec.rate.scope })
    const everyone = [this.#principal, ...this.#roles.values(), this.#tenant, this.#global].filter((s) => s !== undefined)
    const smallest = Math.min(...everyone.map((s) => s.capacity))
    for (const [tool, spec] of Object.entries(limits.tools)) {
      const own = this.#tools.get(tool)
      const tier = spec.tier === undefined ? undefined : this.#tiers.get(spec.tier)
      const least = Math.min(smallest, own?.capacity ?? Infinity, tier?.capacity ?? Infinity)
      if (spec.cost > least) problem(`limits.tools.${tool}.cost`, `cost ${spec.cost} exceeds the capacity ${least} of a bucket it is charged to; the tool could never run`)
    }
  }

  /** The per-address bucket for requests not (yet) authenticated. */
  anonymous(address: string | undefined): Charge[] {
    const who = addressKey(address)
    return [{ bucket: 'anonymous', key: `anon|${who}`, cost: 1, ...this.#anonymous }]
  }

  /**
   * The buckets the console shows for a principal: its own (shaped by its most generous role), its
   * tenant's and the global one when configured, with the keys `forRequest` charges, so that their
   * levels are what requests consumed. Cost 1, a plain request's. Pure: no I/O, no clock.
   * Does not check: tier and tool buckets (one per tool; the console shows the request buckets).
   */
  principalBuckets(principal: Principal): Charge[] {
    return this.#requestCharges(principal, 1)
  }

  /** Principal, tenant and global: the charges of every request, the one place their keys are built. */
  #requestCharges(principal: Principal, cost: number): Charge[] {
    let shape = this.#principal
    let bucket = 'principal'
    let generous: BucketShape | undefined
    for (const role of principal.roles) {
      const candidate = this.#roles.get(role)
      if (
        candidate !== undefined &&
        (generous === undefined || candidate.perMs > generous.perMs || (candidate.perMs === generous.perMs && candidate.capacity > generous.capacity))
      ) {
        generous = candidate
        bucket = `role:${role}`
      }
    }
    if (generous !== undefined) shape = generous
    const charges: Charge[] = [{ bucket, key: `p|${principal.id}`, cost, ...shape }]
    if (this.#tenant !== undefined && principal.tenant !== undefined) charges.push({ bucket: 'tenant', key: `t|${principal.tenant}`, cost, ...this.#tenant })
    if (this.#global !== undefined) charges.push({ bucket: 'global', key: 'g|', cost, ...this.#global })
    return charges
  }

  /** Buckets for one authenticated request; `tool` only for `tools/call` of a registered tool. */
  forRequest(principal: Principal, tool: string | undefined): Charge[] {
    const settings = tool === undefined ? undefined : ownEntry(this.#limits.tools, tool)
    const cost = settings?.cost ?? 1
    const charges = this.#requestCharges(principal, cost)
    if (tool === undefined) return charges
    const tierName = settings?.tier
    const tier = tierName === undefined ? undefined : this.#tiers.get(tierName)
    if (tierName !== undefined && tier !== undefined) {
      charges.push({
        bucket: `tier:${tierName}`,
        key: tier.scope === 'global' ? `tier|${tierName}` : `tier|${tierName}|${principal.id}`,
        cost,
        capacity: tier.capacity,
        perMs: tier.perMs,
      })
    }
    const own = this.#tools.get(tool)
    if (own !== undefined) {
      charges.push({ bucket: `tool:${tool}`, key: own.scope === 'global' ? `tool|${tool}` : `tool|${tool}|${principal.id}`, cost, capacity: own.capacity, perMs: own.perMs })
    }
    return charges
  }

  /** Timeouts and caps for a tool: config override, else the tool's own, else the default. */
  toolLimits(
    tool: string,
    own: { timeoutMs?: number | undefined; maxOutputBytes?: number | undefined; memoryMb?: number | undefined; cpuMs?: number | undefined } = {},
  ): ToolLimits {
    const settings = ownEntry(this.#limits.tools, tool)
    return {
      timeoutMs: settings?.timeoutMs ?? own.timeoutMs ?? this.#limits.timeoutMs,
      maxOutputBytes: settings?.maxOutputBytes ?? own.maxOutputBytes ?? this.#limits.maxOutputBytes,
      memoryMb: settings?.memoryMb ?? own.memoryMb,
      cpuMs: settings?.cpuMs ?? own.cpuMs,
    }
  }
}
