// Load generator, run as its own process so that its CPU is not the server's:
// node bench/load-worker.mjs URL KEY CONNECTIONS SECONDS → one JSON line {requests, errors, p50, p99}.
const [url, key, connections = '16', seconds = '5'] = process.argv.slice(2)
const body = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: {
    name: 'echo',
    arguments: { text: 'hi' },
    _meta: {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'bench', version: '1' },
      'io.modelcontextprotocol/clientCapabilities': {},
    },
  },
})
const headers = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': '2026-07-28',
  'mcp-method': 'tools/call',
  'mcp-name': 'echo',
  authorization: `Bearer ${key}`,
}
const end = performance.now() + Number(seconds) * 1000
const latencies = []
let errors = 0
async function worker() {
  while (performance.now() < end) {
    const t = performance.now()
    const res = await fetch(url, { method: 'POST', headers, body })
    await res.arrayBuffer()
    if (res.status !== 200) errors += 1
    latencies.push(performance.now() - t)
  }
}
await Promise.all(Array.from({ length: Number(connections) }, worker))
latencies.sort((a, b) => a - b)
const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0
process.stdout.write(`${JSON.stringify({ requests: latencies.length, errors, seconds: Number(seconds), p50: at(0.5), p99: at(0.99) })}\n`)
