// The one request-facts builder against the WHATWG URL parser: the host an absolute-form target
// names, and the path forwarded for it, are what WHATWG reads in it, however user info, ports,
// backslashes and `@` are mixed into the authority.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { parseTarget, plainProxyDestination } from '../../../adapters/proxy/requestFacts.js'

const authorityChars = fc.constantFrom('a', 'b', '.', ':', '@', '\\', '1', '4', '3', '%', '[', ']', '-')
const restChars = fc.constantFrom('/', 'v', '1', '.', '..', '?', '#', '\\', '@', '%2f', '=')

describe('parseTarget', () => {
  it.each([
    ['/v1/models?x=1', { path: '/v1/models?x=1' }],
    ['*', { path: '*' }],
    ['http://api.alpha.test:443@evil.test/v1/ui', { path: '/v1/ui', absoluteUriHost: 'evil.test' }],
    ['https://user:pw@api.alpha.test/v1?q', { path: '/v1?q', absoluteUriHost: 'api.alpha.test' }],
    ['http://a.test\\@evil.test/x', { path: '\\@evil.test/x', absoluteUriHost: 'a.test' }],
    ['https://api.alpha.test', { path: '/', absoluteUriHost: 'api.alpha.test' }],
    ['https://api.alpha.test?x', { path: '/?x', absoluteUriHost: 'api.alpha.test' }],
    ['http://[::1]:8080/x', { path: '/x', absoluteUriHost: '[::1]:8080' }],
    ['http://exa mple/x', { path: '/x', absoluteUriHost: '' }]
  ])('%s', (target, expected) => {
    expect(parseTarget(target)).toEqual(expected)
  })

  it('agrees with WHATWG on the host and on the path it forwards, for generated authorities', () => {
    fc.assert(
      fc.property(fc.constantFrom('http', 'https', 'HTTP'), fc.array(authorityChars, { maxLength: 12 }), fc.array(restChars, { maxLength: 6 }), (scheme, authority, rest) => {
        const target = `${scheme}://${authority.join('')}${rest.length === 0 ? '' : '/'}${rest.join('')}`
        let url: URL
        try {
          url = new URL(target)
        } catch {
          expect(parseTarget(target).absoluteUriHost).toBe('')
          return
        }
        const parsed = parseTarget(target)
        expect(parsed.absoluteUriHost).toBe(url.host)
        const forwarded = new URL(`http://x${parsed.path}`)
        expect(forwarded.pathname + forwarded.search).toBe(url.pathname + url.search)
      }),
      { numRuns: 5_000 }
    )
  })
})

describe('plainProxyDestination', () => {
  it.each([
    ['http://api.alpha.test:443@evil.test/v1', { host: 'evil.test', port: 80 }],
    ['http://[::1]:8080/x', { host: '::1', port: 8080 }],
    ['https://api.alpha.test/', undefined],
    ['/x', undefined],
    ['http://exa mple/', undefined]
  ])('%s', (target, expected) => {
    expect(plainProxyDestination(target)).toEqual(expected)
  })
})
