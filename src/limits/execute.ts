import { SecurityError, toSecurityError } from '../errors.js'
import type { Exchange } from '../pipeline/exchange.js'
import type { Metrics } from '../pipeline/metrics.js'
import { maskValue } from '../protect/pii.js'
import type { ToolContext, ToolOutput } from '../tools/registry.js'
import type { ConcurrencyCaps } from './concurrency.js'
import { IsolatedRunError, runIsolated } from './isolated.js'
import { exceedsBytes } from './output-size.js'
import type { RatePlan } from './rate-plan.js'

export interface ExecuteDeps {
  readonly plan: RatePlan
  readonly caps: ConcurrencyCaps
  readonly metrics: Metrics
  /** The SDK's multi-round-trip helpers, for the tool context. */
  readonly input: ToolContext['input']
  /** Builds the in-band error result a client sees for a tool-level refusal or failure. */
  readonly toolError: (error: SecurityError, requestId: string) => ToolOutput
  /** What to do with personal data in this tool's result, given the deciding policy rule's `output.pii`. */
  readonly piiMode: (tool: string, fromPolicy: string | undefined) => 'mask' | 'block' | 'allow'
}

/** How long a client should wait after a concurrency refusal: a hint, calls have no schedule. */
const CONCURRENCY_RETRY_MS = 1000

/** Settles with the work, or rejects with the signal's reason as soon as it aborts. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      },
    )
  })
}

/**
 * The terminal stage: run the validated call under the concurrency caps, a timeout, the caller's
 * cancellation and the output cap, in process or in an isolated process.
 * - A full concurrency cap is a protocol error (`ERR_CONCURRENCY_LIMIT`) with `data.retryAfterMs`.
 * - A timeout aborts the tool's signal and answers in-band `ERR_TOOL_TIMEOUT` at once; an in-process
 *   tool that ignores its signal keeps running unobserved (its audit line says `abandoned`), an
 *   isolated one is killed after a short grace.
 * - Cancellation (`notifications/cancelled`, or the response stream closing) aborts the tool the same
 *   way; no result is sent, and the audit line says `ERR_CANCELLED`.
 * - A result over the size cap is refused in-band, never sent.
 * Does not check: permissions or arguments (earlier stages did), rate limits (charged earlier).
 */
