import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { DEFAULT_MODE, parseMode, PROXY_MODES, scopeOf, unmatchedPolicyOf, type ProxyMode } from '../../core/Mode.js'

describe('parseMode (docs/spec.md §2)', () => {
  it('defaults to connected_allow', () => {
    expect(DEFAULT_MODE).toBe('connected_allow')
  })

  it.each(PROXY_MODES)('accepts %s', (mode) => {
    expect(parseMode(mode)).toEqual(E.right(mode))
  })

  it.each(['strict', 'CONNECTED_DENY', ' connected_deny', '', 'deny'])('rejects %j with a message naming the four modes', (input) => {
    const result = parseMode(input)
    expect(E.isLeft(result) && result.left.message).toBe(
      `unknown mode \`${input}\`: expected one of connected_allow, connected_deny, configured_allow, configured_deny`
    )
  })

  it.each([undefined, null, 3, {}, ['connected_deny']])('rejects the non-string %j', (input) => {
    const result = parseMode(input)
    expect(E.isLeft(result) && result.left.message).toMatch(/^mode must be a string, got .*: expected one of connected_allow, connected_deny, configured_allow, configured_deny$/)
  })

  it('splits each mode into its scope and unmatched policy', () => {
    const table: Record<ProxyMode, [string, string]> = {
      connected_allow: ['connected', 'allow'],
      connected_deny: ['connected', 'deny'],
      configured_allow: ['configured', 'allow'],
      configured_deny: ['configured', 'deny']
    }
    for (const mode of PROXY_MODES) expect([scopeOf(mode), unmatchedPolicyOf(mode)]).toEqual(table[mode])
  })

  it('fails closed on a mode that is not one', () => {
    expect(unmatchedPolicyOf('bogus' as ProxyMode)).toBe('deny')
    expect(scopeOf('bogus' as ProxyMode)).toBe('connected')
  })
})
