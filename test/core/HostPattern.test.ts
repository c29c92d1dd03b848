import fc from 'fast-check'
import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { compileHostPattern, overbroadWitness, type HostPattern } from '../../core/HostPattern.js'
import { BASE_DOMAINS, regexUrl } from '../arbitraries/policy.js'

const compiled = (source: string): HostPattern => {
  const result = compileHostPattern(source)
  if (E.isLeft(result)) throw new Error(`expected \`${source}\` to compile: ${result.left._tag}`)
  return result.right
}

describe('compileHostPattern', () => {
  it('matches the whole host, case-insensitively', () => {
    const p = compiled('api\\.Example\\.com')
    expect(p.matches('api.example.com')).toBe(true)
    expect(p.matches('xapi.example.com')).toBe(false)
    expect(p.matches('api.example.com.evil.net')).toBe(false)
  })

  it.each(['', '   ', '[', '(', 'a)|(b', '(?<=a)b', '(x)\\1', '*'])('refuses the invalid pattern %j', (source) => {
    expect(E.isLeft(compileHostPattern(source))).toBe(true)
  })

  it.each(['(a+)+', '(a|a)*b', '(.*\\.)*example\\.com', '([a-z]+)*\\.com', '(?:(?:a|b)+)+'])('refuses the catastrophic pattern %s', (source) => {
    expect(compileHostPattern(source)).toEqual(E.left({ _tag: 'CatastrophicPattern' }))
  })

  it.each(['(?:[a-z0-9-]+\\.)*example\\.com', '(?:[a-z0-9-]+\\.)?example\\.com', '.*\\.example\\.com', '[a-z0-9-]+\\.s3\\.amazonaws\\.com'])(
    'accepts the safe pattern %s',
    (source) => {
      expect(E.isRight(compileHostPattern(source))).toBe(true)
    }
  )

  it('matches in linear time even on hostile hosts', () => {
    // No nested repetition, so it is accepted; a backtracking engine needs cubic time here
    // (V8 takes seconds on 2,000 characters, hours on 5,000: far past the test timeout).
    const p = compiled('[a-z.]*[a-z.]*[a-z.]*x')
    expect(p.matches(`${'a'.repeat(5000)}c`)).toBe(false)
  })

  it('finds the literal suffix and literal hosts', () => {
    expect(compiled('(?:[a-z0-9-]+\\.)?githubusercontent\\.com').literalSuffix).toBe('githubusercontent.com')
    expect(compiled('^.*\\.Example\\.COM$').literalSuffix).toBe('.example.com')
    expect(compiled('api\\.example\\.com|other\\.net').literalSuffix).toBe('')
    expect(compiled('api\\.example\\.co?').literalSuffix).toBe('')
    expect(compiled('^api\\.example\\.com$').literalHost).toBe('api.example.com')
    expect(compiled('api\\.example\\..*').literalHost).toBeUndefined()
  })

  it('has a sound literal suffix: every host a pattern matches ends with it', () => {
    const host = fc.stringMatching(/^[a-z0-9.-]{0,12}$/).chain((left) => fc.constantFrom(...BASE_DOMAINS).map((d) => `${left}${d}`))
    fc.assert(
      fc.property(regexUrl, host, (url, h) => {
        const p = compiled(url.slice('regex:'.length))
        expect(!p.matches(h) || h.endsWith(p.literalSuffix)).toBe(true)
      }),
      { numRuns: 5000 }
    )
  })
})

describe('overbroadWitness (docs/spec.md §3)', () => {
  it.each([
    ['.*githubusercontent\\.com', 'evilgithubusercontent.com'],
    ['.*github\\.com$', 'evilgithub.com'],
    ['.*\\.com', 'evil.com'],
    ['.*', 'evil.net'],
    ['api\\.github\\.com.*', 'api.github.comevil'],
    ['[a-z]*example\\.com', 'evilexample.com'],
    ['api\\..*', 'api.evil']
  ])('flags %s (matches %s)', (source, witness) => {
    expect(overbroadWitness(compiled(source))).toBe(witness)
  })

  it.each([
    '(?:[a-z0-9-]+\\.)?githubusercontent\\.com',
    '(?:.*\\.)?github\\.com',
    '.*\\.github\\.com',
    '(?:api|uploads)\\.github\\.com',
    'api\\.github\\.com',
    '[a-z0-9-]+\\.s3\\.amazonaws\\.com',
    'api\\..*\\.github\\.com'
  ])('accepts %s', (source) => {
    expect(overbroadWitness(compiled(source))).toBeUndefined()
  })
})
