import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { z } from 'zod'
import { digestOf, digestOfValue, type PromptPin, pinnedFields, promptFields, type ResourcePin, resourceFields, type ToolDefinitionPin } from './definitions.js'

/** The lock file's name, beside the config file: reviewed and committed like the config. */
export const LOCK_FILE = 'bastion.lock.json'

/** An upstream's pins: each tool's approved definition and its digest. */
export interface UpstreamPins {
  readonly pinnedAt: string
  readonly tools: ReadonlyMap<string, { readonly digest: string; readonly definition: ToolDefinitionPin }>
  readonly resources: ReadonlyMap<string, { readonly digest: string; readonly definition: ResourcePin }>
  readonly prompts: ReadonlyMap<string, { readonly digest: string; readonly definition: PromptPin }>
}

export type Pins = ReadonlyMap<string, UpstreamPins>

/** A lock file that is unreadable, not JSON, or edited into something inconsistent: start-up and the CLI stop, naming it. */
export class LockFileError extends Error {
  override readonly name = 'LockFileError'
}

const entries = z.record(z.string(), z.strictObject({ digest: z.string().regex(/^sha256:[0-9a-f]{64}$/), definition: z.record(z.string(), z.unknown()) }))
const fileSchema = z.strictObject({
  version: z.literal(1),
  upstreams: z.record(z.string(), z.strictObject({ pinnedAt: z.string(), tools: entries, resources: entries.default({}), prompts: entries.default({}) })),
})

/** One kind of entry read back: each definition re-parsed, filed under its own name, matching its digest. */
function readEntries<T extends { readonly name: string }>(
  where: string,
  upstream: string,
  raw: Record<string, { digest: string; definition: Record<string, unknown> }>,
  parse: (raw: unknown) => T,
  digest: (def: T) => string,
): Map<string, { digest: string; definition: T }> {
  const out = new Map<string, { digest: string; definition: T }>()
  for (const [name, entry] of Object.entries(raw)) {
    const at = `${where}.${name}`
    let definition: T
    try {
      definition = parse(entry.definition)
    } catch (error) {
      throw new LockFileError(`${at}: ${(error as Error).message}`)
    }
    if (definition.name !== name) throw new LockFileError(`${at}: the definition is named ${JSON.stringify(definition.name)}`)
    if (digest(definition) !== entry.digest)
      throw new LockFileError(
        `${at}: the definition does not match its digest (edited by hand? restore the file from version control, or delete upstreams.${upstream} from it, then run mcp-bastion upstreams pin ${upstream})`,
      )
    out.set(name, { digest: entry.digest, definition })
  }
  return out
}

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
    const where = `lock file ${path}: upstreams.${upstream}`
    pins.set(upstream, {
      pinnedAt: entry.pinnedAt,
      tools: readEntries(`${where}.tools`, upstream, entry.tools, pinnedFields, digestOf),
      resources: readEntries(`${where}.resources`, upstream, entry.resources, resourceFields, digestOfValue),
      prompts: readEntries(`${where}.prompts`, upstream, entry.prompts, promptFields, digestOfValue),
    })
  }
  return pins
}

/**
 * Write the pins (sorted, indented: a reviewable diff in git) to a temporary file renamed over the
 * lock file, so a reader sees the old or the new pins, never half of them.
 */
export function writePins(path: string, pins: Pins): void {
  const upstreams: Record<string, unknown> = {}
  const sorted = (map: ReadonlyMap<string, { digest: string; definition: object }>): Record<string, unknown> =>
    Object.fromEntries([...map.keys()].sort().map((k) => [k, { digest: map.get(k)?.digest, definition: map.get(k)?.definition }]))
  for (const name of [...pins.keys()].sort()) {
    const entry = pins.get(name) as UpstreamPins
    upstreams[name] = {
      pinnedAt: entry.pinnedAt,
      tools: sorted(entry.tools),
      ...(entry.resources.size === 0 ? {} : { resources: sorted(entry.resources) }),
      ...(entry.prompts.size === 0 ? {} : { prompts: sorted(entry.prompts) }),
    }
  }
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify({ version: 1, upstreams }, null, 2)}\n`, { mode: 0o644 })
  renameSync(tmp, path)
}

/** Pins for these definitions, now. */
export function pinsOf(
  definitions: readonly ToolDefinitionPin[],
  now = new Date(),
  more: { readonly resources?: readonly ResourcePin[]; readonly prompts?: readonly PromptPin[] } = {},
): UpstreamPins {
  return {
    pinnedAt: now.toISOString(),
    tools: new Map(definitions.map((d) => [d.name, { digest: digestOf(d), definition: d }])),
    resources: new Map((more.resources ?? []).map((d) => [d.name, { digest: digestOfValue(d), definition: d }])),
    prompts: new Map((more.prompts ?? []).map((d) => [d.name, { digest: digestOfValue(d), definition: d }])),
  }
}
