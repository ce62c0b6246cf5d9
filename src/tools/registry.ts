import { existsSync } from 'node:fs'
import { z } from 'zod'
import type { SecurityError } from '../errors.js'
import type { IsolateOptions } from '../limits/isolated.js'
import type { Principal } from '../principal.js'
import type { CallToolResult, InputHelpers, InputRequiredResult, ServerContext, Tool, ToolAnnotations } from '../protocol.js'

/** What a tool receives besides its validated arguments. */
export interface ToolContext {
  readonly requestId: string
  readonly principal: Principal
  /** Aborted when the client cancels or disconnects, or the tool's timeout passes. */
  readonly signal: AbortSignal
  /** The SDK's handler context: progress, logging and multi-round-trip input for tools that need them. */
  readonly mcp: ServerContext
  /** Did the client declare elicitation support (it can answer a confirmation)? */
  readonly canElicit: boolean
  /** Build an `input_required` result and read the client's answers (the SDK's helpers). */
  readonly input: InputHelpers
  /** The deciding policy rule's `output` settings (e.g. `rows: own`); empty when none. */
  readonly policy: Readonly<Record<string, string>>
  /** Add fields to this call's audit line (what a destructive tool changed). Redacted like the rest. */
  audit(fields: Record<string, unknown>): void
  /**
   * OpenTelemetry, when tracing is on: the W3C trace context of this call's span (`traceparent`,
   * `tracestate`) to send on with a request this tool makes, and `mark` to record a part of the
   * work (from `start`, a performance.now() time, until now) as a child span.
   */
  readonly trace?: { readonly context: Readonly<Record<string, string>>; mark(name: string, start: number): void }
}

/** What a tool returns: a result, or (2026-07-28 multi-round-trip) a request for client input. */
export type ToolOutput = CallToolResult | InputRequiredResult

interface ToolBase<S extends z.ZodType> {
  readonly name: string
  readonly title?: string
  readonly description: string
  readonly input: S
  /** Permissions that may call the tool (any of). Config `tools:` overrides. None: only `*`. */
  readonly permissions?: readonly string[]
  readonly annotations?: ToolAnnotations
  /** Run-time limit (ms); config `limits.tools.<name>.timeoutMs` overrides. Default `limits.timeoutMs`. */
  readonly timeoutMs?: number
  /** Cap on the result's size (bytes); config overrides. Default `limits.maxOutputBytes`. */
  readonly maxOutputBytes?: number
  /** OAuth scopes a token must hold to call it (all of them); config `tools.<name>.scopes` overrides. */
  readonly scopes?: readonly string[]
  /** Personal data in its results: config `pii.tools.<name>` and policy rules override; default `pii.mode`. */
  readonly pii?: 'mask' | 'block' | 'allow'
  /**
   * JSON Schemas shown in `tools/list` as given, for tools whose schemas come from elsewhere (a
   * gateway's upstream tools): `input` is then the validator of `jsonSchema.input`, not its source.
   */
  readonly jsonSchema?: { readonly input: Readonly<Record<string, unknown>>; readonly output?: Readonly<Record<string, unknown>> }
  /**
   * Undefined while the tool may be called; otherwise the refusal of every call, and the tool is
   * not listed (a gateway tool whose upstream definition drifted from its pin).
   */
  blocked?(): SecurityError | undefined
  /** Fields every audit line of a call to it carries (a gateway tool: its upstream). */
  readonly auditFields?: Readonly<Record<string, string>>
}

/** A tool that runs in the server process: fast, shares memory with everything else. */
export interface InProcessTool<S extends z.ZodType = z.ZodType> extends ToolBase<S> {
  run(args: z.output<S>, ctx: ToolContext): Promise<ToolOutput>
  readonly isolate?: undefined
}

/**
 * A tool that runs in its own process per call, with memory and CPU caps: for code that may loop
 * or allocate without bound. The module's export receives the validated arguments and
 * `{ requestId, principal, signal }` and returns a `CallToolResult` (plain JSON).
 */
export interface IsolatedTool<S extends z.ZodType = z.ZodType> extends ToolBase<S> {
  readonly isolate: IsolateOptions
  readonly run?: undefined
}

/** A tool as registered with bastion: a zod input schema (validated once per call) and a runner. */
export type ToolDefinition<S extends z.ZodType = z.ZodType> = InProcessTool<S> | IsolatedTool<S>

export interface RegisteredTool {
  readonly definition: ToolDefinition
  /** The `tools/list` entry, computed once at registration. */
  readonly descriptor: Tool
}

const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/

/** Tools by name; descriptors and JSON Schemas are built once, shared by every request. */
export class ToolRegistry {
  readonly #tools = new Map<string, RegisteredTool>()
  #sorted: RegisteredTool[] = []

  register<S extends z.ZodType>(definition: ToolDefinition<S>): void {
    if (!TOOL_NAME.test(definition.name)) throw new Error(`tool name ${JSON.stringify(definition.name)} must match ${TOOL_NAME}`)
    if (this.#tools.has(definition.name)) throw new Error(`tool ${definition.name} is already registered`)
    if ((definition.run === undefined) === (definition.isolate === undefined)) throw new Error(`tool ${definition.name}: give exactly one of run and isolate`)
    // The CPU and memory caps of isolated runs are read from /proc: without it they could not hold.
    if (definition.isolate !== undefined && !existsSync('/proc/self/status')) throw new Error(`tool ${definition.name}: isolated tools need Linux (/proc) to enforce their caps`)
    const schema = definition.jsonSchema?.input ?? (z.toJSONSchema(definition.input, { io: 'input' }) as Record<string, unknown>)
    if (schema.type !== 'object') throw new Error(`tool ${definition.name}: input schema must be an object`)
    // zod's `$schema` is not shown; an upstream's schema is shown exactly as pinned.
    const { $schema: _dialect, ...converted } = schema
    const inputSchema = definition.jsonSchema === undefined ? converted : schema
    const descriptor: Tool = {
      name: definition.name,
      description: definition.description,
      inputSchema: inputSchema as Tool['inputSchema'],
      ...(definition.jsonSchema?.output === undefined ? {} : { outputSchema: definition.jsonSchema.output as Tool['outputSchema'] }),
      ...(definition.title === undefined ? {} : { title: definition.title }),
      ...(definition.annotations === undefined ? {} : { annotations: definition.annotations }),
    }
    this.#tools.set(definition.name, { definition: definition as unknown as ToolDefinition, descriptor })
    this.#sorted = [...this.#tools.values()].sort((a, b) => (a.definition.name < b.definition.name ? -1 : 1))
  }

  get(name: string): RegisteredTool | undefined {
    return this.#tools.get(name)
  }

  /** All tools in a deterministic (name) order. */
  all(): readonly RegisteredTool[] {
    return this.#sorted
  }
}
