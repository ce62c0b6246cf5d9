import { z } from 'zod'

const name = z.string().min(1).max(128)
const list = <T extends z.ZodType>(item: T) => z.array(item).min(1).max(256)

/** Who a rule is about. Every dimension given must match (any of its values); `'*'` is everyone authenticated. */
export const subjectsSchema = z.union([
  z.literal('*'),
  z
    .strictObject({
      principals: list(name).optional(),
      roles: list(name).optional(),
      scopes: list(name).optional(),
      tenants: list(name).optional(),
      /** Claim name → accepted values (a claim holding a list matches if any element does). */
      claims: z.record(name, list(z.union([z.string().max(512), z.number(), z.boolean()]))).optional(),
    })
    .refine((s) => Object.keys(s).length > 0, 'name at least one of principals, roles, scopes, tenants, claims (or write "*")'),
])

const resourceTarget = z.union([
  z.strictObject({ name, actions: list(z.enum(['read', 'list'])).default(['read', 'list']) }),
  z.strictObject({
    /** URI pattern: `*` matches within a path segment, `**` across segments, e.g. `file:///public/**`. */
    uri: z.string().min(1).max(2048),
    actions: list(z.enum(['read', 'list'])).default(['read', 'list']),
  }),
])

/** What a rule applies to: tools and prompts by name (`*` for all), resources by name or URI pattern. */
export const targetsSchema = z
  .strictObject({
    tools: list(name).optional(),
    resources: list(resourceTarget).optional(),
    prompts: list(name).optional(),
  })
  .refine((t) => t.tools !== undefined || t.resources !== undefined || t.prompts !== undefined, 'name at least one of tools, resources, prompts')

export const ruleSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_.:/-]{1,128}$/, 'a rule id of letters, digits and _ . : / -'),
  effect: z.enum(['allow', 'deny']),
  subjects: subjectsSchema,
  targets: targetsSchema,
  /** A CEL condition over `principal` and `args`; type-checked against each target's input schema at load. */
  when: z.string().min(1).max(4096).optional(),
  /** Settings for later layers when this rule allows (e.g. `pii: mask`): read by them, not by the policy engine. */
  output: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), z.string().max(256)).optional(),
  description: z.string().max(1000).optional(),
})

/** A policy file: `rules:` and nothing else. */
export const policyFileSchema = z.strictObject({ rules: z.array(ruleSchema).max(10_000).default([]) })

export type PolicyRule = z.output<typeof ruleSchema>
export type Subjects = z.output<typeof subjectsSchema>
export type Targets = z.output<typeof targetsSchema>
