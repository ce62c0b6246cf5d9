import { setTimeout as sleep } from 'node:timers/promises'
import type { TrailEntry, TrailQuery } from '../../console/trail.js'
import { SecurityError } from '../../errors.js'
import type { Exchange } from '../../pipeline/exchange.js'
import { listOf, rangeOf, ShownError, trailQueryOf } from './console-query.js'
import type { ConsoleRequest, ConsoleRouteOptions } from './console-types.js'

/** A live-tail request waits this long for a new line before answering with none. */
const TAIL_WAIT_MS = 25_000
const TAIL_POLL_MS = 500

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const strOf = (v: unknown, field: string, max = 500): string => {
  if (typeof v !== 'string' || v.length > max) throw new ShownError(`${field}: a string of at most ${max} characters`)
  return v
}

/**
 * The console's JSON API (README, "Operator console"): the data of every page, and the actions,
 * for the pages' live tail and for scripts. Same authentication as the pages (a session, or the
 * script's own credential); the same roles. Answers are JSON objects; a refusal is the wire
 * table's error (with `error.message` our own words for input the caller typed wrong).
 * Does not check: the session or CSRF (console-routes.ts did).
 */
export function consoleApi(o: ConsoleRouteOptions): (x: Exchange, r: ConsoleRequest) => Promise<Response> {
  const { service } = o
  const json = async (x: Exchange, body: Record<string, unknown>, status = 200): Promise<Response> => {
    await x.audit.commit({ status })
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' } })
  }
  const admin = (r: ConsoleRequest, what: string): void => {
    if (!r.user.admin) throw new SecurityError('ERR_FORBIDDEN', `${r.user.principal} holds console:read only: cannot ${what}`)
  }
  const method = (r: ConsoleRequest, m: 'GET' | 'POST'): void => {
    if (r.method === m || (m === 'GET' && r.method === 'HEAD')) return
    throw new SecurityError('ERR_METHOD_NOT_ALLOWED', `${r.method.slice(0, 16)} ${o.path}/api${r.sub}`)
  }
  const body = (r: ConsoleRequest): Record<string, unknown> => {
    if (!isRecord(r.json)) throw new ShownError('the body must be a JSON object')
    return r.json
  }

  /** Live tail: lines after the cursor, waiting for one; the tail's own lines are left out (they would feed it). */
  const tail = async (x: Exchange, q: TrailQuery & { after: string }): Promise<Response> => {
    x.audit.allow('console.tail')
    const until = Date.now() + TAIL_WAIT_MS
    let after = q.after
    let newest: string | undefined = after
    for (;;) {
      const found = await service.audit({ ...q, after, limit: Math.min(q.limit, 200) })
      const entries = found.page.entries.filter((e: TrailEntry) => e.record.method !== 'console/tail')
      const last = found.page.entries[found.page.entries.length - 1]
      if (last !== undefined) after = last.cursor
      newest = last?.cursor ?? newest
      if (entries.length > 0 || Date.now() >= until || x.signal?.aborted === true) return json(x, { entries, newest, verification: found.verification })
      await sleep(TAIL_POLL_MS, undefined, { signal: x.signal }).catch(() => undefined)
    }
  }

  const route = dispatch
  return async (x, r) => {
    try {
      return await route(x, r)
    } catch (error) {
      if (!(error instanceof ShownError)) throw error
      // The caller's own input, refused in our words (the wire table's text would not say what is wrong).
      x.audit.fail(error)
      return json(x, { jsonrpc: '2.0', id: null, error: { code: -32600, message: error.message, data: { code: error.code, requestId: x.requestId } } }, 400)
    }
  }

  async function dispatch(x: Exchange, r: ConsoleRequest): Promise<Response> {
    const p = r.url.searchParams
    switch (r.sub) {
      case '/overview':
        method(r, 'GET')
        x.audit.allow('console.overview')
        return json(x, { stats: await service.overview() })
      case '/audit': {
        method(r, 'GET')
        const q = trailQueryOf(p)
        if (q.after !== undefined) {
          x.method = 'console/tail'
          if (p.get('wait') === '1') return tail(x, { ...q, after: q.after })
        }
        x.audit.allow(q.after === undefined ? 'console.audit' : 'console.tail')
        const { page, verification } = await service.audit(q)
        return json(x, { ...page, verification })
      }
      case '/audit/export': {
        method(r, 'GET')
        const { limit: _l, before: _b, after: _a, ...q } = trailQueryOf(p)
        x.audit.allow('console.export')
        x.audit.note({ filter: Object.keys(q) })
        const lines = service.exportLines(q)
        await x.audit.commit({ status: 200 })
        const encoder = new TextEncoder()
        const iterator = lines[Symbol.asyncIterator]()
        const stream = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const next = await iterator.next()
            if (next.done === true) controller.close()
            else controller.enqueue(encoder.encode(next.value))
          },
          async cancel() {
            await iterator.return?.()
          },
        })
        return new Response(stream, {
          headers: {
            'content-type': 'application/x-ndjson; charset=utf-8',
            'content-disposition': `attachment; filename="audit-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl"`,
            'cache-control': 'no-store',
            'x-content-type-options': 'nosniff',
          },
        })
      }
      case '/explain': {
        x.audit.allow('console.explain')
        if (r.method === 'GET') {
          const id = p.get('requestId') ?? ''
          if (id === '' || id.length > 200) throw new ShownError('requestId: required, at most 200 characters')
          const record = await service.line(id)
          if (record === undefined) throw new SecurityError('ERR_NOT_FOUND', 'no line with that request id')
          return json(x, { explanation: service.explainRecord(record) })
        }
        method(r, 'POST')
        const b = body(r)
        const roles = Array.isArray(b.roles) ? b.roles.map((v, i) => strOf(v, `roles[${i}]`, 64)) : listOf(typeof b.roles === 'string' ? b.roles : '')
        return json(x, {
          explanation: service.explainInput({ principal: strOf(b.principal ?? 'explain', 'principal', 200), roles, tool: strOf(b.tool, 'tool', 128), args: b.arguments ?? {} }),
        })
      }
      case '/replay': {
        method(r, 'POST')
        x.audit.allow('console.replay')
        const b = body(r)
        const report = await service.replay(strOf(b.policy, 'policy', 200_000), rangeOf(b.from, b.to))
        x.audit.note({ replayed: report.replayed, changed: report.changes.length })
        return json(x, { replay: report })
      }
      case '/keys':
        admin(r, 'manage keys')
        if (r.method === 'POST') {
          const b = body(r)
          const roles = Array.isArray(b.roles) ? b.roles.map((v, i) => strOf(v, `roles[${i}]`, 64)) : []
          const days = b.expiresDays
          if (days !== undefined && typeof days !== 'number') throw new ShownError('expiresDays: a number of days')
          const created = service.createKey({ name: strOf(b.name, 'name', 200), roles, expiresDays: days })
          x.audit.allow('console.key.created')
          x.audit.note({ key: created.id, keyRoles: roles })
          return json(x, { created }, 201)
        }
        method(r, 'GET')
        x.audit.allow('console.keys')
        return json(x, { keys: await service.keys() })
      case '/grants':
        admin(r, 'manage grants')
        method(r, 'GET')
        x.audit.allow('console.grants')
        return json(x, { grants: (await service.oauthGrants()) ?? null })
      case '/limits': {
        method(r, 'GET')
        x.audit.allow('console.limits')
        const data = await service.limits()
        return json(x, { busiest: data.busiest, refused: data.refused.entries, alerts: data.alerts.entries, rules: service.alertRules })
      }
      case '/upstreams':
        if (!o.upstreams) break
        method(r, 'GET')
        x.audit.allow('console.upstreams')
        return json(x, { upstreams: service.upstreams() })
    }
    const revoke = /^\/(keys|grants)\/([0-9a-f]{16}|[0-9a-f]{32})\/revoke$/.exec(r.sub)
    if (revoke !== null) {
      method(r, 'POST')
      const [, what = '', id = ''] = revoke
      admin(r, `revoke ${what}`)
      if (what === 'keys') {
        if (id.length !== 16) throw new SecurityError('ERR_NOT_FOUND', 'not a key id')
        service.revokeKey(id)
        o.sessions.endKey(id)
        x.audit.allow('console.key.revoked')
        x.audit.note({ key: id })
      } else {
        if (id.length !== 32) throw new SecurityError('ERR_NOT_FOUND', 'not a grant id')
        await service.revokeGrant(id)
        x.audit.allow('console.grant.revoked')
        x.audit.note({ grant: id })
      }
      return json(x, { revoked: id })
    }
    throw new SecurityError('ERR_NOT_FOUND', `no console API ${r.sub.slice(0, 100)}`)
  }
}
