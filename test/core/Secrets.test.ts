import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import {
  BODY_SCAN_START,
  carriedSecret,
  scanBodyChunk,
  compileSecrets,
  denyExfiltration,
  enforced,
  REDACTED,
  scrub,
  scrubChunk,
  scrubRules,
  secretParts,
  swapPlaceholders,
  type KnownSecret
} from '../../core/index.js'
import { bytesOf, MIN_SECRET_LENGTH, SEARCHED_SECRET_BYTES } from '../../core/Secrets.js'

// How values are matched (docs/policy.md, "The secret in both directions"), as properties: every
// generated encoding of a known value is found in a request, and none survives scrubbing.

const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8')
/** A byte string (one character a byte), as texts reach the core. */
const bytes = (buffer: Buffer): string => buffer.toString('latin1')

/** Secret values: printable ASCII (keys, tokens) and some non-ASCII text, at least MIN_SECRET_LENGTH bytes. */
const secretValue = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/=:'), minLength: MIN_SECRET_LENGTH, maxLength: 64 }),
  fc.string({ unit: 'grapheme', minLength: MIN_SECRET_LENGTH, maxLength: 12 }).filter((s) => utf8(s).length >= MIN_SECRET_LENGTH)
)
/** Text around a value: anything, bytes included. */
const around = fc.uint8Array({ maxLength: 40 }).map((a) => bytes(Buffer.from(a)))

const percentEvery = (value: Buffer, upper: boolean): string => [...value].map((b) => `%${b.toString(16).padStart(2, '0')}`).map((h) => (upper ? h.toUpperCase() : h)).join('')
const percentSome = (value: Buffer, pick: ReadonlyArray<boolean>): string => [...value].map((b, i) => (pick[i % Math.max(pick.length, 1)] === true ? `%${b.toString(16).padStart(2, '0')}` : String.fromCharCode(b))).join('')
/** A value base64-encoded inside a longer text, with `lead` bytes before it: its encoding at any alignment. */
const base64Within = (value: Buffer, lead: Buffer, tail: Buffer, url: boolean): string => {
  const encoded = Buffer.concat([lead, value, tail]).toString(url ? 'base64url' : 'base64')
  return encoded
}

/** The encodings a request may carry a value in. */
const requestEncoding = fc.oneof(
  fc.constant((v: Buffer) => bytes(v)),
  fc.boolean().map((upper) => (v: Buffer) => percentEvery(v, upper)),
  fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }).map((pick) => (v: Buffer) => percentSome(v, pick)),
  fc.constant((v: Buffer) => encodeURIComponent(v.toString('utf8'))),
  fc.constant((v: Buffer) => encodeURIComponent(encodeURIComponent(v.toString('utf8')))),
  fc.tuple(fc.uint8Array({ maxLength: 5 }), fc.uint8Array({ maxLength: 5 }), fc.boolean()).map(([lead, tail, url]) => (v: Buffer) => base64Within(v, Buffer.from(lead), Buffer.from(tail), url))
)

/** The encodings scrubbing takes out of a response. */
const responseEncoding = fc.oneof(
  fc.constant((v: Buffer) => bytes(v)),
  fc.boolean().map((upper) => (v: Buffer) => percentEvery(v, upper)),
  fc.constant((v: Buffer) => encodeURIComponent(v.toString('utf8'))),
  fc.tuple(fc.uint8Array({ maxLength: 5 }), fc.uint8Array({ maxLength: 5 }), fc.boolean()).map(([lead, tail, url]) => (v: Buffer) => base64Within(v, Buffer.from(lead), Buffer.from(tail), url))
)

const known = (value: string, owner = 'alpha'): KnownSecret => ({ value, owners: [owner], kind: 'credential' })

