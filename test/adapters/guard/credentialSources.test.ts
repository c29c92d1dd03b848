import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { resolveReference } from '../../../adapters/guard/credentialSources.js'

const signal = new AbortController().signal
const dir = mkdtempSync(join(tmpdir(), 'eg-creds-'))

describe('credential references', () => {
  it('expands ${env:NAME} and ${file:PATH} in header templates', async () => {
    writeFileSync(join(dir, 'token'), 'from-file\n')
    const outcome = await resolveReference({ headers: { Authorization: 'Bearer ${env:TOKEN}', 'x-key': '${file:' + join(dir, 'token') + '}' } }, signal, { TOKEN: 'from-env' })
    expect(outcome).toEqual({ _tag: 'Available', headers: { Authorization: 'Bearer from-env', 'x-key': 'from-file' } })
  })

  it('encodes ${base64:…} after expanding what is inside it, as Basic auth needs', async () => {
    writeFileSync(join(dir, 'user'), 'bot\n')
    const outcome = await resolveReference(
      { headers: { Authorization: 'Basic ${base64:x-access-token:${env:GH_TOKEN}}', 'x-both': '${base64:${file:' + join(dir, 'user') + '}:${env:GH_TOKEN}}!' } },
      signal,
      { GH_TOKEN: 'ghp_secret$1' }
    )
    expect(outcome).toEqual({
      _tag: 'Available',
      headers: { Authorization: `Basic ${Buffer.from('x-access-token:ghp_secret$1').toString('base64')}`, 'x-both': `${Buffer.from('bot:ghp_secret$1').toString('base64')}!` }
    })
    expect(await resolveReference({ headers: { a: 'Basic ${base64:u:${env:MISSING}}' } }, signal, {})).toEqual({ _tag: 'Unavailable', error: 'environment variable `MISSING` is not set' })
  })

  it('names a missing variable or file, never a value', async () => {
    expect(await resolveReference({ headers: { a: '${env:MISSING}' } }, signal, {})).toEqual({ _tag: 'Unavailable', error: 'environment variable `MISSING` is not set' })
    expect(await resolveReference({ headers: { a: '${file:/nonexistent/x}' } }, signal, {})).toEqual({ _tag: 'Unavailable', error: "credential file `/nonexistent/x` cannot be read (ENOENT); check the path and its permissions" })
  })

  it('reads a JSON credential file with an expiry', async () => {
    const path = join(dir, 'creds.json')
    writeFileSync(path, JSON.stringify({ headers: { Authorization: 'Bearer f' }, expiresAt: '2030-01-01T00:00:00Z' }))
    expect(await resolveReference({ file: path }, signal)).toEqual({ _tag: 'Available', headers: { Authorization: 'Bearer f' }, expiresAt: new Date('2030-01-01T00:00:00Z') })
  })

  it('runs a helper that prints {"headers", "expiresAt"}, like git and Docker credential helpers', async () => {
    const outcome = await resolveReference({ exec: ['node', '-e', 'console.log(JSON.stringify({headers: {"x-api-key": "h"}}))'] }, signal, { PATH: process.env['PATH'] ?? '' })
    expect(outcome).toEqual({ _tag: 'Available', headers: { 'x-api-key': 'h' } })
  })

  it.each([
    [['node', '-e', 'process.exit(2)'], 'credential helper `node` exited with code 2'],
    [['node', '-e', 'console.log("sk-secret not json")'], 'credential helper `node` did not return JSON of the form {"headers": {...}, "expiresAt": "..."}'],
    [['node', '-e', 'console.log(JSON.stringify({headers: {a: 1}}))'], 'credential helper `node` returned JSON without a "headers" object of strings'],
    [['/nonexistent/helper'], 'credential helper `/nonexistent/helper` could not be started (ENOENT)']
  ])('reports a failing helper %j without its output', async (exec, error) => {
    expect(await resolveReference({ exec }, signal, { PATH: process.env['PATH'] ?? '' })).toEqual({ _tag: 'Unavailable', error })
  })

  describe('an HTTP credential endpoint', () => {
    let server: http.Server
    let url = ''
    beforeAll(async () => {
      server = http.createServer((request, response) => {
        if (request.headers.authorization !== 'Bearer daemon-token') return response.writeHead(401).end()
        response.end(JSON.stringify({ headers: { Authorization: 'Bearer from-daemon' }, expiresAt: null }))
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/credentials/openai`
    })
    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve))
    })

    it('is asked with its own (templated) headers', async () => {
      expect(await resolveReference({ url, headers: { authorization: 'Bearer ${env:DAEMON}' } }, signal, { DAEMON: 'daemon-token' })).toEqual({
        _tag: 'Available',
        headers: { Authorization: 'Bearer from-daemon' }
      })
    })

    it('reports an HTTP error by status', async () => {
      expect(await resolveReference({ url }, signal, {})).toEqual({ _tag: 'Unavailable', error: `credential endpoint \`${url}\` answered HTTP 401` })
    })
  })
})
