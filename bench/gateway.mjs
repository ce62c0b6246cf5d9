// npm run bench:gateway — what the gateway costs per call: the same upstream called directly with
// the MCP client, and through bastion (every layer on), stdio and HTTP upstreams, in one run.
// Per call: wall time (sequential calls from one client) and CPU of every process involved
// (client, bastion, upstream; from /proc and process.cpuUsage). Ratios are gateway ÷ direct,
// pair by pair within a repetition. Every call of both sides must answer (else the run fails).
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio'
import { here, machine, publish } from './lib.mjs'

const CALLS = Number(process.env.BENCH_CALLS ?? 2000)
const REPS = Number(process.env.BENCH_REPS ?? 3)
const drift = here('../test/fixtures/upstreams/drift-server.mjs')
const httpFixture = here('../test/fixtures/upstreams/http-server.mjs')

const cpuOf = (pid) => {
  if (pid === null || pid === undefined) return 0
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) * 10_000 // µs (10 ms ticks)
}
const selfCpu = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

function child(args, env = {}) {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  const first = new Promise((resolve, reject) => {
    let out = ''
    proc.stdout.on('data', (c) => {
      out += c
      const nl = out.indexOf('\n')
      if (nl !== -1) resolve(out.slice(0, nl))
    })
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`)))
  })
  return { proc, first }
}

/** `CALLS` sequential echo calls; every one must answer `{"text":"hi"}`. */
async function calls(client, name, pids) {
  const cpu0 = selfCpu() + pids().reduce((a, p) => a + cpuOf(p), 0)
  const t0 = performance.now()
  for (let i = 0; i < CALLS; i++) {
    const r = await client.callTool({ name, arguments: { text: 'hi' } })
    const text = r.content?.[0]?.text
    if (r.isError === true || (text !== '{"text":"hi"}' && text !== 'hi')) throw new Error(`${name}: call ${i} answered ${JSON.stringify(r).slice(0, 200)}`)
  }
  const wallUs = ((performance.now() - t0) * 1000) / CALLS
  const cpuUs = (selfCpu() + pids().reduce((a, p) => a + cpuOf(p), 0) - cpu0) / CALLS
  return { wallUs, cpuUs }
}

async function setups() {
  const http = child([httpFixture], { PORT: '0', MODE: 'normal', RECORD_FILE: '/dev/null' })
  const port = /listening (\d+)/.exec(await http.first)[1]
  const upstreamUrl = `http://127.0.0.1:${port}/mcp`
  const defs = join(mkdtempSync(join(tmpdir(), 'bench-gateway-')), 'defs.json')
  writeFileSync(defs, JSON.stringify([{ name: 'echo', description: 'Echo.', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } }]))

  const directStdio = new Client({ name: 'bench', version: '1' })
  const stdioTransport = new StdioClientTransport({ command: process.execPath, args: [drift], env: { DRIFT_DEFS: defs, PATH: process.env.PATH ?? '' } })
  await directStdio.connect(stdioTransport)
  const directHttp = new Client({ name: 'bench', version: '1' })
  await directHttp.connect(new StreamableHTTPClientTransport(new URL(upstreamUrl)))

  const gateways = {}
  for (const kind of ['none', 'stdio', 'http']) {
    const g = child([here('./gateway-server.mjs'), kind, upstreamUrl])
    const info = JSON.parse(await g.first)
    const client = new Client({ name: 'bench', version: '1' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } })
    await client.connect(new StreamableHTTPClientTransport(new URL(info.url), { requestInit: { headers: { authorization: `Bearer ${info.key}` } } }))
    gateways[kind] = { proc: g.proc, client, upstreamPid: info.upstreamPid }
  }
  return {
    sides: [
      { name: 'stdio upstream, direct (MCP client over stdio)', kind: 'stdio', side: 'direct', client: directStdio, tool: 'echo', pids: () => [stdioTransport.pid] },
      {
        name: 'stdio upstream, through bastion (client over HTTP, 2026-07-28)',
        kind: 'stdio',
        side: 'gateway',
        client: gateways.stdio.client,
        tool: 'up__echo',
        pids: () => [gateways.stdio.proc.pid, gateways.stdio.upstreamPid],
      },
      { name: "bastion's own echo tool (no upstream: the floor)", kind: 'none', side: 'own', client: gateways.none.client, tool: 'up__echo', pids: () => [gateways.none.proc.pid] },
      { name: 'HTTP upstream, direct (MCP client over HTTP)', kind: 'http', side: 'direct', client: directHttp, tool: 'echo', pids: () => [http.proc.pid] },
      {
        name: 'HTTP upstream, through bastion (client over HTTP, 2026-07-28)',
        kind: 'http',
        side: 'gateway',
        client: gateways.http.client,
        tool: 'up__echo',
        pids: () => [gateways.http.proc.pid, http.proc.pid],
      },
    ],
    async close() {
      for (const c of [directStdio, directHttp, gateways.none.client, gateways.stdio.client, gateways.http.client]) await c.close().catch(() => {})
      for (const p of [gateways.none.proc, gateways.stdio.proc, gateways.http.proc, http.proc]) p.kill('SIGTERM')
    },
  }
}

const started = Date.now()
const { sides, close } = await setups()
const results = new Map(sides.map((s) => [s.name, []]))
try {
  for (const s of sides) await calls(s.client, s.tool, s.pids) // warm-up
  for (let rep = 0; rep < REPS; rep++) {
    for (const s of rep % 2 === 0 ? sides : [...sides].reverse()) {
      results.get(s.name).push(await calls(s.client, s.tool, s.pids))
      process.stderr.write('.')
    }
  }
} finally {
  await close()
  process.stderr.write('\n')
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const lines = [
  '# mcp-bastion gateway benchmark',
  '',
  `Machine: ${machine()}.`,
  `${CALLS} sequential \`echo\` calls per repetition from one MCP client (SDK v2), ${REPS} repetitions, sides alternated; median. CPU is every process involved (client, bastion, upstream), from /proc (10 ms ticks) and process.cpuUsage. Ratios are through-bastion ÷ direct, pair by pair within a repetition. Bastion runs every layer: API key, RBAC, rate limits (memory), schema validation, PII masking, audit to a file. Every call of both sides answered.`,
  '',
  "The floor is the same call to a tool of bastion's own (every layer, no upstream): what the gateway adds is the difference to it.",
  '',
  '| configuration | µs per call (wall) | × direct | × own tool | CPU µs per call | × direct | × own tool |',
  '|---|---|---|---|---|---|---|',
]
const own = results.get(sides.find((d) => d.side === 'own').name)
const ratio = (r, base, key) => (base === undefined ? '–' : median(r.map((x, i) => x[key] / base[i][key])).toFixed(2))
for (const s of sides) {
  const r = results.get(s.name)
  const direct = s.side === 'own' ? undefined : results.get(sides.find((d) => d.kind === s.kind && d.side === 'direct').name)
  const vsOwn = s.side === 'gateway' ? own : undefined
  lines.push(
    `| ${s.name} | ${median(r.map((x) => x.wallUs)).toFixed(0)} | ${ratio(r, direct, 'wallUs')} | ${ratio(r, vsOwn, 'wallUs')} | ${median(r.map((x) => x.cpuUs)).toFixed(0)} | ${ratio(r, direct, 'cpuUs')} | ${ratio(r, vsOwn, 'cpuUs')} |`,
  )
}
lines.push('', `Run time: ${Math.round((Date.now() - started) / 1000)} s.`)
publish('gateway.md', lines)
