import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { posix, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import type * as TS from 'typescript'
import { describe, expect, it } from 'vitest'

// Required, not imported: an ESM import of this 9 MB CommonJS file runs Node's export lexer over it (~1 s).
const ts = createRequire(import.meta.url)('typescript') as typeof TS

// Layering invariants (STYLE.md, "A layering test"; the SDK's layeringInvariants), read from the
// source text with the TypeScript parser. An edge is any module reference: import, `import type`,
// `export … from`, `import x = require()`, a literal `import()` and an `import('…')` type. A
// type-only edge counts: it still couples the layers and still closes a cycle.
// Pure functions over { path → source }; the loader at the bottom feeds them src/ and the SDK.
// Does not check: specifiers built at run time, or which object a `.member` belongs to (rule d goes
// by name, without the type checker, to stay fast: a same-named member of our own is flagged too).

/** Who may import src/transport/**: transport itself, the composition root, the CLI, the public API. */
const MAY_IMPORT_TRANSPORT: readonly RegExp[] = [
  /^src\/transport\//,
  /^src\/bastion\.ts$/,
  /^src\/compose\//,
  /^src\/bind[^/]*\.ts$/,
  /^src\/build[^/]*\.ts$/,
  /^src\/cli\//,
  /^src\/index\.ts$/,
]

/**
 * Files outside src/transport/ that may `import type` (the declaration form, erased at build) from
 * the SDK's protocol types, each with why. Empty on purpose: every entry is a decision to make, not
 * a default. A value import, `import { type X }` (kept as a side-effect import under
 * verbatimModuleSyntax) or a listed file that no longer imports the SDK still fails.
 */
const SDK_TYPE_IMPORTS: ReadonlyMap<string, string> = new Map<string, string>([
  ['src/protocol.ts', 'the MCP protocol shapes of the public tool API (results, descriptors, the handler context, the input helpers): types only'],
])

const SDK = /^@modelcontextprotocol(?:\/|$)/

interface Ref {
  readonly specifier: string
  readonly line: number
  /** Erased at build: `import type`, `export type … from`, or an `import('…')` type. */
  readonly typeOnly: boolean
  /** The src file it names, for relative specifiers. */
  readonly to: string | undefined
}

interface Module {
  readonly path: string
  readonly source: TS.SourceFile
  readonly refs: readonly Ref[]
}

const lineOf = (sf: TS.SourceFile, node: TS.Node): number => sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1

function resolveRelative(from: string, specifier: string, files: ReadonlySet<string>): string | undefined {
  if (!specifier.startsWith('.')) return undefined
  const base = posix.normalize(posix.join(posix.dirname(from), specifier))
  const candidates = [base.replace(/\.([cm]?)js$/, '.$1ts'), base, `${base}.ts`, `${base}/index.ts`]
  return candidates.find((candidate) => files.has(candidate))
}

function refsOf(sf: TS.SourceFile, files: ReadonlySet<string>): Ref[] {
  const refs: Ref[] = []
  const add = (node: TS.Node, specifier: TS.Node | undefined, typeOnly: boolean): void => {
    if (specifier === undefined || !ts.isStringLiteralLike(specifier)) return
    refs.push({ specifier: specifier.text, line: lineOf(sf, node), typeOnly, to: resolveRelative(sf.fileName, specifier.text, files) })
  }
  const visit = (node: TS.Node): void => {
    if (ts.isImportDeclaration(node)) add(node, node.moduleSpecifier, node.importClause?.phaseModifier === ts.SyntaxKind.TypeKeyword)
    else if (ts.isExportDeclaration(node)) add(node, node.moduleSpecifier, node.isTypeOnly)
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node, node.moduleReference.expression, node.isTypeOnly)
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node, node.argument.literal, true)
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0], false)
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return refs
}

