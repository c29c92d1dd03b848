import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { checkPolicyUrl } from '../../../adapters/config/policyUrl.js'
import { openPolicy, openPolicyFile, urlSource } from '../../../adapters/guard/openPolicyFile.js'
import { createPki } from '../support/pki.js'
import { freePort } from '../support/ports.js'

describe('openPolicyFile', () => {
  it('starts what the file asks for: its mode endpoint and its upstream CA files', async () => {
    const server = http.createServer((_request, response) => response.end('{"mode": "configured_deny"}'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const dir = mkdtempSync(join(tmpdir(), 'eg-open-'))
    writeFileSync(join(dir, 'ca.pem'), createPki().caPem)
    const path = join(dir, 'policy.yaml')
    writeFileSync(path, `mode: connected_allow\nupstream: { ca: ["${join(dir, 'ca.pem')}"] }\nmodeEndpoint: { url: "http://127.0.0.1:${(server.address() as AddressInfo).port}/mode", intervalMs: 60000 }\nproviders: []\n`)
    const opened = await openPolicyFile(path, { log: () => undefined })
    if (E.isLeft(opened)) throw new Error(opened.left.messages.join())
    try {
      expect(opened.right.upstreamCa).toHaveLength(1)
      for (let i = 0; i < 100 && opened.right.guard.mode() !== 'configured_deny'; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(opened.right.guard.mode()).toBe('configured_deny')
    } finally {
      await opened.right.stop()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('names a CA file it cannot read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-open-'))
    const path = join(dir, 'policy.yaml')
    writeFileSync(path, 'upstream: { ca: [/nonexistent/ca.pem] }\nproviders: []\n')
    expect(await openPolicyFile(path, { watch: false })).toEqual(
      E.left({ _tag: 'PolicyError', messages: [`${path}: upstream.ca[0]: cannot read \`/nonexistent/ca.pem\`; give the path of a PEM certificate`] })
    )
  })

  it('names a CA file that holds no certificate, rather than start a proxy whose every upstream request fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-open-'))
    writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
    const path = join(dir, 'policy.yaml')
    writeFileSync(path, `upstream: { ca: ["${join(dir, 'ca.pem')}"] }\nproviders: []\n`)
    expect(await openPolicyFile(path, { watch: false })).toEqual(
      E.left({ _tag: 'PolicyError', messages: [`${path}: upstream.ca[0]: \`${join(dir, 'ca.pem')}\` holds no PEM certificate; give a file with -----BEGIN CERTIFICATE----- blocks`] })
    )
  })

  it('fills in client tokens before the guard serves, and refuses to open with one it cannot read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-open-'))
    const path = join(dir, 'policy.yaml')
    writeFileSync(path, 'providers: []\nclients: [{ name: ci, token: "${env:CI_TOKEN}" }]\n')
    expect(await openPolicyFile(path, { watch: false, env: {} })).toEqual(
      E.left({ _tag: 'PolicyError', messages: [`${path}: client \`ci\`: its token cannot be read: environment variable \`CI_TOKEN\` is not set`] })
    )
    const opened = await openPolicyFile(path, { watch: false, env: { CI_TOKEN: 'tok-0123456789abcdef' }, log: () => undefined })
    if (E.isLeft(opened)) throw new Error(opened.left.messages.join())
    const basic = `Basic ${Buffer.from('ci:tok-0123456789abcdef').toString('base64')}`
    expect(opened.right.guard.authenticate(basic)).toEqual({ _tag: 'Client', name: 'ci' })
    expect(opened.right.guard.authenticate(undefined)).toEqual({ _tag: 'Refused' })
    await opened.right.stop()
  })

  it('names a policy file it cannot read', async () => {
    expect(await openPolicyFile('/nonexistent/policy.yaml')).toEqual(
      E.left({ _tag: 'PolicyError', messages: ['policy file `/nonexistent/policy.yaml` cannot be read (ENOENT); check the path and its permissions'] })
    )
  })
})