describe('the tripwire finds a known value in any encoding (docs/spec.md §13)', () => {
  it('finds every generated encoding of a value, wherever it sits in a text', () => {
    fc.assert(
      fc.property(secretValue, requestEncoding, around, around, (value, encode, before, after) => {
        const text = before + encode(utf8(value)) + after
        const found = carriedSecret(compileSecrets([known(value)]), [{ location: 'body', text }])
        expect(found?.secret.value).toBe(value)
        expect(found?.location).toBe('body')
      }),
      { numRuns: Number(process.env["SECRETS_RUNS"] ?? 1_000) }
    )
  })

  it('names where it was found, and denies it in every mode and enforcement without the value in the verdict', () => {
    fc.assert(
      fc.property(secretValue, fc.constantFrom('connected_allow', 'connected_deny', 'configured_allow', 'configured_deny'), fc.constantFrom('enforce', 'report'), (value, mode, enforcement) => {
        const carried = carriedSecret(compileSecrets([known(value)]), [{ location: 'header x-a', text: 'nothing' }, { location: 'query', text: `q=${encodeURIComponent(value)}` }])
        expect(carried?.location).toBe('query')
        const decided = enforced(enforcement, denyExfiltration(carried!, { scheme: 'https', host: 'evil.test', port: 443, method: 'GET', path: '/' }))
        expect(decided.decision).toMatchObject({ _tag: 'Deny', reason: 'credential_exfiltration' })
        expect(decided.audit).toEqual([{ event: 'proxy_deny', source: 'external', provider: 'alpha', connection: null, metadata: { host: 'evil.test', reason: 'credential_exfiltration', location: 'query' } }])
        expect(JSON.stringify(decided)).not.toContain(value)
        void mode
      })
    )
  })

  it('searches a long value by its first bytes, so a long token costs no more to find', () => {
    const token = `eyJ${'x'.repeat(2_000)}`
    const matcher = compileSecrets([known(token)])
    expect(Math.max(...matcher.patterns.map((p) => p.find.length))).toBeLessThanOrEqual(Math.ceil((SEARCHED_SECRET_BYTES * 4) / 3)) // its base64 forms the longest
    expect(carriedSecret(matcher, [{ location: 'body', text: `{"t": "${token.slice(0, 100)}"}` }])?.secret.value).toBe(token)
  })

  it('does not track values too short to tell from ordinary text', () => {
    expect(compileSecrets([known('short')]).patterns).toEqual([])
    expect(carriedSecret(compileSecrets([known('short')]), [{ location: 'body', text: 'a short text' }])).toBeUndefined()
  })

  it('sees through escapes however they are mixed, nested or preceded', () => {
    const matcher = compileSecrets([known('sk-0123456789')])
    for (const text of ['%73k-0123456789', 'sk%2D0123%34%35%36789', '%25sk-0123456789', '%%73%256B-0123456789', 'x=%sk%252d0123456789']) {
      expect(carriedSecret(matcher, [{ location: 'query', text }])?.secret.value).toBe('sk-0123456789')
    }
    expect(carriedSecret(matcher, [{ location: 'query', text: '100% sure sk-012345678' }])).toBeUndefined()
  })

  it('matches a name (a host) whatever its case, and other texts as they are', () => {
    const matcher = compileSecrets([known('sk-Real-0123456789')])
    expect(carriedSecret(matcher, [{ location: 'host', text: 'sk-real-0123456789.evil.test', caseless: true }])?.location).toBe('host')
    expect(carriedSecret(matcher, [{ location: 'host', text: 'SK%2DREAL-0123456789.evil.test', caseless: true }])?.location).toBe('host')
    expect(carriedSecret(matcher, [{ location: 'path', text: '/sk-real-0123456789' }])).toBeUndefined()
  })
})

describe('placeholders are swapped in header values', () => {
  const swaps = [{ placeholder: 'sk-egress-guard-AAAAAAAAAAAAAAAAAAAAAAAA', real: 'sk-real-key-1234567890' }]

  it('replaces a placeholder anywhere in a value, and inside Basic credentials', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }), fc.string({ unit: fc.constantFrom(...'abcxyz-_'), minLength: 1, maxLength: 12 }), (before, after, user) => {
        expect(swapPlaceholders(`${before}${swaps[0]!.placeholder}${after}`, swaps)).toBe(`${before}${swaps[0]!.real}${after}`)
        const basic = `Basic ${Buffer.from(`${user}:${swaps[0]!.placeholder}`).toString('base64')}`
        expect(Buffer.from(swapPlaceholders(basic, swaps).slice(6), 'base64').toString()).toBe(`${user}:${swaps[0]!.real}`)
      })
    )
  })

  it('leaves a value without a placeholder as it is', () => {
    expect(swapPlaceholders('Basic bm90aGluZzpoZXJl', swaps)).toBe('Basic bm90aGluZzpoZXJl')
    expect(swapPlaceholders('Bearer other', swaps)).toBe('Bearer other')
  })

  it('finds the secret parts of an injected value: the token after its scheme, and Basic’s password', () => {
    const basic = `Basic ${Buffer.from('x-access-token:ghp_0123456789abcdef').toString('base64')}`
    expect(secretParts(basic)).toEqual([basic, basic.slice(6), 'x-access-token:ghp_0123456789abcdef', 'ghp_0123456789abcdef'])
    expect(secretParts('Bearer sk-0123456789')).toEqual(['Bearer sk-0123456789', 'sk-0123456789'])
  })
})