export function executeTool(deps: ExecuteDeps): (x: Exchange, mcp: ToolContext['mcp'], canElicit: boolean) => Promise<ToolOutput> {
  return async function executeToolTerminal(x, mcp, canElicit) {
    const tool = x.tool
    const principal = x.principal
    if (tool === undefined || principal === undefined) throw new SecurityError('ERR_INTERNAL', 'run stage reached without tool or principal')
    const def = tool.definition
    const limits = deps.plan.toolLimits(def.name, { timeoutMs: def.timeoutMs, maxOutputBytes: def.maxOutputBytes, memoryMb: def.isolate?.memoryMb, cpuMs: def.isolate?.cpuMs })
    const slot = deps.caps.acquire(principal.id)
    if ('refused' in slot) {
      deps.metrics.concurrencyRefused.inc({ cap: slot.refused })
      x.audit.note({ cap: slot.refused })
      throw new SecurityError('ERR_CONCURRENCY_LIMIT', `${slot.refused} concurrency cap reached`, { retryAfterMs: CONCURRENCY_RETRY_MS })
    }
    const timeout = new AbortController()
    const timer = setTimeout(() => timeout.abort(new SecurityError('ERR_TOOL_TIMEOUT', `tool ${def.name} ran past its ${limits.timeoutMs} ms timeout`)), limits.timeoutMs)
    const signal = AbortSignal.any([mcp.mcpReq.signal, x.signal, timeout.signal])
    const started = performance.now()
    const extra: Record<string, string | number | boolean> = {}
    let code = 'OK'
    deps.metrics.inFlight.inc()
    let settled = false
    // In-process work still running after a timeout or cancel: it keeps its concurrency slot.
    let running: Promise<unknown> | undefined
    try {
      let output: ToolOutput
      if (def.isolate !== undefined) {
        const ran = await runIsolated({
          module: String(def.isolate.module),
          exportName: def.isolate.export ?? 'run',
          args: x.args,
          context: { requestId: x.requestId, principal },
          memoryMb: limits.memoryMb ?? 256,
          cpuMs: limits.cpuMs ?? 10_000,
          maxOutputBytes: limits.maxOutputBytes,
          env: def.isolate.env ?? {},
          signal,
        }).finally(() => {
          settled = true
          x.trace?.mark('tool', started)
        })
        extra.cpuMs = ran.usage.cpuMs
        extra.peakRssBytes = ran.usage.peakRssBytes
        output = ran.result as ToolOutput
      } else {
        const toolCtx: ToolContext = {
          requestId: x.requestId,
          principal,
          signal,
          mcp,
          canElicit,
          input: deps.input,
          policy: x.decision?.output ?? {},
          audit: (fields: Record<string, unknown>) => x.audit.note(fields),
          ...(x.trace === undefined ? {} : { trace: { context: x.trace.carrier(), mark: (name: string, start: number) => x.trace?.mark(name, start) } }),
        }
        const work = def.run(x.args, toolCtx).finally(() => {
          settled = true
          x.trace?.mark('tool', started)
        })
        running = work
        output = await untilAborted(work, signal)
      }
      if (exceedsBytes(output, limits.maxOutputBytes)) throw new SecurityError('ERR_OUTPUT_TOO_LARGE', `tool ${def.name} returned more than ${limits.maxOutputBytes} bytes`)
      const mode = deps.piiMode(def.name, x.decision?.output?.pii)
      extra.pii = mode
      if (mode === 'allow') return output
      // An input-required result's `requestState` is sealed server state, not data: masking could only corrupt it.
      const sealed = 'requestState' in output ? output.requestState : undefined
      const masked = maskValue(sealed === undefined ? output : { ...output, requestState: undefined })
      if (masked.counts.size > 0)
        extra.piiFound = Object.entries(Object.fromEntries(masked.counts))
          .map(([k, n]) => `${k}:${n}`)
          .join(',')
      if (mode === 'block' && masked.counts.size > 0)
        throw new SecurityError('ERR_PII_BLOCKED', `tool ${def.name} returned personal data (${extra.piiFound}) and its mode is block`)
      return (sealed === undefined ? masked.value : { ...(masked.value as object), requestState: sealed }) as ToolOutput
    } catch (error) {
      if (error instanceof IsolatedRunError) {
        extra.cpuMs = error.usage.cpuMs
        extra.peakRssBytes = error.usage.peakRssBytes
      }
      let failure: SecurityError
      if (timeout.signal.aborted) failure = toSecurityError(timeout.signal.reason)
      else if (signal.aborted) failure = new SecurityError('ERR_CANCELLED', `tool ${def.name} cancelled by the client`)
      else if (error instanceof SecurityError) failure = error
      else failure = new SecurityError('ERR_TOOL_FAILED', `tool ${def.name} threw: ${error instanceof Error ? error.message : 'non-error thrown'}`, { cause: error })
      code = failure.code
      if (failure.code === 'ERR_TOOL_TIMEOUT') extra.timeoutMs = limits.timeoutMs
      // Cancelled: the client no longer waits for an answer (the SDK sends none); the audit stage
      // records it like any refusal.
      if (failure.code === 'ERR_CANCELLED') throw failure
      x.audit.fail(failure)
      return deps.toolError(failure, x.requestId)
    } finally {
      clearTimeout(timer)
      const ms = performance.now() - started
      extra.toolMs = Math.round(ms * 100) / 100
      if (!settled) extra.abandoned = true
      x.audit.note(extra)
      deps.metrics.inFlight.dec()
      deps.metrics.toolCalls.inc({ tool: def.name, code })
      deps.metrics.toolSeconds.observe({ tool: def.name }, ms / 1000)
      // Abandoned work (it ignored its signal) still uses CPU and memory: the slot is free only when it ends.
      if (settled || running === undefined) slot.release()
      else void running.then(slot.release, slot.release)
    }
  }
}
