import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { parseProxyAuthorization, PROXY_AUTHENTICATE, refuseUnauthenticated } from '../../core/index.js'

const basic = (text: string) => `Basic ${Buffer.from(text, 'latin1').toString('base64')}`

describe('parseProxyAuthorization', () => {
  it.each([
    [basic('ci-job:tok:with:colons'), { name: 'ci-job', token: 'tok:with:colons' }],
    [`  bAsIc ${Buffer.from('run:x').toString('base64')}  `, { name: 'run', token: 'x' }],
    [basic(':only-token'), { name: '', token: 'only-token' }]
  ])('reads %s', (header, expected) => {
    expect(parseProxyAuthorization(header)).toEqual(expected)
  })

  it.each([undefined, '', 'Basic', 'Bearer abc', 'Basic !!!', basic('no-colon'), 'Basic YWJj ZGVm', 42, ['Basic YTpi']])('refuses %j', (header) => {
    expect(parseProxyAuthorization(header)).toBeUndefined()
  })

  it('never throws, whatever the header', () => {
    fc.assert(
      fc.property(fc.anything(), (header) => {
        parseProxyAuthorization(header)
      })
    )
  })
})

describe('refuseUnauthenticated', () => {
  it('answers 407 with the Basic challenge and records a deny that names no client', () => {
    const { decision, audit } = refuseUnauthenticated('API.Alpha.test.')
    expect(decision).toMatchObject({ _tag: 'Unauthenticated', reason: 'unauthenticated', status: 407 })
    expect(decision.headers['Proxy-Authenticate']).toBe(PROXY_AUTHENTICATE)
    expect(audit).toEqual([{ event: 'proxy_deny', source: 'external', provider: null, connection: null, metadata: { host: 'api.alpha.test', reason: 'unauthenticated' } }])
  })

  it('never shows user info in the host it records', () => {
    expect(refuseUnauthenticated('user:secret@evil.test').audit[0]?.metadata['host']).toBe('evil.test')
  })
})
