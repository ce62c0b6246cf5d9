import { randomUUID } from 'node:crypto'
import { serveStdio as sdkServeStdio } from '@modelcontextprotocol/server/stdio'
import { ApiKeyAuthenticator } from '../auth/authenticate.js'
import type { Bastion } from '../bastion.js'
import { ConfigError } from '../config/load.js'
import { SecurityError, toSecurityError } from '../errors.js'
import { createContext, type Principal } from '../pipeline/context.js'
import { buildServer, type ContextSource, toProtocolError } from './mcp-server.js'

/**
 * stdio: the principal comes from an API key in `MCP_API_KEY`, verified at start and again on
 * every message (a revoked or expired key stops working mid-connection). Same pipeline, same
 * audit trail as HTTP; there is no Origin or session to check on a pipe.
 * @throws ConfigError when MCP_API_KEY is missing; SecurityError when it is not a valid key.
 */
export function serveStdio(bastion: Bastion, env: NodeJS.ProcessEnv = process.env): { close(): Promise<void> } {
  const key = env.MCP_API_KEY
  if (key === undefined || key === '') throw new ConfigError('stdio mode: environment variable MCP_API_KEY is not set (an API key from `mcp-bastion keys create`)')
  const authenticator = new ApiKeyAuthenticator(bastion.keys)
  const requestId = randomUUID()
  let principal: Principal
  try {
    principal = authenticator.verify(key)
  } catch (error) {
    const failure = toSecurityError(error)
    bastion.audit.record({ event: 'auth.failure', requestId, decision: 'deny', reason: failure.code, transport: 'stdio', via: 'environment', detail: failure.message })
    throw failure
  }
  bastion.audit.record({
    event: 'auth.success',
    requestId,
    principal: principal.id,
    roles: principal.roles,
    decision: 'allow',
    reason: 'OK',
    transport: 'stdio',
    via: 'environment',
  })
  const deps = bastion.serverDeps()
  const contextOf: ContextSource = (handlerCtx) => {
    const ctx = createContext({ requestId: randomUUID(), transport: 'stdio', remoteAddress: undefined, signal: handlerCtx.mcpReq.signal })
    try {
      const current = authenticator.verify(key)
      if (current.id !== principal.id) throw new SecurityError('ERR_AUTH_INVALID', 'stdio principal changed')
      ctx.principal = current
    } catch (error) {
      const failure = toSecurityError(error)
      ctx.method = handlerCtx.mcpReq.method
      ctx.outcome = { event: 'auth.failure', decision: 'deny', reason: failure.code, detail: failure.message }
      bastion.audit.recordRequest(ctx)
      throw toProtocolError(failure, ctx.requestId)
    }
    return { ctx, auditHere: true }
  }
  const handle = sdkServeStdio(() => buildServer(deps, principal, contextOf), {
    onerror: (error) => bastion.log.warn({ err: { name: error.name, message: error.message } }, 'stdio transport error'),
  })
  return {
    close: async () => {
      await handle.close()
    },
  }
}
