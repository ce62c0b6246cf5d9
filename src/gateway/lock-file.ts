import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { z } from 'zod'
import { digestOf, pinnedFields, type ToolDefinitionPin } from './definitions.js'

/** The lock file's name, beside the config file: reviewed and committed like the config. */
export const LOCK_FILE = 'bastion.lock.json'

/** An upstream's pins: each tool's approved definition and its digest. */
export interface UpstreamPins {
  readonly pinnedAt: string
  readonly tools: ReadonlyMap<string, { readonly digest: string; readonly definition: ToolDefinitionPin }>
}

export type Pins = ReadonlyMap<string, UpstreamPins>

/** A lock file that is unreadable, not JSON, or edited into something inconsistent: start-up and the CLI stop, naming it. */
export class LockFileError extends Error {
  override readonly name = 'LockFileError'
}

const fileSchema = z.strictObject({
  version: z.literal(1),
  upstreams: z.record(
    z.string(),
    z.strictObject({
      pinnedAt: z.string(),
      tools: z.record(z.string(), z.strictObject({ digest: z.string().regex(/^sha256:[0-9a-f]{64}$/), definition: z.record(z.string(), z.unknown()) })),
    }),
  ),
})

/**
 * Read the pins; an absent file is no pins. Every entry's digest is recomputed: a definition
 * edited by hand without re-pinning does not match its digest and is refused, as is a tool filed
 * under another name than its own.
 * @throws LockFileError naming the file and the entry
 */
export function readPins(path: string): Pins {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw new LockFileError(`lock file ${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new LockFileError(`lock file ${path}: not valid JSON`)
  }
  const parsed = fileSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new LockFileError(`lock file ${path}: ${issue?.path.join('.') || '(top)'}: not a bastion lock file entry (version 1)`)
  }
  const pins = new Map<string, UpstreamPins>()
  for (const [upstream, entry] of Object.entries(parsed.data.upstreams)) {
    const tools = new Map<string, { digest: string; definition: ToolDefinitionPin }>()
    for (const [name, tool] of Object.entries(entry.tools)) {
      const where = `lock file ${path}: upstreams.${upstream}.tools.${name}`
      let definition: ToolDefinitionPin
      try {
        definition = pinnedFields(tool.definition)
      } catch (error) {
        throw new LockFileError(`${where}: ${(error as Error).message}`)
      }
      if (definition.name !== name) throw new LockFileError(`${where}: the definition is named ${JSON.stringify(definition.name)}`)
      if (digestOf(definition) !== tool.digest)
        throw new LockFileError(`${where}: the definition does not match its digest (edited without re-pinning? run mcp-bastion upstreams pin ${upstream})`)
      tools.set(name, { digest: tool.digest, definition })
    }
    pins.set(upstream, { pinnedAt: entry.pinnedAt, tools })
  }
  return pins
}

/**
 * Write the pins (sorted, indented: a reviewable diff in git) to a temporary file renamed over the
 * lock file, so a reader sees the old or the new pins, never half of them.
 */
export function writePins(path: string, pins: Pins): void {
  const upstreams: Record<string, unknown> = {}
  for (const name of [...pins.keys()].sort()) {
    const entry = pins.get(name) as UpstreamPins
    const tools: Record<string, unknown> = {}
    for (const tool of [...entry.tools.keys()].sort()) {
      const pin = entry.tools.get(tool) as { digest: string; definition: ToolDefinitionPin }
      tools[tool] = { digest: pin.digest, definition: pin.definition }
    }
    upstreams[name] = { pinnedAt: entry.pinnedAt, tools }
  }
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify({ version: 1, upstreams }, null, 2)}\n`, { mode: 0o644 })
  renameSync(tmp, path)
}

/** Pins for these definitions, now. */
export function pinsOf(definitions: readonly ToolDefinitionPin[], now = new Date()): UpstreamPins {
  return { pinnedAt: now.toISOString(), tools: new Map(definitions.map((d) => [d.name, { digest: digestOf(d), definition: d }])) }
}
