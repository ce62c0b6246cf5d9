/**
 * Does a result exceed `limit` bytes? Counts the UTF-8 bytes of every string (keys included) and
 * 8 bytes per other scalar, walking the value once and stopping as soon as the limit is passed,
 * so a 100 MB result is refused without serialising it again.
 * Does not check: JSON escaping overhead (at most 6 bytes per character; the cap is about
 * volume, not exact wire size), cycles (results are plain data; depth is capped).
 */
export function exceedsBytes(value: unknown, limit: number): boolean {
  let total = 0
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }]
  while (stack.length > 0) {
    const item = stack.pop()
    if (item === undefined) break
    const v = item.value
    if (typeof v === 'string') total += v.length > limit ? v.length : Buffer.byteLength(v, 'utf8')
    else if (v !== null && typeof v === 'object') {
      // Deeper than any honest result: treat as too large rather than walk without end.
      if (item.depth > 64) return true
      if (ArrayBuffer.isView(v)) total += v.byteLength
      else if (Array.isArray(v)) for (const element of v) stack.push({ value: element, depth: item.depth + 1 })
      else
        for (const [key, element] of Object.entries(v)) {
          total += key.length
          stack.push({ value: element, depth: item.depth + 1 })
        }
    } else total += 8
    if (total > limit) return true
  }
  return false
}
