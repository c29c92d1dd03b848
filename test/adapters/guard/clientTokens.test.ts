import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { resolveClientTokens } from '../../../adapters/guard/clientTokens.js'

describe('client tokens (docs/spec.md §9)', () => {
  it('fills in templates as credential headers are: environment, files, base64', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-tokens-'))
    writeFileSync(join(dir, 'token'), 'tok-from-a-file-0123456789\n')
    const resolved = await resolveClientTokens(
      [
        { name: 'a', token: '${env:A_TOKEN}' },
        { name: 'b', token: `\${file:${join(dir, 'token')}}` },
        { name: 'c', token: 'literal-token-0123456789' }
      ],
      { A_TOKEN: 'tok-from-the-environment-01' }
    )
    expect(resolved).toEqual(E.right(new Map([['a', 'tok-from-the-environment-01'], ['b', 'tok-from-a-file-0123456789'], ['c', 'literal-token-0123456789']])))
  })

  it('names the client and what is wrong, never the value', async () => {
    const resolved = await resolveClientTokens(
      [
        { name: 'unset', token: '${env:NOT_SET}' },
        { name: 'short', token: 'short-secret' }
      ],
      {}
    )
    expect(resolved).toEqual(
      E.left([
        'client `unset`: its token cannot be read: environment variable `NOT_SET` is not set',
        'client `short`: its token is shorter than 16 characters; use a long random one'
      ])
    )
    expect(JSON.stringify(resolved)).not.toContain('short-secret')
  })
})

describe('client token characters', () => {
  it.each([
    ['a space', 'tok with a space-0123'],
    ['a non-ASCII character', 'tok-ü-0123456789abcdef'],
    ['a line break', 'tok-0123456789\r\nX: y']
  ])('refuses a token with %s: tokens travel in a URL and compare byte for byte', async (_, token) => {
    expect(await resolveClientTokens([{ name: 'a', token: '${env:T}' }], { T: token })).toEqual(
      E.left(['client `a`: its token holds a space, a control or a non-ASCII character; use printable ASCII'])
    )
  })
})