function analyse(files: ReadonlyMap<string, string>): Map<string, Module> {
  const paths = new Set(files.keys())
  const modules = new Map<string, Module>()
  for (const [path, text] of files) {
    // The parser, not ts.preProcessFile: that scanner misses `export * as ns from`. No TSDoc needed here.
    const options = { languageVersion: ts.ScriptTarget.Latest, jsDocParsingMode: ts.JSDocParsingMode.ParseNone }
    const source = ts.createSourceFile(path, text, options, true, ts.ScriptKind.TS)
    modules.set(path, { path, source, refs: refsOf(source, paths) })
  }
  return modules
}

/** Every elementary cycle, as `a → b → a` starting at its smallest path; stops after `budget` steps. */
function findCycles(modules: ReadonlyMap<string, Module>, budget = 200_000): string[] {
  const graph = new Map([...modules.values()].map((m) => [m.path, [...new Set(m.refs.flatMap((r) => (r.to === undefined ? [] : [r.to])))].sort()]))
  // Tarjan: the strongly connected components; cycles never leave one.
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const components: string[][] = []
  const connect = (v: string): void => {
    index.set(v, index.size)
    low.set(v, index.get(v) ?? 0)
    stack.push(v)
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) connect(w)
      if (stack.includes(w)) low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0))
    }
    if (low.get(v) !== index.get(v)) return
    const component = stack.splice(stack.indexOf(v))
    components.push(component.sort())
  }
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v)
  const cycles: string[] = []
  for (const component of components) {
    const [only] = component
    if (component.length === 1 && only !== undefined && !(graph.get(only) ?? []).includes(only)) continue
    const rank = new Map(component.map((p, i) => [p, i]))
    for (const start of component) {
      const path = [start]
      const walk = (node: string): void => {
        for (const next of graph.get(node) ?? []) {
          const r = rank.get(next)
          if (r === undefined || r < (rank.get(start) ?? 0)) continue
          if (next === start) cycles.push([...path, start].join(' → '))
          else if (!path.includes(next) && budget-- > 0) {
            path.push(next)
            walk(next)
            path.pop()
          }
        }
      }
      walk(start)
    }
    if (budget <= 0) cycles.push(`… listing stopped; strongly connected: ${component.join(', ')}`)
  }
  return cycles.sort()
}

const lines = (refs: readonly Ref[]): string => refs.map((r) => r.line).join(',')

function group<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>()
  for (const item of items) out.set(key(item), [...(out.get(key(item)) ?? []), item])
  return out
}

/** Rule b: src/transport/** is imported only by itself, the composition root, the CLI and index.ts. */
function transportImports(modules: ReadonlyMap<string, Module>): string[] {
  const out: string[] = []
  for (const m of modules.values()) {
    if (MAY_IMPORT_TRANSPORT.some((allowed) => allowed.test(m.path))) continue
    const bad = m.refs.filter((r) => r.to?.startsWith('src/transport/'))
    for (const [to, refs] of group(bad, (r) => r.to ?? '')) out.push(`${m.path}:${lines(refs)} → ${to}`)
  }
  return out.sort()
}

/** Rule c: only src/transport/** imports the MCP SDK; the allowlist admits `import type` only. */
function sdkImports(modules: ReadonlyMap<string, Module>, allowlist: ReadonlyMap<string, string>): string[] {
  const out: string[] = []
  for (const m of modules.values()) {
    if (m.path.startsWith('src/transport/')) continue
    const bad = m.refs.filter((r) => SDK.test(r.specifier) && !(r.typeOnly && allowlist.has(m.path)))
    for (const [specifier, refs] of group(bad, (r) => r.specifier)) out.push(`${m.path}:${lines(refs)} imports ${refs.every((r) => r.typeOnly) ? 'types from ' : ''}${specifier}`)
  }
  for (const path of allowlist.keys()) {
    if (!modules.get(path)?.refs.some((r) => SDK.test(r.specifier))) out.push(`${path}: listed in SDK_TYPE_IMPORTS but imports nothing from the SDK`)
  }
  return out.sort()
}

const nameOf = (name: TS.Node | undefined): string | undefined =>
  name !== undefined && (ts.isIdentifier(name) || ts.isPrivateIdentifier(name) || ts.isStringLiteralLike(name)) ? name.text : undefined

