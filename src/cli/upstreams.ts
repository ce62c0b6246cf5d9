import { operatorLog } from '../audit/operator-log.js'
import { listUpstream, lockPath, pinMode, type UpstreamListing } from '../compose/gateway.js'
import type { LoadedConfig } from '../config/load.js'
import { isStdioUpstream } from '../config/upstream-schema.js'
import { diffDefinitions, digestOf, digestOfValue, type FieldChange } from '../gateway/definitions.js'
import { compileSchema } from '../gateway/json-schema.js'
import { type Pins, pinsOf, readPins, type UpstreamPins, writePins } from '../gateway/lock-file.js'
import { UPSTREAMS_DIFF, UPSTREAMS_PIN, UPSTREAMS_STATUS } from './commands.js'
import { loadConfig } from './config-path.js'
import { auditTrail } from './keys.js'
import { type CommandSpec, EXIT, type Parsed, UsageError } from './usage.js'

/** The upstreams a command names (all when none), each checked to exist. */
function named(loaded: LoadedConfig, p: Parsed, spec: CommandSpec): string[] {
  const all = Object.keys(loaded.config.upstreams)
  if (all.length === 0) throw new UsageError(spec, 'the config has no upstreams')
  for (const n of p.positionals) if (!all.includes(n)) throw new UsageError(spec, `no upstream named ${JSON.stringify(n.slice(0, 64))} (the config has ${all.join(', ')})`)
  return p.positionals.length === 0 ? all : [...new Set(p.positionals)]
}

/** Connect to each, one at a time (each may start a process). */
async function listAll(loaded: LoadedConfig, names: readonly string[]): Promise<UpstreamListing[]> {
  const log = operatorLog(loaded.config.audit.redactKeys)
  log.level = 'warn'
  const out: UpstreamListing[] = []
  for (const name of names) out.push(await listUpstream(loaded, name, process.env, log))
  return out
}

const describeTarget = (loaded: LoadedConfig, name: string): string => {
  const u = loaded.config.upstreams[name]
  if (u === undefined) return ''
  return isStdioUpstream(u) ? `stdio: ${[u.command, ...u.args].join(' ')}` : `http: ${u.url}`
}

export async function upstreamsList(p: Parsed): Promise<number> {
  const loaded = loadConfig(p.string('config'))
  const pins = readPins(lockPath(loaded))
  const rows = Object.entries(loaded.config.upstreams).map(([name, u]) => {
    const pinned = pins.get(name)
    let pin: string
    try {
      pin = pinMode(loaded, name, u, pins)
    } catch {
      pin = 'unpinned (start-up refuses it)'
    }
    return { name, target: describeTarget(loaded, name), pin, pinnedTools: pinned?.tools.size ?? 0, pinnedAt: pinned?.pinnedAt ?? null }
  })
  if (p.flag('json')) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
  else if (rows.length === 0) process.stdout.write('no upstreams\n')
  else for (const r of rows) process.stdout.write(`${r.name}  ${r.target}  pin: ${r.pin}  ${r.pinnedTools} tools pinned${r.pinnedAt === null ? '' : ` at ${r.pinnedAt}`}\n`)
  return EXIT.ok
}

export async function upstreamsPin(p: Parsed): Promise<number> {
  const loaded = loadConfig(p.string('config'))
  const names = named(loaded, p, UPSTREAMS_PIN)
  const path = lockPath(loaded)
  const before = readPins(path)
  const listings = await listAll(loaded, names)
  const down = listings.filter((l) => l.tools === undefined)
  for (const l of down) process.stderr.write(`mcp-bastion: upstream ${l.name} could not be listed: ${l.status.lastError ?? l.status.state}; nothing was pinned\n`)
  if (down.length > 0) return EXIT.failed
  // Opened before anything changes: a trail sealed under another key refuses first.
  const audit = auditTrail(loaded)
  const next = new Map<string, UpstreamPins>(before)
  for (const l of listings) {
    // A tool whose schemas do not compile could not be served: it is not pinned (and says so).
    const servable = (l.tools ?? []).filter((t) => {
      try {
        compileSchema(t.inputSchema)
        if (t.outputSchema !== undefined) compileSchema(t.outputSchema)
        return true
      } catch (error) {
        process.stderr.write(`mcp-bastion: upstream ${l.name}: tool ${t.name} not pinned: ${error instanceof Error ? error.message : 'invalid schema'}\n`)
        return false
      }
    })
    const pins = pinsOf(servable, new Date(), { resources: l.resources, prompts: l.prompts })
    const old = before.get(l.name)
    next.set(l.name, pins)
    const counts = { added: 0, changed: 0, removed: 0 }
    for (const [tool, pin] of pins.tools) {
      const was = old?.tools.get(tool)
      if (was === undefined) counts.added++
      else if (was.digest !== pin.digest) counts.changed++
    }
    for (const tool of old?.tools.keys() ?? []) if (!pins.tools.has(tool)) counts.removed++
    audit.record({ event: 'upstream.pinned', decision: 'allow', reason: 'OK', upstream: l.name, tools: pins.tools.size, ...counts, transport: 'cli' })
    for (const why of l.invalid) process.stderr.write(`mcp-bastion: upstream ${l.name}: not pinned, bastion cannot serve it: ${why}\n`)
    const more = [pins.resources.size > 0 ? `${pins.resources.size} resources` : '', pins.prompts.size > 0 ? `${pins.prompts.size} prompts` : ''].filter((m) => m !== '')
    process.stdout.write(
      `pinned ${l.name}: ${pins.tools.size} tools (${counts.added} new, ${counts.changed} changed, ${counts.removed} removed)${more.length === 0 ? '' : `, ${more.join(' and ')}`}\n`,
    )
  }
  writePins(path, next)
  audit.close()
  process.stdout.write(`wrote ${path}: review it and commit it; a running server applies it when it restarts\n`)
  return EXIT.ok
}

