import { SecurityError } from '../errors.js'

/** A stage of the pipeline: do a check, then call `next` or throw a SecurityError. */
export type Guard<C, R> = (ctx: C, next: () => Promise<R>) => Promise<R>
export type Terminal<C, R> = (ctx: C) => Promise<R>

/**
 * The one composer: guards run in array order, outermost first, then the terminal.
 * Calling `next()` twice is a bug in a guard and fails closed.
 */
export function compose<C, R>(guards: readonly Guard<C, R>[], terminal: Terminal<C, R>): (ctx: C) => Promise<R> {
  const all = [...guards]
  return function pipeline(ctx: C): Promise<R> {
    let last = -1
    const dispatch = (i: number): Promise<R> => {
      if (i <= last) return Promise.reject(new SecurityError('ERR_INTERNAL', 'next() called twice'))
      last = i
      const guard = all[i]
      try {
        return guard ? guard(ctx, () => dispatch(i + 1)) : terminal(ctx)
      } catch (error) {
        return Promise.reject(error)
      }
    }
    return dispatch(0)
  }
}
