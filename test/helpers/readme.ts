import { readFileSync } from 'node:fs'

/** A fenced code block of README.md and the marker on the line before it. */
export interface ReadmeBlock {
  readonly lang: string
  readonly text: string
  /** 1-based line of the opening fence. */
  readonly line: number
  /** `test: NAME` (a test runs it) or `illustrative: WHY`; undefined when unmarked. */
  readonly marker: { readonly kind: 'test' | 'illustrative'; readonly name: string } | undefined
}

const MARKER = /^<!-- (test|illustrative): (.+?) -->$/

/** Every fenced code block of a Markdown text, in order. */
export function readmeBlocks(text = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')): ReadmeBlock[] {
  const lines = text.split('\n')
  const blocks: ReadmeBlock[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)$/.exec(lines[i] ?? '')
    if (open === null) continue
    const end = lines.findIndex((l, j) => j > i && l === '```')
    if (end < 0) throw new Error(`README.md:${i + 1}: unclosed code block`)
    let before = i - 1
    while (before >= 0 && lines[before]?.trim() === '') before--
    const m = MARKER.exec(lines[before] ?? '')
    blocks.push({
      lang: open[1] ?? '',
      text: lines.slice(i + 1, end).join('\n'),
      line: i + 1,
      marker: m === null ? undefined : { kind: m[1] as 'test' | 'illustrative', name: m[2] ?? '' },
    })
    i = end
  }
  return blocks
}

/** The text of the one block marked `test: NAME`. @throws unless exactly one is */
export function readmeBlock(name: string, text?: string): string {
  const found = readmeBlocks(text).filter((b) => b.marker?.kind === 'test' && b.marker.name === name)
  if (found.length !== 1) throw new Error(`README.md has ${found.length} blocks marked "test: ${name}" (want exactly one)`)
  return found[0]?.text ?? ''
}

/**
 * The words of each command of a README shell block: continuation lines joined, comments dropped,
 * quotes as the shell reads them (no escapes within them), `$NAME` expanded from `vars`.
 */
export function shellCommands(block: string, vars: Record<string, string> = {}): string[][] {
  const joined = block.replace(/\\\n\s*/g, ' ')
  const commands: string[][] = []
  for (const line of joined.split('\n')) {
    if (line.trim() === '' || line.trim().startsWith('#')) continue
    const words: string[] = []
    let word: string | undefined
    for (let i = 0; i < line.length; i++) {
      const c = line[i] as string
      if (c === "'") {
        const end = line.indexOf("'", i + 1)
        word = (word ?? '') + line.slice(i + 1, end)
        i = end
      } else if (c === '"') {
        const end = line.indexOf('"', i + 1)
        word = (word ?? '') + line.slice(i + 1, end).replace(/\$(\w+)/g, (_, v: string) => vars[v] ?? '')
        i = end
      } else if (c === '$') {
        const name = /^\w+/.exec(line.slice(i + 1))?.[0] ?? ''
        word = (word ?? '') + (vars[name] ?? '')
        i += name.length
      } else if (c === ' ') {
        if (word !== undefined) words.push(word)
        word = undefined
      } else word = (word ?? '') + c
    }
    if (word !== undefined) words.push(word)
    commands.push(words)
  }
  return commands
}
