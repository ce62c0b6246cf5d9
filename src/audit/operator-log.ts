import { type DestinationStream, type Logger, pino } from 'pino'
import { DEFAULT_SECRET_KEYS, redactor, redactText } from '../protect/redact.js'

/**
 * The operator log (pino, to stderr by default) with the audit trail's redaction: field values
 * under secret key names (the built-in ones and `audit.redactKeys`) and credential shapes in
 * message text.
 * Does not check: secrets of other shapes in free text.
 */
export function operatorLog(redactKeys: readonly string[], destination: DestinationStream = pino.destination(2)): Logger {
  const scrub = redactor([...DEFAULT_SECRET_KEYS, ...redactKeys])
  return pino(
    {
      name: 'mcp-bastion',
      formatters: { log: (fields) => scrub(fields) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? redactText(a) : a)) as Parameters<typeof method>)
        },
      },
    },
    destination,
  )
}
