import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { secretRefs } from '../../src/cli/secret-refs.js'
import { validateConfig } from '../../src/config/load.js'

/** A config with a secret reference in every place the schema has one. */
const EVERY_SECRET = `
server:
  tls: { cert: { file: tls/cert.pem }, key: { file: tls/key.pem } }
limits:
  backend: redis
  redis: { url: { env: REDIS_URL } }
audit:
  sink: postgres
  postgres: { url: { env: AUDIT_PG } }
  key: { env: AUDIT_KEY }
auth:
  keys:
    - { name: ci, roles: [reader], key: { env: CI_KEY } }
  issuers:
    - { issuer: https://idp.example, algorithms: [HS256], secret: { env: IDP_SECRET } }
    - { issuer: https://pem.example, algorithms: [RS256], keys: [{ pem: { file: idp.pem } }] }
    - { issuer: https://jwk.example, algorithms: [RS256], keys: [{ jwk: { file: not-a-ref } }] }
  introspection:
    - { endpoint: https://idp.example/introspect, clientId: bastion, clientSecret: { env: INTROSPECT_SECRET } }
  tokenService: { enabled: true, store: redis, redis: { url: { env: TOKENS_REDIS } } }
alerts:
  webhook: { url: https://hooks.example/x, secret: { file: hook.secret } }
secrets:
  keys: [{ id: k1, key: { env: SECRET_K1 } }]
  active: k1
sql:
  url: { env: DATABASE_URL }
pii: { tools: { file: mask } }
policy:
  rules:
    - { id: r, effect: allow, subjects: '*', targets: { tools: [query] }, output: { env: prod } }
vault: { file: vault.json }
commands:
  echo_it: { description: echo, executable: /bin/echo, env: { HOME: /tmp } }
`

describe('secretRefs: every { env } and { file } reference of a parsed config', () => {
  it('finds each one with its key path, and nothing that merely has a file or an env', () => {
    const loaded = validateConfig(parse(EVERY_SECRET), 'test', '/tmp')
    expect(
      secretRefs(loaded.config)
        .map((r) => `${r.path} ${JSON.stringify(r.ref)}`)
        .sort(),
    ).toStrictEqual(
      [
        'server.tls.cert {"file":"tls/cert.pem"}',
        'server.tls.key {"file":"tls/key.pem"}',
        'limits.redis.url {"env":"REDIS_URL"}',
        'audit.postgres.url {"env":"AUDIT_PG"}',
        'audit.key {"env":"AUDIT_KEY"}',
        'auth.keys.0.key {"env":"CI_KEY"}',
        'auth.issuers.0.secret {"env":"IDP_SECRET"}',
        'auth.issuers.1.keys.0.pem {"file":"idp.pem"}',
        'auth.introspection.0.clientSecret {"env":"INTROSPECT_SECRET"}',
        'auth.tokenService.redis.url {"env":"TOKENS_REDIS"}',
        'alerts.webhook.secret {"file":"hook.secret"}',
        'secrets.keys.0.key {"env":"SECRET_K1"}',
        'sql.url {"env":"DATABASE_URL"}',
      ].sort(),
    )
  })
})
