import { z } from 'zod'
import { workspacePathRefusal } from '../tools/confine.js'

const NAME = /^[a-z][a-z0-9_]{0,63}$/
const ENV_NAME = /^[A-Z_][A-Z0-9_]{0,63}$/
/** An argv element that is one placeholder and nothing else: `{name}`. */
export const PLACEHOLDER = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/
// A placeholder-shaped token anywhere in an element; `{}` (as in `find -exec {} ;`) stays a literal.
const EMBEDDED = /\{[A-Za-z_][A-Za-z0-9_]*\}/
const noNul = (s: string): boolean => !s.includes('\0')

const name = z.string().regex(NAME, 'lower-case letter, then lower-case letters, digits or _ (at most 64)')

const common = {
  description: z.string().min(1).max(500).optional(),
  /** An absent optional param drops its argv element. */
  optional: z.boolean().default(false),
}

/**
 * One parameter a client may fill. Strings refuse control characters and, unless `allowDash`,
 * a leading `-` (so a value cannot become an option). Integers default to `min: 0` for the same
 * reason: `-5` reads as an option to many programs. Paths are workspace-relative and reach the
 * child as their resolved real path.
 */
const paramSchema = z.discriminatedUnion('type', [
  z
    .strictObject({
      type: z.literal('string'),
      ...common,
      maxLength: z.number().int().min(1).max(65_536).default(256),
      enum: z.array(z.string().max(65_536).refine(noNul, 'must not contain NUL')).min(1).max(256).optional(),
      /** A JS regular expression source; anchored as `^(?:…)$` and compiled with the `u` flag. */
      pattern: z
        .string()
        .min(1)
        .max(1024)
        .refine((source) => compiles(source), 'not a valid regular expression')
        .optional(),
      allowDash: z.boolean().default(false),
    })
    .refine((p) => p.enum === undefined || !p.enum.some((value) => value.length > p.maxLength), { message: 'an enum value is longer than maxLength', path: ['enum'] }),
  z
    .strictObject({
      type: z.literal('integer'),
      ...common,
      min: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).default(0),
      max: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).optional(),
    })
    .refine((p) => p.max === undefined || p.min <= p.max, { message: 'min is greater than max', path: ['max'] }),
  z.strictObject({ type: z.literal('path'), ...common }),
])

function compiles(source: string): boolean {
  try {
    new RegExp(`^(?:${source})$`, 'u')
    return true
  } catch {
    return false
  }
}

const absoluteExecutable = z
  .string()
  .min(2)
  .max(4096)
  .refine((p) => p.startsWith('/'), 'must be an absolute path')
  .refine((p) => !p.split('/').includes('..'), 'must not contain .. segments')
  .refine(noNul, 'must not contain NUL')

/** One allowlisted executable and the only argv shapes a client can make it run with. */
export const commandSchema = z.strictObject({
  description: z.string().min(1).max(500),
  /** Absolute path; checked to be an executable file when the tool is built. */
  executable: absoluteExecutable,
  /** argv template: literals, or elements that are exactly one `{param}` placeholder. */
  args: z.array(z.string().max(65_536).refine(noNul, 'must not contain NUL')).max(64).default([]),
  params: z.record(name, paramSchema).default({}),
  timeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  /** Cap on stdout + stderr together; past it the child is killed. */
  maxOutputBytes: z
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(1024 * 1024),
  /** Extra literal variables for the child, on top of PATH, LANG and HOME. Nothing is inherited. */
  env: z.record(z.string().regex(ENV_NAME, 'upper-case letters, digits and _'), z.string().max(4096).refine(noNul, 'must not contain NUL')).default({}),
  /** Workspace-relative working directory, under the workspace path rule; default the workspace root. */
  cwd: z
    .string()
    .min(1)
    .max(1024)
    .superRefine((cwd, ctx) => {
      const refusal = workspacePathRefusal(cwd)
      if (refusal !== undefined) ctx.addIssue({ code: 'custom', message: `not a workspace path: ${refusal}` })
    })
    .optional(),
})

/** Config section `commands:`: command name → its definition. */
export const commandsSchema = z.record(name, commandSchema).superRefine((commands, ctx) => {
  for (const [command, def] of Object.entries(commands)) {
    const used = new Set<string>()
    def.args.forEach((element, index) => {
      const path = [command, 'args', index]
      const whole = PLACEHOLDER.exec(element)?.[1]
      if (whole === undefined) {
        if (EMBEDDED.test(element)) {
          ctx.addIssue({
            code: 'custom',
            path,
            message: `command ${command}: args[${index}] ${JSON.stringify(element)} mixes a placeholder with other text; a placeholder must be the whole element`,
          })
        }
        return
      }
      if (!Object.hasOwn(def.params, whole)) {
        ctx.addIssue({ code: 'custom', path, message: `command ${command}: args[${index}] uses {${whole}}, which is not a declared param` })
        return
      }
      used.add(whole)
    })
    for (const param of Object.keys(def.params)) {
      if (!used.has(param))
        ctx.addIssue({ code: 'custom', path: [command, 'params', param], message: `command ${command}: param ${param} is declared but no args element uses it` })
    }
  }
})

export type CommandsConfig = z.output<typeof commandsSchema>
export type CommandConfig = z.output<typeof commandSchema>
export type CommandParam = z.output<typeof paramSchema>
