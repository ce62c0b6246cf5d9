/**
 * Poll `predicate` until it holds, every `intervalMs`, for at most `timeoutMs`. Fails naming `what`
 * it waited for and the last value or error seen, so a timeout says which state never came.
 */
export async function waitFor<T>(predicate: () => T | Promise<T>, options: { what: string; timeoutMs?: number; intervalMs?: number }): Promise<NonNullable<T>> {
  const { what, timeoutMs = 5000, intervalMs = 10 } = options
  const deadline = performance.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await predicate()
      if (value !== undefined && value !== null && value !== false) return value as NonNullable<T>
      last = value
    } catch (error) {
      last = error
    }
    if (performance.now() >= deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last seen: ${seen})`)
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
