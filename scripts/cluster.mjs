// npm run cluster: two bastion replicas behind a small proxy, sharing Redis (limits, refresh
// tokens, spent confirmations), PostgreSQL (the audit table) and one state folder (keys and their
// revocations), the topology of "Run several replicas" in the README, on this machine. Ctrl-C
// stops every process it started.
//
// Environment (all optional):
//   BASTION_REDIS_URL     redis://127.0.0.1:6379
//   BASTION_PG_URL        postgres://postgres@127.0.0.1:5432/test
//   CLUSTER_DIR           .cluster (config and the state folder both replicas share)
//   CLUSTER_PORTS         8080,8081,8082 (proxy, replica a, replica b)
//   CLUSTER_PREFIX        bastion:cluster: (Redis key prefix)
//   CLUSTER_TABLE         bastion_cluster_audit (the audit table)
//   CLUSTER_PRINCIPAL_RATE  600/min (each principal's limit, shared by the replicas)
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { stringify } from 'yaml'
import { startProxy } from './cluster-proxy.mjs'

const env = process.env
const dir = resolve(env.CLUSTER_DIR ?? '.cluster')
const [proxyPort, ...replicaPorts] = (env.CLUSTER_PORTS ?? '8080,8081,8082').split(',').map(Number)
if (replicaPorts.length < 2 || [proxyPort, ...replicaPorts].some((p) => !(p > 0 && p < 65536))) {
  process.stderr.write('CLUSTER_PORTS: three ports, the proxy first\n')
  process.exit(2)
}
const bin = new URL('../dist/cli/main.js', import.meta.url).pathname
const url = `http://127.0.0.1:${proxyPort}/mcp`

mkdirSync(dir, { recursive: true, mode: 0o700 })
const config = join(dir, 'bastion.yaml')
writeFileSync(
  config,
  stringify({
    stateDir: 'state',
    server: { host: '127.0.0.1', websocket: { enabled: true } },
    roles: { admin: { permissions: ['*'] }, reader: { permissions: ['files:read'] } },
    auth: {
      resource: url,
      tokenService: { enabled: true, store: 'redis', redis: { url: { env: 'BASTION_REDIS_URL' }, keyPrefix: `${env.CLUSTER_PREFIX ?? 'bastion:cluster:'}tokens:` } },
    },
    limits: {
      backend: 'redis',
      redis: { url: { env: 'BASTION_REDIS_URL' }, keyPrefix: env.CLUSTER_PREFIX ?? 'bastion:cluster:' },
      principal: { rate: env.CLUSTER_PRINCIPAL_RATE ?? '600/min' },
    },
    audit: { sink: 'postgres', postgres: { url: { env: 'BASTION_PG_URL' }, table: env.CLUSTER_TABLE ?? 'bastion_cluster_audit' } },
    // One embedded database serves one process: the replicas run the file tools, not the SQL demo.
    sql: { enabled: false },
    vault: { enabled: false },
  }),
  { mode: 0o600 },
)
const childEnv = { ...env, BASTION_REDIS_URL: env.BASTION_REDIS_URL ?? 'redis://127.0.0.1:6379', BASTION_PG_URL: env.BASTION_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test' }

// The admin key, made once for the shared state folder (both replicas read the one key store).
if (!existsSync(join(dir, 'state', 'keys.json'))) {
  const made = spawnSync(process.execPath, [bin, 'keys', 'create', '--role', 'admin', '--name', 'cluster-admin', '--config', config], { env: childEnv, encoding: 'utf8' })
  if (made.status !== 0) {
    process.stderr.write(made.stderr)
    process.exit(made.status ?? 1)
  }
  process.stdout.write(`admin key (shown once): ${made.stdout.trim().split('\n').pop()}\n`)
}

const children = []
let proxy
/** Stop the replicas (they close their audit chains), then the proxy, then exit. */
function stopAll(code) {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null)
  for (const c of running) c.kill('SIGTERM')
  proxy?.close()
  proxy?.closeAllConnections()
  void Promise.all(running.map((c) => new Promise((r) => c.once('exit', r)))).then(() => process.exit(code))
  setTimeout(() => {
    for (const c of running) if (c.exitCode === null) c.kill('SIGKILL')
    process.exit(code)
  }, 10_000).unref()
}
process.on('SIGINT', () => stopAll(0))
process.on('SIGTERM', () => stopAll(0))

// One after the other: the first start of a shared state folder creates its keys, once.
const startReplica = (port, i) =>
  new Promise((ok, fail) => {
    const child = spawn(process.execPath, [bin, 'serve', '--config', config, '--port', String(port)], { env: childEnv, stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    let out = ''
    child.stdout.on('data', (c) => {
      out += c.toString()
      if (/listening on \S+/.test(out)) ok({ name: String.fromCharCode(97 + i), port })
    })
    child.once('exit', (code) => {
      fail(new Error(`replica on port ${port} exited ${code}`))
      stopAll(1)
    })
  })
let replicas = []
try {
  for (const [i, port] of replicaPorts.entries()) replicas.push(await startReplica(port, i))
} catch (error) {
  process.stderr.write(`${error.message}\n`)
  stopAll(1)
  replicas = undefined
}
if (replicas === undefined) process.exit(1)

proxy = await startProxy({ port: proxyPort, replicas: replicas.map((r) => ({ ...r, host: '127.0.0.1' })) })
process.stdout.write(`cluster ready: ${url} -> ${replicas.map((r) => `replica ${r.name} http://127.0.0.1:${r.port}/mcp`).join(', ')}\n`)
