import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { WIRE } from '../src/errors.js'

const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

/** The rows of the first Markdown table after a heading. */
function tableAfter(heading: string): string[][] {
  const at = README.indexOf(heading)
  if (at < 0) throw new Error(`README has no ${heading}`)
  const lines = README.slice(at).split('\n')
  const start = lines.findIndex((l) => l.startsWith('|'))
  const rows: string[][] = []
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break
    rows.push(
      line
        .slice(1, -1)
        .split(' | ')
        .map((c) => c.trim()),
    )
  }
  return rows
}

describe('README', () => {
  it('the error code table is the WIRE table, row for row', () => {
    const documented = tableAfter('### Error codes').map(([code, http, rpc, carrier, event, decision, text]) => [
      code?.replace(/`/g, ''),
      { http, rpc, carrier, event, decision, text },
    ])
    const actual = Object.entries(WIRE).map(([code, r]) => [
      code,
      { http: String(r.carrier === 'http' ? r.http : 200), rpc: String(r.rpc), carrier: r.carrier, event: r.event, decision: r.outcome, text: r.text },
    ])
    expect(documented).toStrictEqual(actual)
  })

  it('the stage table names every stage of the request path, in order', () => {
    const stages = readFileSync(new URL('../src/transport/stages.ts', import.meta.url), 'utf8')
    const list = stages.slice(stages.indexOf('export function requestStages'), stages.indexOf('] // then the SDK'))
    const modules = tableAfter('## Security model').map((r) => r[1] ?? '')
    // Each stage of the list is documented by the module that implements it.
    let previous = 'export function requestStages'
    for (const [stage, module] of [
      ['checkHeaders', 'headers.ts'],
      ['checkHostAndOrigin', 'dns-rebinding.ts'],
      ['checkRequestShape', 'request-shape.ts'],
      ['refuseQueryCredential', 'http-auth.ts'],
      ['anonymousLimit', 'rate-guard.ts'],
      ['authenticate', 'http-auth.ts'],
      ['readBody', 'body-guard.ts'],
      ['rateLimit', 'rate-guard.ts'],
      ['checkMessage', 'message.ts'],
      ['classifyEra', 'edge.ts'],
      ['d.session', 'sessions.ts'],
      ['resolveTool', 'call-stages.ts'],
      ['authorizeTool', 'call-stages.ts'],
      ['checkParamHeaders', 'param-headers.ts'],
    ] as const) {
      expect(list, stage).toContain(stage)
      // In this order: over HTTP the credential is checked from the headers before the body is read.
      expect(list.indexOf(stage), `${stage} after ${previous}`).toBeGreaterThan(list.indexOf(previous))
      previous = stage
      expect(
        modules.some((m) => m.includes(module)),
        module,
      ).toBe(true)
    }
  })
})