/** Members of classes, interfaces and type literals whose TSDoc has `@internal`: name → package. */
function internalMembers(declarations: ReadonlyMap<string, string>): Map<string, string> {
  const out = new Map<string, string>()
  for (const [path, text] of declarations) {
    if (!text.includes('@internal')) continue
    const where = /^(@[^/]+\/[^/]+)/.exec(path)?.[1] ?? path
    const visit = (node: TS.Node): void => {
      if (ts.isClassElement(node) || ts.isTypeElement(node)) {
        const name = nameOf(node.name)
        if (name !== undefined && ts.getJSDocTags(node).some((tag) => tag.tagName.text === 'internal')) out.set(name, where)
      }
      ts.forEachChild(node, visit)
    }
    visit(ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS))
  }
  return out
}

/** Rule d: reads, writes, overrides, destructurings and string-named uses of an `@internal` SDK member. */
function internalUses(modules: ReadonlyMap<string, Module>, internal: ReadonlyMap<string, string>): string[] {
  const out: string[] = []
  for (const m of modules.values()) {
    const report = (node: TS.Node, name: string | undefined, how: string): void => {
      const where = name === undefined ? undefined : internal.get(name)
      if (where !== undefined) out.push(`${m.path}:${lineOf(m.source, node)} ${how} .${name} (@internal in ${where})`)
    }
    const visit = (node: TS.Node): void => {
      const { parent } = node
      const assigned =
        ts.isBinaryExpression(parent) &&
        parent.left === node &&
        parent.operatorToken.kind >= ts.SyntaxKind.FirstAssignment &&
        parent.operatorToken.kind <= ts.SyntaxKind.LastAssignment
      if (ts.isPropertyAccessExpression(node)) report(node, node.name.text, assigned ? 'assigns' : 'uses')
      else if (ts.isElementAccessExpression(node)) report(node, nameOf(node.argumentExpression), assigned ? 'assigns' : 'uses')
      else if (ts.isClassElement(node) || ts.isObjectLiteralElementLike(node)) report(node, nameOf(node.name), 'defines')
      else if (ts.isBindingElement(node)) report(node, nameOf(node.propertyName ?? node.name), 'destructures')
      else if (ts.isCallExpression(node)) for (const arg of node.arguments) report(arg, nameOf(arg), 'names')
      ts.forEachChild(node, visit)
    }
    ts.forEachChild(m.source, visit)
  }
  return out.sort()
}

// ── the loader: the real tree ────────────────────────────────────────────────────────────────────
const ROOT = fileURLToPath(new URL('..', import.meta.url))

function loadSources(): Map<string, string> {
  const names = readdirSync(`${ROOT}src`, { recursive: true, encoding: 'utf8' })
  const paths = names.filter((n) => n.endsWith('.ts') && !n.endsWith('.d.ts')).map((n) => `src/${n.split(sep).join('/')}`)
  return new Map(paths.sort().map((p) => [p, readFileSync(`${ROOT}${p}`, 'utf8')]))
}

/** The declaration files of every SDK package src depends on at run time. */
function loadSdkDeclarations(): Map<string, string> {
  const manifest = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { dependencies?: Record<string, string> }
  const out = new Map<string, string>()
  for (const name of Object.keys(manifest.dependencies ?? {}).filter((n) => SDK.test(n))) {
    const dist = `${ROOT}node_modules/${name}/dist/`
    for (const file of readdirSync(dist).filter((f) => f.endsWith('.d.mts'))) out.set(`${name}/dist/${file}`, readFileSync(`${dist}${file}`, 'utf8'))
  }
  return out
}

