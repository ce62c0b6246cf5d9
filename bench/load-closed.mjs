// Closed-loop load from its own process:
//   node bench/load-closed.mjs '<target json>' CONNECTIONS COUNT
// CONNECTIONS loops on as many keep-alive sockets each send a request, wait for its whole answer,
// check it, and send the next, until COUNT requests were answered. Each request has its own
// JSON-RPC id (a session routes answers by id: repeated ids on one session lose answers).
// Latency is timed per request with process.hrtime (sub-microsecond), not a millisecond histogram.
// Prints one JSON line {requests, failed, failures, wallMs, rps, meanUs, p50Us, p99Us}.
import { Agent, request } from 'node:http'

const [targetJson = '{}', connectionsText = '32', countText = '1000'] = process.argv.slice(2)
const target = JSON.parse(targetJson)
const connections = Number(connectionsText)
const count = Number(countText)
const url = new URL(target.url)
const agent = new Agent({ keepAlive: true, maxSockets: connections })
const template = JSON.parse(target.body)
let nextId = 1_000_000 * (1 + (process.pid % 1000))

/** One request; resolves with the failure's description, or undefined when the answer is right. */
function send(latencies) {
  const id = nextId++
  const body = JSON.stringify({ ...template, id })
  const started = process.hrtime.bigint()
  return new Promise((resolve) => {
    const req = request(
      { agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { ...target.headers, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => {
          latencies.push(Number(process.hrtime.bigint() - started) / 1000)
          const text = Buffer.concat(chunks).toString('utf8')
          // The answer must be this request's, and the echo's result (JSON or an SSE event).
          if (res.statusCode !== 200) resolve(`HTTP ${res.statusCode}: ${text.slice(0, 160)}`)
          else if (!text.includes(`"id":${id}`) || !text.includes('"text":"hi"')) resolve(`wrong answer: ${text.slice(0, 160)}`)
          else resolve(undefined)
        })
        res.on('error', (e) => resolve(`response error: ${e.message}`))
      },
    )
    req.setTimeout(10_000, () => req.destroy(new Error('timeout after 10 s')))
    req.on('error', (e) => resolve(`request error: ${e.message}`))
    req.end(body)
  })
}

const latencies = []
const failures = []
let issued = 0
const started = process.hrtime.bigint()
await Promise.all(
  Array.from({ length: connections }, async () => {
    while (issued < count) {
      issued++
      const failure = await send(latencies)
      if (failure !== undefined) failures.push(failure)
    }
  }),
)
const wallMs = Number(process.hrtime.bigint() - started) / 1e6
agent.destroy()
const sorted = [...latencies].sort((a, b) => a - b)
const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
process.stdout.write(
  `${JSON.stringify({
    requests: latencies.length,
    failed: failures.length,
    failures: [...new Set(failures)].slice(0, 3),
    wallMs,
    rps: (latencies.length * 1000) / wallMs,
    meanUs: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    p50Us: at(0.5),
    p99Us: at(0.99),
  })}\n`,
)
