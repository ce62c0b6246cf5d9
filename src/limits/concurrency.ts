/**
 * In-flight tool calls, per principal and in total, in this process. Pure bookkeeping: no I/O,
 * no clock. Does not check: other replicas (each process caps its own work, which is what the
 * cap protects: this process's CPU, memory and connections).
 */
export class ConcurrencyCaps {
  readonly #perPrincipal: number
  readonly #global: number
  readonly #byPrincipal = new Map<string, number>()
  #total = 0

  constructor(limits: { perPrincipal: number; global: number }) {
    this.#perPrincipal = limits.perPrincipal
    this.#global = limits.global
  }

  get total(): number {
    return this.#total
  }

  /** Take a slot, or name the cap that is full. The release function is idempotent. */
  acquire(principalId: string): { release: () => void } | { refused: 'principal' | 'global' } {
    const mine = this.#byPrincipal.get(principalId) ?? 0
    if (mine >= this.#perPrincipal) return { refused: 'principal' }
    if (this.#total >= this.#global) return { refused: 'global' }
    this.#byPrincipal.set(principalId, mine + 1)
    this.#total += 1
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        this.#total -= 1
        const left = (this.#byPrincipal.get(principalId) ?? 1) - 1
        if (left <= 0) this.#byPrincipal.delete(principalId)
        else this.#byPrincipal.set(principalId, left)
      },
    }
  }
}
