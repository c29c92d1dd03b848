import fc from 'fast-check'
import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { isLocalHost, parseAuthority, parseHost, type Host } from '../../core/Host.js'

// The WHATWG URL parser, used directly: the definition parseHost's fast path must agree with,
// less one deliberate difference: a name that still ends in a dot after one is removed
// (`a..`, an empty label) is refused, so `localhost..` cannot slip past the local check.
const viaUrl = (host: string): string | undefined => {
  try {
    const url = new URL(`https://${host}/`)
    if (url.pathname !== '/' || url.port !== '' || url.username !== '') return undefined
    const h = url.hostname.replace(/^\[(.*)\]$/, '$1')
    const once = h.endsWith('.') ? h.slice(0, -1) : h
    return once.endsWith('.') ? undefined : once
  } catch {
    return undefined
  }
}

describe('parseHost', () => {
  it.each([
    ['API.OpenAI.com.', 'api.openai.com'],
    ['api.openai.com', 'api.openai.com'],
    ['münchen.de', 'xn--mnchen-3ya.de'],
    ['XN--MNCHEN-3YA.DE', 'xn--mnchen-3ya.de'],
    ['ＡＰＩ.example.com', 'api.example.com'],
    ['127.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0x7f.0.0.1', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['[::1]', '::1'],
    ['::1', '::1'],
    ['[::ffff:127.0.0.1]', '::ffff:7f00:1'],
    ['[0:0:0:0:0:0:0:1]', '::1'],
    ['under_score.example', 'under_score.example']
  ])('normalises %s to %s', (input, expected) => {
    expect(parseHost(input)).toEqual(E.right(expected))
  })

  it.each([
    '',
    'evil.com@api.openai.com',
    'api.openai.com/x',
    'api.openai.com:443',
    'api.openai.com#x',
    'api.open\tai.com',
    'api.openai.com\n',
    'api%2eopenai.com',
    'a b.com',
    'a\\b.com',
    '[::1',
    '[not-v6]',
    '999.1.1.1',
    'xn--invalid-punycode-ü'
  ])('rejects %j', (input) => {
    expect(E.isLeft(parseHost(input))).toBe(true)
  })

  it('agrees with the WHATWG URL parser on generated host-like strings', () => {
    const label = fc.stringMatching(/^[a-zA-Z0-9-]{0,6}$/)
    const numeric = fc.constantFrom('0x7f', '0', '127', '1', '0x', '00', '4294967295', '4294967296', '0xffffffff', '08')
    const host = fc
      .array(fc.oneof(label, numeric, fc.constantFrom('xn--mnchen-3ya', 'xn--', 'localhost')), { minLength: 1, maxLength: 5 })
      .chain((labels) => fc.constantFrom(labels.join('.'), `${labels.join('.')}.`, `${labels.join('.')}..`))
    fc.assert(
      fc.property(host, (h) => {
        const ours = parseHost(h)
        const theirs = viaUrl(h)
        expect(E.isRight(ours) ? ours.right : undefined).toBe(theirs === '' ? undefined : theirs)
      }),
      { numRuns: 20_000 }
    )
  })
})

describe('parseAuthority', () => {
  it.each([
    ['api.openai.com:443', 'api.openai.com', 443],
    ['API.openai.com', 'api.openai.com', undefined],
    ['[::1]:8080', '::1', 8080],
    ['api.openai.com:', 'api.openai.com', undefined]
  ])('reads %s', (input, host, port) => {
    expect(parseAuthority(input)).toEqual(E.right({ host, port }))
  })
  it.each(['api.openai.com:99999', 'a:b:c', '[::1]x', 'api.openai.com:44a', ''])('rejects %j', (input) => {
    expect(E.isLeft(parseAuthority(input))).toBe(true)
  })
})

describe('isLocalHost (docs/spec.md §3)', () => {
  const local = [
    'localhost', 'LOCALHOST.', 'a.localhost', '127.0.0.1', '127.1', '2130706433', '0x7f.0.0.1', '127.255.255.254', '0.0.0.0', '0',
    '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '100.64.0.1', '100.127.255.255', '169.254.169.254',
    '[::1]', '::', '[::ffff:7f00:1]', '[::ffff:127.0.0.1]', '[::ffff:10.0.0.1]', '[::ffff:169.254.169.254]', '[64:ff9b::7f00:1]',
    '[64:ff9b::a9fe:a9fe]', '[fc00::1]', '[fd12:3456::1]', '[fe80::1]', '[febf::1]', '[::127.0.0.1]'
  ]
  const remote = [
    'api.openai.com', 'localhost.example.com', 'mylocalhost', '8.8.8.8', '172.15.255.255', '172.32.0.1', '100.63.255.255',
    '100.128.0.1', '169.253.1.1', '192.169.0.1', '11.0.0.1', '[2606:4700::1]', '[::ffff:8.8.8.8]', '[64:ff9b::808:808]', '[fec0::1]'.replace('fec0', '2001')
  ]
  it.each(local)('%s is local', (h) => {
    const host = parseHost(h)
    expect(E.isRight(host) && isLocalHost(host.right)).toBe(true)
  })
  it.each(remote)('%s is not local', (h) => {
    const host = parseHost(h)
    expect(E.isRight(host) && !isLocalHost(host.right)).toBe(true)
  })
  it('treats an IPv6 text it cannot read as local', () => {
    expect(isLocalHost('1:2:3' as Host)).toBe(true)
  })
})
