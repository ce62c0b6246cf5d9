import { execFileSync } from 'node:child_process'
import { expect, it } from 'vitest'

// The SDK's stateful JSON-response mode leaks ~5 KB per request (typescript-sdk#2559) and keeps
// ~40 KB per session forever. 10,000 calls through one process, half in one 2025-11-25 session
// and half 2026-07-28 stateless, must leave the heap where it was: a 5 KB-per-call leak would add
// ~45 MB; the bound allows 16 MB of noise (about 1.8 KB per call). `npm run bench:soak` runs
// the whole pipeline for minutes.
it('10,000 tool calls through one process: bounded heap growth', { timeout: 240_000 }, () => {
  const out = execFileSync(process.execPath, ['--expose-gc', 'test/memory/soak-child.mjs', '10000'], { encoding: 'utf8', timeout: 230_000 })
  const report = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { calls: number; failures: number; growthBytes: number; perCallBytes: number; seconds: number }
  console.log(`heap: ${report.calls} calls in ${report.seconds.toFixed(1)} s, growth ${(report.growthBytes / 1024).toFixed(0)} KiB (${report.perCallBytes.toFixed(1)} B/call)`)
  expect(report.calls).toBe(9_000)
  expect(report.failures).toBe(0)
  expect(report.growthBytes).toBeLessThan(16 * 1024 * 1024)
})
