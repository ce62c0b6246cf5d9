// Load from its own process: node bench/load-autocannon.mjs '<target json>' CONNECTIONS SECONDS
// → one JSON line {requests, rps, p50, p99, non2xx, errors}.
import autocannon from 'autocannon'

const [targetJson = '{}', connections = '32', seconds = '10'] = process.argv.slice(2)
const target = JSON.parse(targetJson)
const result = await autocannon({
  url: target.url,
  method: 'POST',
  headers: target.headers,
  body: target.body,
  connections: Number(connections),
  duration: Number(seconds),
  pipelining: 1,
})
process.stdout.write(
  `${JSON.stringify({ requests: result.requests.total, rps: result.requests.average, mean: result.latency.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx, errors: result.errors + result.timeouts })}\n`,
)
