import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import * as bastion from '../src/index.js'

// What `import … from 'mcp-bastion'` offers at run time. Adding to it is a decision (a library user
// will depend on it); removing from it breaks them. Either is a deliberate edit here too.
const VALUES = [
  'Bastion',
  'ConfigError',
  'ERROR_META_KEY',
  'FileAuditSink',
  'MemoryAuditSink',
  'MemoryRateLimiter',
  'RedisRateLimiter',
  'SecurityError',
  'VERSION',
  'WIRE',
  'createBastion',
  'generateApiKey',
  'loadConfigFile',
  'serveStdio',
  'validateConfig',
]

// The type-only names, read off src/index.ts (types leave nothing at run time to enumerate).
const TYPES = [
  'AuditRecord',
  'AuditSink',
  'BastionConfig',
  'BastionConfigInput',
  'Carrier',
  'Challenge',
  'Charge',
  'CreateBastionOptions',
  'InProcessTool',
  'InputHelpers',
  'IsolateOptions',
  'IsolatedTool',
  'KeyStore',
  'ListenOptions',
  'PolicyRule',
  'Principal',
  'PromptDefinition',
  'RateLimiter',
  'ResourceDefinition',
  'ResourceTemplateDefinition',
  'RunningServer',
  'SecurityErrorCode',
  'StoredKey',
  'TakeDecision',
  'ToolContext',
  'ToolDefinition',
  'ToolOutput',
  'WireError',
]

describe('public surface (src/index.ts)', () => {
  it('exports exactly these values', () => {
    expect(Object.keys(bastion).sort()).toStrictEqual([...VALUES].sort())
  })

  it('exports exactly these types', () => {
    const source = readFileSync(new URL('../src/index.ts', import.meta.url), 'utf8')
    const names = new Set<string>()
    for (const m of source.matchAll(/export (type )?\{([^}]*)\}/g)) {
      const whole = m[1] !== undefined
      for (const part of (m[2] ?? '').split(',')) {
        const t = part.trim()
        if (t.startsWith('type ')) names.add(t.slice(5).trim())
        else if (whole && t !== '') names.add(t)
      }
    }
    expect([...names].sort()).toStrictEqual([...TYPES].sort())
  })

  it('exposes no internals by name (the pipeline kernel, the exchange, policy and auth machinery)', () => {
    for (const internal of ['compose', 'Exchange', 'AuditLog', 'CompiledPolicy', 'PolicySource', 'ApiKeyAuthenticator', 'Workspace', 'rpcError', 'publicText']) {
      expect(Object.hasOwn(bastion, internal), internal).toBe(false)
    }
  })
})
