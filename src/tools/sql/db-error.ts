import { SecurityError } from '../../errors.js'

/** SQLSTATE of a database error, when it has one (pg and PGlite both set `code`). */
function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/**
 * A database failure as the client may see it: a stable code and bastion's own words, never the
 * database's message, the SQL or the values. The cause (SQLSTATE and message) goes to the audit
 * line through the error's operator message.
 * - class 22 (data exception: a value that does not fit its column) → `ERR_VALIDATION`
 * - 57014 (statement timeout or cancel) → `ERR_TOOL_TIMEOUT`
 * - 23503 (a row still referenced) → `ERR_VALIDATION`
 * - anything else → `ERR_DATABASE`
 */
export function databaseError(error: unknown, what: string): SecurityError {
  if (error instanceof SecurityError) return error
  const state = sqlState(error)
  const message = error instanceof Error ? error.message.slice(0, 500) : 'non-error thrown'
  const cause = `${what}: ${state === undefined ? '' : `SQLSTATE ${state}: `}${message}`
  if (state?.startsWith('22')) return new SecurityError('ERR_VALIDATION', cause, { cause: error, expose: 'a value does not fit the type of its column' })
  if (state === '57014') return new SecurityError('ERR_TOOL_TIMEOUT', cause, { cause: error, expose: 'the statement ran past its timeout' })
  if (state === '23503') return new SecurityError('ERR_VALIDATION', cause, { cause: error, expose: 'other rows still refer to these rows' })
  return new SecurityError('ERR_DATABASE', cause, { cause: error })
}
