import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { operatorLog } from '../../src/audit/operator-log.js'

describe('operator log', () => {
  it('redacts configured key names (audit.redactKeys) and credential shapes, like the audit trail', () => {
    const lines: string[] = []
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString())
        done()
      },
    })
    const log = operatorLog(['customer_ref'], sink)
    log.warn({ customer_ref: 'C-991', password: 'hunter2', safe: 'kept' }, 'key bst_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA used')
    const line = JSON.parse(lines.join('')) as Record<string, unknown>
    expect(line).toMatchObject({ customer_ref: '[REDACTED]', password: '[REDACTED]', safe: 'kept' })
    expect(JSON.stringify(line)).not.toContain('C-991')
    expect(JSON.stringify(line)).not.toContain('bst_0123456789abcdef_A')
    lines.length = 0
    log.warn({ err: { message: 'connect to postgres://app:s3cret@db:5432/x refused' } }, 'sql database')
    expect(lines.join('')).toContain('postgres://[REDACTED:url-credentials]@db')
    expect(lines.join('')).not.toContain('s3cret')
  })
})