describe('layering (STYLE.md: A layering test)', () => {
  const modules = analyse(loadSources())
  const internal = internalMembers(loadSdkDeclarations())

  it('reads the real tree, so an empty list below means something', () => {
    expect(modules.size).toBeGreaterThan(50)
    expect([...modules.values()].flatMap((m) => m.refs.filter((r) => r.to !== undefined)).length).toBeGreaterThan(200)
    expect(internal.size).toBeGreaterThan(0)
  })

  it('src has no import cycles (type-only imports included)', () => {
    expect(findCycles(modules), 'import cycles').toEqual([])
  })

  it('only transport/, the composition root, cli/ and index.ts import src/transport/', () => {
    expect(transportImports(modules), 'imports of src/transport/ from outside').toEqual([])
  })

  it('only src/transport/ imports @modelcontextprotocol/* (values or types)', () => {
    expect(sdkImports(modules, SDK_TYPE_IMPORTS), 'SDK imports outside src/transport/').toEqual([])
  })

  it('src uses no SDK member documented @internal', () => {
    expect(internalUses(modules, internal), 'uses of @internal SDK members').toEqual([])
  })
})

describe('the layering checker itself', () => {
  const files = new Map([
    ['src/a/x.ts', "// import { nope } from '../transport/t.js'\nimport type {\n  Y,\n} from '../b/y.js'\nexport const x: Y = 1\n"],
    ['src/b/y.ts', "export * as a from '../a/x.js'\nexport type Y = number\n"],
    ['src/self.ts', "export type S = import('./self.js').S\n"],
    [
      'src/policy/p.ts',
      "import { z } from '../transport/t.js'\nimport type { Tool } from '@modelcontextprotocol/server'\nexport const later = () => import('../transport/t.js')\n",
    ],
    ['src/cli/main.ts', "import { z } from '../transport/t.js'\nexport const c = z\n"],
    ['src/tools/typed.ts', "import type { Tool } from '@modelcontextprotocol/server'\nimport { type CallToolResult } from '@modelcontextprotocol/server/validators/ajv'\n"],
    ['src/transport/t.ts', "import { McpServer } from '@modelcontextprotocol/server'\nexport const z = (m: McpServer) => {\n  m.toolInputSchemaJson = () => undefined\n}\n"],
    ['src/transport/u.ts', 'export class S extends McpServer {\n  override toolInputSchemaJson() {}\n  connect() {}\n}\nconst { resolveScopeChallenge } = s\n'],
  ])
  const modules = analyse(files)

  it('reports each cycle once, type-only and self-references included', () => {
    expect(findCycles(modules)).toEqual(['src/a/x.ts → src/b/y.ts → src/a/x.ts', 'src/self.ts → src/self.ts'])
  })

  it('reports a concern importing transport, not the CLI, not a comment', () => {
    expect(transportImports(modules)).toEqual(['src/policy/p.ts:1,3 → src/transport/t.ts'])
  })

  it('admits only declaration-level `import type` from allowlisted files, and flags stale entries', () => {
    const allowlist = new Map([
      ['src/tools/typed.ts', 'test'],
      ['src/gone.ts', 'test'],
    ])
    expect(sdkImports(modules, allowlist)).toEqual([
      'src/gone.ts: listed in SDK_TYPE_IMPORTS but imports nothing from the SDK',
      'src/policy/p.ts:2 imports types from @modelcontextprotocol/server',
      'src/tools/typed.ts:2 imports @modelcontextprotocol/server/validators/ajv',
    ])
  })

  it('collects @internal members from declarations and flags their use', () => {
    const dts = new Map([
      [
        '@modelcontextprotocol/server/dist/mcp.d.mts',
        'declare class McpServer {\n  /**\n   * Pre-dispatch schema.\n   *\n   * @internal\n   */\n  toolInputSchemaJson(name: string): unknown;\n  /** @internal */\n  resolveScopeChallenge: unknown;\n  /** Public. */\n  connect(): void;\n}\n',
      ],
    ])
    const internal = internalMembers(dts)
    expect([...internal.keys()].sort()).toEqual(['resolveScopeChallenge', 'toolInputSchemaJson'])
    expect(internalUses(modules, internal)).toEqual([
      'src/transport/t.ts:3 assigns .toolInputSchemaJson (@internal in @modelcontextprotocol/server)',
      'src/transport/u.ts:2 defines .toolInputSchemaJson (@internal in @modelcontextprotocol/server)',
      'src/transport/u.ts:5 destructures .resolveScopeChallenge (@internal in @modelcontextprotocol/server)',
    ])
  })
})
