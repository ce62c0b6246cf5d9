import { z } from 'zod'
import { SecurityError } from '../errors.js'
import type { Vault } from '../protect/vault.js'
import type { InProcessTool } from './registry.js'

const secretName = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'letters, digits, _ . - (1 to 128)')

/**
 * `store_secret`: keep a named secret, encrypted at rest. The argument is called `secret`, so the
 * audit trail redacts it by name. Permission `vault:write`.
 */
export function storeSecretTool(vault: Vault): InProcessTool<z.ZodObject<{ name: typeof secretName; secret: z.ZodString }>> {
  return {
    name: 'store_secret',
    description: 'Store a named secret, encrypted at rest',
    input: z.strictObject({ name: secretName, secret: z.string().min(1).max(16_384) }),
    permissions: ['vault:write'],
    annotations: { destructiveHint: true, idempotentHint: true },
    run: async (args) => {
      vault.put(args.name, args.secret)
      return { content: [{ type: 'text', text: `stored ${args.name}` }] }
    },
  }
}

/** `get_secret`: read a named secret back. Permission `vault:read`; its result is not PII-masked. */
export function getSecretTool(vault: Vault): InProcessTool<z.ZodObject<{ name: typeof secretName }>> {
  return {
    name: 'get_secret',
    description: 'Read a named secret',
    input: z.strictObject({ name: secretName }),
    permissions: ['vault:read'],
    annotations: { readOnlyHint: true },
    pii: 'allow',
    run: async (args) => {
      const value = vault.get(args.name)
      if (value === undefined) throw new SecurityError('ERR_FILE_NOT_FOUND', `no secret named ${args.name}`, { expose: 'no such secret' })
      return { content: [{ type: 'text', text: value }] }
    },
  }
}
