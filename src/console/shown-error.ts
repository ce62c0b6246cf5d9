import { SecurityError } from '../errors.js'

/**
 * A refusal of what an operator typed into the console (a filter, arguments, a candidate policy, a
 * key's name), whose message is meant for them: our own words, never a library's, shown on the page
 * or in the API's `error.message`. Audited like any `ERR_INVALID_REQUEST`.
 */
export class ShownError extends SecurityError {
  constructor(message: string) {
    super('ERR_INVALID_REQUEST', message)
  }
}
