// npm run bench:console: the operator console's file-trail reader on a large trail (BENCH_MB, default
// 1024 MiB), against a plain `readline` pass over the same file in the same run. Sealed lines are made
// by the real hash chain (dist/audit/chain.js), as serve writes them; each phase runs in its own
// process so its memory is its own. Prints index time, lines/s, heap and RSS after indexing, query
// latencies. BENCH_DIR picks the folder (default: the OS temp folder); the trail is removed after.
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { AuditChain } from '../dist/audit/chain.js'
import { FileTrailReader } from '../dist/console/file-trail.js'
import { machine } from './lib.mjs'

const KEY = Buffer.from('0123456789abcdef'.repeat(4))
const MB = Number(process.env.BENCH_MB ?? 1024)
const HOUR = 3_600_000
const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`
const ms = (n) => `${n.toFixed(1)} ms`

/** Child: write the trail, ~`MB` MiB, spanning the last 23 hours. */
function generate(file, bytes) {
  const fd = openSync(file, 'w', 0o600)
  const chain = new AuditChain(KEY, undefined)
  const perLine = 467
  const total = Math.ceil(bytes / perLine)
  const start = Date.now() - 23 * HOUR
  const step = (23 * HOUR) / total
  let written = 0
  let i = 0
  const opened = `${JSON.stringify({ ts: new Date(start).toISOString(), event: 'audit.opened', decision: 'allow', reason: 'OK', pid: process.pid, kid: chain.kid })}\n`
  const first = chain.sealAll([opened])
  writeSync(fd, first.text)
  first.commit()
  const decisions = ['allow', 'allow', 'allow', 'deny', 'allow', 'error', 'allow', 'allow']
  while (written < bytes) {
    const batch = []
    for (let k = 0; k < 2000; k++, i++) {
      const decision = decisions[i % decisions.length]
      batch.push(
        `${JSON.stringify({
          ts: new Date(start + i * step).toISOString(),
          event: 'tool.call',
          requestId: `req-${i}`,
          principal: `key:k${i % 500}`,
          roles: ['reader'],
          method: 'tools/call',
          tool: `tool_${i % 40}`,
          decision,
          reason: decision === 'allow' ? 'OK' : decision === 'deny' ? 'ERR_FORBIDDEN' : 'ERR_TOOL_FAILED',
          transport: 'http',
          era: '2025-11-25',
          session: `s-${i % 9000}`,
          remote: '10.0.0.7',
          durationMs: Math.round((1 + (i % 97) * 1.7 + (i % 1000 === 0 ? 900 : 0)) * 100) / 100,
        })}\n`,
      )
    }
    const sealed = chain.sealAll(batch)
    written += writeSync(fd, sealed.text)
    sealed.commit()
  }
  closeSync(fd)
  process.stdout.write(JSON.stringify({ lines: i + 1 }))
}

/** Child: the baseline, a plain readline pass counting lines. */
async function baseline(file) {
  const rss0 = process.memoryUsage().rss
  const t0 = performance.now()
  let n = 0
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY })
  rl.on('line', () => {
    n++
  })
  await once(rl, 'close')
  const t = performance.now() - t0
  process.stdout.write(JSON.stringify({ lines: n, ms: t, rssGrowth: process.memoryUsage().rss - rss0, heap: process.memoryUsage().heapUsed }))
}

/** Child: the reader. */
async function reader(file) {
  const rss0 = process.memoryUsage().rss
  const heap0 = process.memoryUsage().heapUsed
  let peak = rss0
  const sample = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 200)
  const r = new FileTrailReader({ file, keys: [KEY] })
  const t0 = performance.now()
  const stats = await r.stats(new Date())
  const indexMs = performance.now() - t0
  clearInterval(sample)
  const mem = process.memoryUsage()
  globalThis.gc?.()
  const live = process.memoryUsage()
  const time = async (f) => {
    const t = performance.now()
    const v = await f()
    return [performance.now() - t, v]
  }
  const [newestMs, newest] = await time(() => r.query({ limit: 50 }))
  const [principalMs, byPrincipal] = await time(() => r.query({ limit: 50, principal: 'key:k123' }))
  const [denyMs] = await time(() => r.query({ limit: 50, decision: 'deny', tool: 'tool_7' }))
  const [textMs] = await time(() => r.query({ limit: 50, text: 'REQ-99999' }))
  // The worst case: a request id near the start; each call reads up to its budget, then says how far it got.
  const [firstCallMs, firstCall] = await time(() => r.query({ limit: 10, requestId: 'req-10' }))
  let calls = 1
  let page = firstCall
  const tAll = performance.now()
  while (page.entries.length === 0 && page.next !== undefined) {
    page = await r.query({ limit: 10, requestId: 'req-10', before: page.next })
    calls++
  }
  const allMs = performance.now() - tAll + firstCallMs
  const [tailMs] = await time(() => r.query({ limit: 50, after: newest.newest }))
  const [statsMs] = await time(() => r.stats(new Date()))
  const oldest = (await r.query({ limit: 1, to: new Date(Date.now() - 22.9 * HOUR).toISOString() })).entries.at(-1)
  const [verifyMs, v] = await time(() => r.verify(oldest?.cursor ?? newest.newest, newest.newest))
  await r.close()
  process.stdout.write(
    JSON.stringify({
      indexMs,
      rssGrowth: mem.rss - rss0,
      peakRssGrowth: peak - rss0,
      heapGrowth: mem.heapUsed - heap0,
      heap: mem.heapUsed,
      liveHeap: live.heapUsed,
      liveRssGrowth: live.rss - rss0,
      lastDay: stats.lastDay,
      p50: stats.p50Ms,
      p99: stats.p99Ms,
      newestMs,
      principalMs,
      principalFound: byPrincipal.entries.length,
      denyMs,
      textMs,
      firstCallMs,
      searchedBackTo: firstCall.searchedBackTo,
      calls,
      allMs,
      found: page.entries[0]?.where,
      tailMs,
      statsMs,
      verifyMs,
      verify: { status: v.status, lines: v.lines },
    }),
  )
}

const [mode, file, arg] = process.argv.slice(2)
if (mode === '--generate') generate(file, Number(arg))
else if (mode === '--baseline') await baseline(file)
else if (mode === '--reader') await reader(file)
else {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'bastion-console-bench-'))
  const path = join(dir, 'audit.jsonl')
  const child = (...args) => JSON.parse(execFileSync(process.execPath, ['--expose-gc', new URL(import.meta.url).pathname, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 }))
  try {
    const g0 = performance.now()
    const gen = child('--generate', path, String(MB * 2 ** 20))
    const size = statSync(path).size
    console.log(`console trail bench — ${machine()}`)
    console.log(`trail: ${mib(size)}, ${gen.lines.toLocaleString()} sealed lines, written in ${((performance.now() - g0) / 1000) | 0} s`)
    const base = child('--baseline', path)
    const r = child('--reader', path)
    const rate = (lines, t) => Math.round(lines / (t / 1000)).toLocaleString()
    console.log(`baseline readline:        ${rate(base.lines, base.ms)} lines/s (${(base.ms / 1000).toFixed(1)} s), RSS +${mib(base.rssGrowth)}`)
    console.log(
      `FileTrailReader indexing: ${rate(gen.lines, r.indexMs)} lines/s (${(r.indexMs / 1000).toFixed(1)} s; ${(base.ms / r.indexMs).toFixed(2)}× baseline speed) — verifies every MAC and link, stats, marks`,
    )
    console.log(
      `  after indexing: RSS +${mib(r.rssGrowth)} (peak +${mib(r.peakRssGrowth)}), heap ${mib(r.heap)} (+${mib(r.heapGrowth)}); after a full GC: heap ${mib(r.liveHeap)}, RSS +${mib(r.liveRssGrowth)}`,
    )
    console.log(`  stats: lastDay ${JSON.stringify(r.lastDay)}, p50 ${r.p50} ms, p99 ${r.p99} ms; verify of the last ~23 h: ${JSON.stringify(r.verify)} in ${ms(r.verifyMs)}`)
    console.log('query latencies (after indexing; each call re-reads only what was appended):')
    console.log(`  newest page (50):                     ${ms(r.newestMs)}`)
    console.log(`  principal filter (50):                ${ms(r.principalMs)} (${r.principalFound} found)`)
    console.log(`  decision+tool filter (50):            ${ms(r.denyMs)}`)
    console.log(`  text filter, no match (one budget):   ${ms(r.textMs)}`)
    console.log(`  requestId near the start, 1st call:   ${ms(r.firstCallMs)} (stopped at its 64 MiB budget, searchedBackTo ${r.searchedBackTo})`)
    console.log(`  … paging with next until found:       ${ms(r.allMs)} over ${r.calls} calls → ${r.found}`)
    console.log(`  live tail (after newest, nothing new): ${ms(r.tailMs)}`)
    console.log(`  stats again:                          ${ms(r.statsMs)}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