describe('responses are scrubbed of injected values', () => {
  const detect = (value: string, text: string): boolean => carriedSecret(compileSecrets([known(value)]), [{ location: 'body', text }]) !== undefined

  it('leaves no generated encoding of the value in a scrubbed text, whole or streamed in any chunks', () => {
    fc.assert(
      fc.property(
        secretValue,
        fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'), minLength: MIN_SECRET_LENGTH, maxLength: 40 }),
        responseEncoding,
        around,
        around,
        fc.array(fc.nat(), { maxLength: 6 }),
        (value, shown, encode, before, after, cuts) => {
          fc.pre(!value.includes(shown) && !shown.includes(value))
          const rules = scrubRules([{ value, shownAs: `ph-${shown}` }])
          const text = before + encode(utf8(value)) + after
          const whole = scrub(rules, text)
          expect(detect(value, whole)).toBe(false)
          // The same text in chunks cut anywhere: nothing of the value gets through either.
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
          let kept = ''
          let sent = ''
          let last = 0
          for (const point of [...points, text.length]) {
            const next = scrubChunk(rules, kept, text.slice(last, point))
            sent += next.send
            kept = next.kept
            last = point
          }
          sent += kept
          expect(detect(value, sent)).toBe(false)
        }
      ),
      { numRuns: Number(process.env["SECRETS_RUNS"] ?? 1_000) }
    )
  })

  it('shows the exact value as its placeholder, and as [redacted] without one', () => {
    const rules = scrubRules([{ value: 'sk-real-0123456789', shownAs: 'sk-placeholder-xyz' }, { value: 'other-secret-value', shownAs: REDACTED }])
    expect(scrub(rules, '{"a":"sk-real-0123456789","b":"other-secret-value"}')).toBe('{"a":"sk-placeholder-xyz","b":"[redacted]"}')
  })

  it('changes nothing in a text that holds no form of the value, however it is chunked', () => {
    fc.assert(
      fc.property(around, fc.nat(), (text, cut) => {
        const rules = scrubRules([{ value: '\u00ff\u00fe\u00fd-never-in-a-text', shownAs: 'x' }])
        const at = cut % (text.length + 1)
        const first = scrubChunk(rules, '', text.slice(0, at))
        const second = scrubChunk(rules, first.kept, text.slice(at))
        expect(first.send + second.send + second.kept).toBe(text)
      })
    )
  })

  it('keeps back only bytes that could begin a value, so an event is never held for the next', () => {
    const rules = scrubRules([{ value: 'sk-real-0123456789', shownAs: 'sk-ph' }])
    expect(scrubChunk(rules, '', 'data: {"done": true}\n\n')).toEqual({ send: 'data: {"done": true}\n\n', kept: '' })
    expect(scrubChunk(rules, '', 'data: sk-re')).toEqual({ send: 'data: ', kept: 'sk-re' })
    expect(bytesOf('é')).toBe('\u00c3\u00a9')
  })
})

describe('a request body is scanned as it streams', () => {
  const secret = 'sk-real-0123456789abcdef'
  const matcher = compileSecrets([known(secret)])
  const tripleEscaped = [...Buffer.from(secret)].map((b) => `%2525${b.toString(16).padStart(2, '0').toUpperCase()}`).join('')

  it('finds a value split anywhere across two chunks, escaped up to three times over, before its last byte goes on', () => {
    for (const encoded of [secret, encodeURIComponent(secret), tripleEscaped, Buffer.from(`u:${secret}`).toString('base64')]) {
      const body = `${'p'.repeat(300)}&k=${encoded}&after=1`
      for (let cut = 300; cut <= body.length; cut++) {
        const first = scanBodyChunk(matcher, BODY_SCAN_START, body.slice(0, cut), false)
        const found = first._tag === 'Found' ? first : scanBodyChunk(matcher, first.scan, body.slice(cut), false)
        expect(found._tag, `cut at ${cut} of ${encoded}`).toBe('Found')
      }
    }
  })

  it('keeps back nothing of a chunk that could not begin a value, so an interactive body goes on at once', () => {
    const step = scanBodyChunk(matcher, BODY_SCAN_START, '{"line": "hi"}\n', false)
    expect(step).toEqual({ _tag: 'Go', send: '{"line": "hi"}\n', scan: { seen: 15, held: '' } })
    const prefix = scanBodyChunk(matcher, BODY_SCAN_START, '{"key": "sk-re', false)
    expect(prefix._tag === 'Go' && prefix.scan.held).toBe('sk-re')
    // A `%` in the text holds back only the run of bytes an escaped form could be made of.
    const percent = scanBodyChunk(matcher, BODY_SCAN_START, '{"op": "50% done"}\n', false)
    expect(percent).toMatchObject({ _tag: 'Go', send: '{"op": "50% done"}\n' })
    const escapedStart = scanBodyChunk(matcher, BODY_SCAN_START, 'k=%73%6B', false)
    expect(escapedStart._tag === 'Go' && escapedStart.scan.held).toBe('%73%6B')
  })
})
