import { z } from 'zod'

/** A secret is never inline: it comes from an environment variable or a file. */
export const secretRef = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name') }),
  z.strictObject({ file: z.string().min(1) }),
])
export type SecretRef = z.infer<typeof secretRef>
