import { createBastion } from '../bastion.js'
import { envPort } from '../compose/first-run.js'
import { serveStdio } from '../transport/stdio.js'
import { SERVE } from './commands.js'
import { configPath } from './config-path.js'
import { type Parsed, UsageError } from './usage.js'

function parsePort(text: string | undefined, where: string): number | undefined {
  if (text === undefined || text === '') return undefined
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new UsageError(SERVE, `${where}: ${JSON.stringify(text.slice(0, 40))} is not a port number (0-65535)`)
  return Number(text)
}

/** `serve`: resolves once listening; the process then runs until a signal (or stdin ends, with --stdio). */
export async function serve(p: Parsed): Promise<void> {
  // Flags here; $BASTION_HOST and $BASTION_PORT are listen()'s (a malformed port refused before any state opens).
  const host = p.string('host')
  const port = parsePort(p.string('port'), '--port')
  envPort(process.env.BASTION_PORT)
  const path = configPath(p.string('config'))
  if (p.flag('stdio')) {
    const bastion = await createBastion({ ...(path === undefined ? {} : { config: path }), announce: false })
    const handle = await serveStdio(bastion)
    const stop = async (): Promise<void> => {
      await handle.close()
      await bastion.close()
      process.exit(0)
    }
    process.once('SIGINT', () => void stop())
    process.once('SIGTERM', () => void stop())
    process.stdin.once('end', () => void stop())
    return
  }
  // The first-run key and the listening line (listen() writes both) go to stdout; with the audit
  // trail there, to stderr.
  let auditOnStdout = false
  const announce = { write: (text: string) => (auditOnStdout ? process.stderr : process.stdout).write(text) }
  const bastion = await createBastion({ ...(path === undefined ? {} : { config: path }), announce })
  auditOnStdout = bastion.loaded.config.audit.sink === 'stdout'
  // Before listening: a signal that follows the listening line closes the trail (audit.closed).
  const stop = async (): Promise<void> => {
    await bastion.close()
    process.exit(0)
  }
  process.once('SIGINT', () => void stop())
  process.once('SIGTERM', () => void stop())
  try {
    await bastion.listen({ ...(host === undefined ? {} : { host }), ...(port === undefined ? {} : { port }) })
  } catch (error) {
    // Not serving: the upstream processes it started (and the trail) are closed before the refusal is reported.
    await bastion.close()
    throw error
  }
}
