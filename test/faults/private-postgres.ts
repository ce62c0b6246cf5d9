import { execFile } from 'node:child_process'
import { chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** A PostgreSQL of this test's own (initdb + pg_ctl in a temp folder, trust auth, loopback), to stop and start at will. */
export interface PrivatePostgres {
  readonly url: string
  readonly port: number
  /** Start it (no-op when running). */
  start(): Promise<void>
  /** `pg_ctl stop -m fast`: every connection is closed, as in a database restart (no-op when stopped). */
  stop(): Promise<void>
  destroy(): Promise<void>
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

export async function privatePostgres(): Promise<PrivatePostgres> {
  const version = readdirSync('/usr/lib/postgresql').sort().at(-1)
  if (version === undefined) throw new Error('no PostgreSQL binaries under /usr/lib/postgresql')
  const bin = (name: string) => `/usr/lib/postgresql/${version}/bin/${name}`
  const dir = mkdtempSync(join(tmpdir(), 'bastion-private-pg-'))
  const data = join(dir, 'data')
  // initdb refuses to run as root: the cluster belongs to the postgres user when we are root.
  const asRoot = process.getuid?.() === 0
  const as = (cmd: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', cmd, ...args]) : run(cmd, args))
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres'])
    const { stdout: gid } = await run('id', ['-g', 'postgres'])
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()))
  }
  await as(bin('initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'])
  const port = await freePort()
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`
  let running = false
  const pg: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      if (running) return
      await as(bin('pg_ctl'), ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start'])
      running = true
    },
    async stop() {
      if (!running) return
      await as(bin('pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop'])
      running = false
    },
    async destroy() {
      await pg.stop().catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  await pg.start()
  return pg
}
