import { bindBuiltins } from '../compose/bind.js'
import { ConfigError } from '../config/load.js'
import { type DoctorContext, dangerousOptions, grantsCheck, keysCheck, limitsCheck, secretsCheck, stateCheck, tlsCheck, upstreamsCheck } from '../doctor/config-checks.js'
import { type Finding, fail, formatFindings } from '../doctor/findings.js'
import { liveChecks } from '../doctor/live-checks.js'
import { auditCheck, issuerClockCheck, principalsOf, servicesCheck } from '../doctor/service-checks.js'
import { DOCTOR } from './commands.js'
import { loadConfig } from './config-path.js'
import { EXIT, type Parsed, UsageError } from './usage.js'

/**
 * `doctor [--config FILE] [--url URL] [--json]`: the deployment checklist, run. Offline: the config
 * and the state folder (TLS, dangerously* options, secrets and their files, permissions, roles,
 * tools, limits, keys, the audit trail and its key, Redis and PostgreSQL, issuer clocks, upstream
 * pins); with `--url`, a running server as a client without a credential sees it. Exit 1 on any
 * fail, 0 otherwise (warnings included), 2 when the config does not load. Writes nothing.
 */
export async function doctor(p: Parsed): Promise<number> {
  const url = p.string('url')
  let target: URL | undefined
  if (url !== undefined) {
    try {
      target = new URL(url)
    } catch {
      throw new UsageError(DOCTOR, `--url ${url.slice(0, 200)}: not a URL`)
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new UsageError(DOCTOR, '--url: http or https only')
  }
  const loaded = loadConfig(p.string('config'))
  const ctx: DoctorContext = { loaded, env: process.env, now: new Date() }
  const findings: Finding[] = [...tlsCheck(ctx), ...dangerousOptions(ctx), ...secretsCheck(ctx), ...stateCheck(ctx)]
  try {
    findings.push(...grantsCheck(bindBuiltins(loaded)))
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    findings.push(fail('config', error.message, 'fix the config (mcp-bastion config check FILE)'))
  }
  // The trail is read once: verified, and searched for when each key was last used.
  let lastSeen: ReadonlyMap<string, string> | undefined
  const audit = await auditCheck(ctx, (texts) => {
    lastSeen = principalsOf(texts)
  })
  findings.push(...limitsCheck(ctx), ...keysCheck(ctx, lastSeen), ...upstreamsCheck(ctx))
  findings.push(...audit, ...(await servicesCheck(ctx)), ...(await issuerClockCheck(ctx)))
  if (target !== undefined) findings.push(...(await liveChecks(target)))
  if (p.flag('json')) process.stdout.write(`${JSON.stringify({ source: loaded.source, findings }, null, 2)}\n`)
  else process.stdout.write(`mcp-bastion doctor: ${loaded.source}${target === undefined ? '' : ` and ${target.href}`}\n\n${formatFindings(findings)}`)
  return findings.some((f) => f.verdict === 'fail') ? EXIT.failed : EXIT.ok
}