interface ToolDiff {
  readonly tool: string
  readonly change: 'added' | 'removed' | 'changed'
  readonly fields: readonly FieldChange[]
}

function diffKind<T extends { readonly name: string }>(
  prefix: string,
  pinned: ReadonlyMap<string, { readonly digest: string; readonly definition: T }>,
  listed: readonly T[],
  digest: (d: T) => string,
): ToolDiff[] {
  const live = new Map(listed.map((t) => [t.name, t]))
  const out: ToolDiff[] = []
  for (const [name, pin] of pinned) {
    const current = live.get(name)
    const tool = `${prefix}${name}`
    if (current === undefined) out.push({ tool, change: 'removed', fields: [] })
    else if (digest(current) !== pin.digest) out.push({ tool, change: 'changed', fields: diffDefinitions(pin.definition as never, current as never) })
  }
  for (const [name] of live) if (!pinned.has(name)) out.push({ tool: `${prefix}${name}`, change: 'added', fields: [] })
  return out.sort((a, b) => (a.tool < b.tool ? -1 : 1))
}

/** Tools by name; resources and prompts as `resource NAME` and `prompt NAME`. */
function diffOf(pins: Pins, l: UpstreamListing): ToolDiff[] {
  const p = pins.get(l.name)
  return [
    ...diffKind('', p?.tools ?? new Map(), l.tools ?? [], digestOf),
    ...diffKind('resource ', p?.resources ?? new Map(), l.resources, digestOfValue),
    ...diffKind('prompt ', p?.prompts ?? new Map(), l.prompts, digestOfValue),
  ]
}

const shown = (v: unknown): string => (v === undefined ? '(absent)' : JSON.stringify(v).slice(0, 400))

export async function upstreamsDiff(p: Parsed): Promise<number> {
  const loaded = loadConfig(p.string('config'))
  const names = named(loaded, p, UPSTREAMS_DIFF)
  const pins = readPins(lockPath(loaded))
  const listings = await listAll(loaded, names)
  let differs = false
  const report = listings.map((l) => {
    const diffs = l.tools === undefined ? [] : diffOf(pins, l)
    if (diffs.length > 0 || l.tools === undefined) differs = true
    return { upstream: l.name, reachable: l.tools !== undefined, ...(l.tools === undefined ? { error: l.status.lastError ?? l.status.state } : {}), diffs }
  })
  if (p.flag('json')) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  else
    for (const r of report) {
      if (!r.reachable) {
        process.stdout.write(`${r.upstream}: could not be listed (${r.error})\n`)
        continue
      }
      if (r.diffs.length === 0) process.stdout.write(`${r.upstream}: matches its pins\n`)
      for (const d of r.diffs) {
        process.stdout.write(`${r.upstream} ${d.tool}: ${d.change}${d.change === 'added' ? ' (not pinned: not served under pin: enforce)' : ''}\n`)
        for (const f of d.fields) process.stdout.write(`  ${f.path}\n    pinned:  ${shown(f.pinned)}\n    current: ${shown(f.current)}\n`)
      }
    }
  return differs ? EXIT.failed : EXIT.ok
}

export async function upstreamsStatus(p: Parsed): Promise<number> {
  const loaded = loadConfig(p.string('config'))
  const names = named(loaded, p, UPSTREAMS_STATUS)
  const pins = readPins(lockPath(loaded))
  const listings = await listAll(loaded, names)
  let bad = false
  const rows = listings.map((l) => {
    const diffs = l.tools === undefined ? [] : diffOf(pins, l)
    const drifted = diffs.filter((d) => d.change !== 'added').map((d) => d.tool)
    const unpinned = diffs.filter((d) => d.change === 'added').map((d) => d.tool)
    if (l.tools === undefined || drifted.length > 0) bad = true
    return {
      name: l.name,
      state: l.tools === undefined ? 'down' : 'up',
      ...(l.tools === undefined ? { error: l.status.lastError ?? l.status.state } : {}),
      ...(l.status.protocolVersion === undefined ? {} : { protocolVersion: l.status.protocolVersion }),
      tools: l.tools?.length ?? 0,
      drifted,
      unpinned,
    }
  })
  if (p.flag('json')) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
  else
    for (const r of rows)
      process.stdout.write(
        `${r.name}: ${r.state}${'error' in r ? ` (${r.error})` : ''}${r.protocolVersion === undefined ? '' : `, MCP ${r.protocolVersion}`}, ${r.tools} tools` +
          `${r.drifted.length > 0 ? `, drifted: ${r.drifted.join(' ')}` : ''}${r.unpinned.length > 0 ? `, unpinned: ${r.unpinned.join(' ')}` : ''}\n`,
      )
  return bad ? EXIT.failed : EXIT.ok
}
