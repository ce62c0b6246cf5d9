import { bindBuiltins } from '../compose/bind.js'
import { describeUnusedPermission, unusedPermissions } from '../compose/unused-permissions.js'
import { ConfigError, loadConfigFile, readSecret } from '../config/load.js'
import { secretRefs } from './secret-refs.js'
import { EXIT, type Parsed } from './usage.js'

/**
 * `config check FILE`: validate, bind to the built-in tools as serve would, resolve every secret
 * reference (unless `--no-env`), warn about role permissions that grant nothing. Reads only.
 * Exit 0 (warnings included), 1 when a secret reference does not resolve, 2 when the config is invalid.
 * Does not check: that secrets are right (a key that verifies nothing), that Redis, PostgreSQL or
 * a JWKS URL answer, or what a library registers besides the built-in tools.
 */
export function configCheck(p: Parsed): number {
  const file = p.positionals[0] ?? ''
  const bound = bindBuiltins(loadConfigFile(file))
  const { loaded } = bound
  const { config } = loaded
  const refs = secretRefs(config)
  const missing: string[] = []
  if (!p.flag('no-env')) {
    for (const { path, ref } of refs) {
      try {
        readSecret(loaded, ref, path)
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error
        missing.push(error.message.replace(`config ${loaded.source}: `, ''))
      }
    }
  }
  const secrets = p.flag('no-env') ? `secret references: ${refs.length} not resolved (--no-env)` : `secret references: ${refs.length - missing.length} of ${refs.length} resolved`
  const summary = `${Object.keys(config.roles).length} roles, ${config.auth.keys.length} configured keys, ${bound.registry.all().length} tools; ${secrets}`
  for (const u of unusedPermissions(bound.grants)) process.stdout.write(`warning: ${describeUnusedPermission(u)}\n`)
  if (missing.length > 0) {
    process.stdout.write(`${file}: FAIL (${summary})\n${missing.map((m) => `  missing: ${m}\n`).join('')}`)
    return EXIT.failed
  }
  process.stdout.write(`${file}: OK (${summary})\n`)
  return EXIT.ok
}