describe('a policy at a URL (docs/spec.md §14)', () => {
  it('is polled with its ETag, reloaded when it changes, and the last good one kept when a fetch or the policy fails', async () => {
    let answer: { status: number; body: string; etag?: string } = { status: 200, body: 'mode: connected_deny\nproviders: []\n', etag: '"v1"' }
    const seen: Array<string | undefined> = []
    const authorizations: Array<string | undefined> = []
    const server = http.createServer((request, response) => {
      seen.push(request.headers['if-none-match'])
      authorizations.push(request.headers.authorization)
      if (answer.etag !== undefined && request.headers['if-none-match'] === answer.etag) return void response.writeHead(304).end()
      response.writeHead(answer.status, answer.etag === undefined ? {} : { etag: answer.etag }).end(answer.body)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://user:secret@127.0.0.1:${(server.address() as AddressInfo).port}/policy.yaml?token=hidden`
    const logged: Array<string> = []
    const opened = await openPolicy(urlSource(url, 50), { log: (_level, message) => logged.push(message) })
    if (E.isLeft(opened)) throw new Error(opened.left.messages.join())
    const { guard } = opened.right
    const settle = async (until: () => boolean) => {
      for (let i = 0; i < 100 && !until(); i++) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    try {
      expect(guard.mode()).toBe('connected_deny')
      await settle(() => seen.length >= 3)
      expect(seen.slice(1)).toContain('"v1"') // unchanged: a 304
      answer = { status: 500, body: 'down' }
      await settle(() => logged.some((m) => m.includes('HTTP 500')))
      answer = { status: 200, body: 'mode: [not, a, mode]\nproviders: []\n', etag: '"bad"' }
      await settle(() => logged.some((m) => m.includes('keeping the last good policy')))
      expect(guard.mode()).toBe('connected_deny')
      answer = { status: 200, body: 'mode: configured_allow\nproviders: []\n', etag: '"v2"' }
      await settle(() => guard.mode() === 'configured_allow')
      expect(guard.mode()).toBe('configured_allow')
      expect(logged.join('\n')).not.toMatch(/secret|hidden/)
      // The URL's user info goes as Basic authentication.
      expect(new Set(authorizations)).toEqual(new Set([`Basic ${Buffer.from('user:secret').toString('base64')}`]))
    } finally {
      await opened.right.stop()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('gives up on a server that trickles its answer, at the start and when polling, and polls on', async () => {
    let trickle = true
    let requests = 0
    const timers = new Set<NodeJS.Timeout>()
    const server = http.createServer((_request, response) => {
      requests++
      if (!trickle) return void response.end('mode: configured_allow\nproviders: []\n')
      response.writeHead(200)
      const drip = setInterval(() => response.write('#\n'), 20)
      timers.add(drip)
      response.on('close', () => clearInterval(drip))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/policy.yaml`
    try {
      const failed = await openPolicy(urlSource(url, 50, 300))
      expect(E.isLeft(failed) ? failed.left.messages.join() : '').toContain('(TimeoutError)')
      trickle = false
      const opened = await openPolicy(urlSource(url, 50, 300), { log: () => undefined })
      if (E.isLeft(opened)) throw new Error(opened.left.messages.join())
      trickle = true
      const before = requests
      for (let i = 0; i < 100 && requests < before + 3; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      // Polls went on after a trickling answer was given up on.
      expect(requests).toBeGreaterThanOrEqual(before + 3)
      await opened.right.stop()
    } finally {
      for (const timer of timers) clearInterval(timer)
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('refuses to start when the first fetch fails, or the URL is plain http off loopback', async () => {
    const failed = await openPolicy(urlSource(`http://127.0.0.1:${await freePort()}/policy.yaml`, 1000))
    expect(E.isLeft(failed) ? failed.left.messages.join() : '').toContain('could not be fetched (ECONNREFUSED)')
    expect(checkPolicyUrl('http://policy.example.test/p.yaml')).toEqual(E.left(expect.stringContaining('the policy URL must be https')))
    expect(E.isRight(checkPolicyUrl('https://policy.example.test/p.yaml'))).toBe(true)
  })
})
