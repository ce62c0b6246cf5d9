/**
 * Entry point of an isolated tool run: a fresh Node process per call, started by isolated.ts,
 * which finds the built file through package.json's `imports` (`#isolated-runner`).
 * stdin carries one JSON line with the call, then possibly `abort`; fd 3 carries one JSON result.
 * The tool's own stdout and stderr go to the parent, which keeps only a capped excerpt.
 */
import { createWriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import { exceedsBytes } from './output-size.js'

interface Call {
  readonly module: string
  readonly exportName: string
  readonly args: unknown
  readonly context: { readonly requestId: string; readonly principal: unknown }
  readonly maxOutputBytes: number
}

type Reply = { ok: true; result: unknown; maxRssBytes: number; cpuMs: number } | { ok: false; code: 'ERR_OUTPUT_TOO_LARGE' | 'ERR_TOOL_FAILED'; detail: string }

function send(reply: Reply): Promise<void> {
  return new Promise((resolve) => {
    const out = createWriteStream('', { fd: 3 })
    out.on('error', () => resolve())
    out.end(JSON.stringify(reply), () => resolve())
  })
}

async function main(): Promise<void> {
  const controller = new AbortController()
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  const first = new Promise<string>((resolve, reject) => {
    let seen = false
    lines.on('line', (line) => {
      if (!seen) {
        seen = true
        resolve(line)
      } else if (line === 'abort') controller.abort(new Error('aborted by the server'))
    })
    lines.on('close', () => {
      if (!seen) reject(new Error('no call on stdin'))
      // The server went away: nobody is waiting for the result.
      else controller.abort(new Error('server closed the channel'))
    })
  })
  const call = JSON.parse(await first) as Call
  const url = call.module.startsWith('file:') ? call.module : pathToFileURL(call.module).href
  const loaded = (await import(url)) as Record<string, unknown>
  const run = loaded[call.exportName]
  if (typeof run !== 'function') {
    await send({ ok: false, code: 'ERR_TOOL_FAILED', detail: `module does not export a function ${call.exportName}` })
    return
  }
  try {
    const result: unknown = await run(call.args, { ...call.context, signal: controller.signal })
    if (exceedsBytes(result, call.maxOutputBytes)) {
      await send({ ok: false, code: 'ERR_OUTPUT_TOO_LARGE', detail: `result exceeds ${call.maxOutputBytes} bytes` })
      return
    }
    const cpu = process.cpuUsage()
    await send({ ok: true, result, maxRssBytes: process.resourceUsage().maxRSS * 1024, cpuMs: Math.round((cpu.user + cpu.system) / 1000) })
  } catch (error) {
    await send({ ok: false, code: 'ERR_TOOL_FAILED', detail: error instanceof Error ? `${error.name}: ${error.message}`.slice(0, 500) : 'non-error thrown' })
  }
}

main().then(
  () => process.exit(0),
  async (error: unknown) => {
    await send({ ok: false, code: 'ERR_TOOL_FAILED', detail: error instanceof Error ? `${error.name}: ${error.message}`.slice(0, 500) : 'runner failed' })
    process.exit(1)
  },
)
