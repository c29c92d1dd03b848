// The in-process adapter with real fetch calls (undici's and Node's built-in) to a local HTTPS
// upstream. Test names reach 127.0.0.1 through the base Agent's `lookup`, never /etc/hosts.
import type { LookupAddress } from 'node:dns'

import * as E from 'fp-ts/lib/Either.js'
import { Agent, fetch as undiciFetch, interceptors } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../adapters/config/PolicyFile.js'
import { createGuard, type Guard } from '../../adapters/guard/createGuard.js'
import type { AuditEntry } from '../../adapters/ports.js'
import { EgressGuardDenied, GuardedDispatcher, installGlobalGuard } from '../../adapters/undici/guardedDispatcher.js'
import type { ProxyMode } from '../../core/index.js'
import { createPki } from './support/pki.js'
import { startUpstream, type Upstream } from './support/upstream.js'

const KEY = 'sk-undici-8c1f'

let upstream: Upstream
let base: Agent
beforeAll(async () => {
  const pki = createPki()
  upstream = await startUpstream('alpha', pki.leaf(['api.alpha.test', 'other.test']))
  const lookup = (_host: string, options: { all?: boolean }, callback: (e: Error | null, a: string | ReadonlyArray<LookupAddress>, f?: number) => void) =>
    options.all === true ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4)
  base = new Agent({ connect: { ca: pki.caPem, lookup: lookup as never } })
})
afterAll(async () => {
  await base.close()
  await upstream.close()
})

const guardFor = (mode: ProxyMode, audit: Array<AuditEntry> = []): Guard => {
  const loaded = parsePolicyText(`
mode: ${mode}
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test:${upstream.port}/v1" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:KEY}" } } }
`)
  if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join())
  return createGuard({ policy: loaded.right, env: { KEY }, log: () => undefined, audit: { write: (e) => audit.push(e), flush: async () => undefined, close: async () => undefined, dropped: () => 0 } })
}

const url = (host: string, path: string, scheme = 'https') => `${scheme}://${host}:${upstream.port}${path}`

describe('GuardedDispatcher with undici fetch', () => {
  it('injects credentials, replacing the caller’s header, and audits it', async () => {
    const audit: Array<AuditEntry> = []
    const dispatcher = new GuardedDispatcher(guardFor('connected_deny', audit), base)
    const response = await undiciFetch(url('api.alpha.test', '/v1/models'), { dispatcher, headers: { Authorization: 'Bearer caller' } })
    expect(response.status).toBe(200)
    await response.text()
    const seen = upstream.received.at(-1)
    expect(seen?.headers.authorization).toBe(`Bearer ${KEY}`)
    expect(seen?.rawNames.filter((n) => n === 'authorization')).toHaveLength(1)
    expect(audit.map((e) => e.event)).toEqual(['proxy_inject'])
    expect(JSON.stringify(audit)).not.toContain(KEY)
  })

  it('fails a denied request with the reason and body, without sending it', async () => {
    const dispatcher = new GuardedDispatcher(guardFor('connected_deny'), base)
    const before = upstream.received.length
    const error = await undiciFetch(url('api.alpha.test', '/v2/x'), { dispatcher }).then(() => undefined, (e: unknown) => e)
    const cause = (error as { cause?: unknown }).cause
    expect(cause).toBeInstanceOf(EgressGuardDenied)
    expect(cause).toMatchObject({ reason: 'no_match', status: 403, body: 'Forbidden by egress-guard proxy policy (no_match)' })
    expect(upstream.received).toHaveLength(before)
  })

  it('passes other requests untouched in allow modes, and never injects over plain http', async () => {
    const dispatcher = new GuardedDispatcher(guardFor('connected_allow'), base)
    const response = await undiciFetch(url('other.test', '/x'), { dispatcher, headers: { authorization: 'Bearer caller' } })
    await response.text()
    expect(upstream.received.at(-1)?.headers.authorization).toBe('Bearer caller')
    const denied = new GuardedDispatcher(guardFor('connected_deny'), base)
    const error = await undiciFetch(url('api.alpha.test', '/v1/models', 'http'), { dispatcher: denied }).then(() => undefined, (e: unknown) => (e as { cause?: unknown }).cause)
    expect(error).toMatchObject({ reason: 'insecure_scheme' })
  })
})

describe('GuardedDispatcher with every header form undici accepts', () => {
  const sent = async (headers: unknown): Promise<Record<string, unknown>> => {
    const dispatcher = new GuardedDispatcher(guardFor('connected_allow'), base)
    const response = await dispatcher.request({ origin: `https://api.alpha.test:${upstream.port}`, path: '/v1/forms', method: 'GET', headers: headers as never })
    await response.body.text()
    return upstream.received.at(-1)?.headers ?? {}
  }

  it.each<[string, unknown]>([
    ['an object', { 'x-multi': ['1', '2'], 'x-one': 'v', authorization: 'Bearer caller' }],
    ['a flat array with an array value', ['x-multi', ['1', '2'], 'x-one', 'v', 'authorization', 'Bearer caller']],
    ['a flat array of strings', ['x-multi', '1', 'x-multi', '2', 'x-one', 'v', 'authorization', 'Bearer caller']],
    ['an iterable of pairs', new Map<string, string | Array<string>>([['x-multi', ['1', '2']], ['x-one', 'v'], ['authorization', 'Bearer caller']])]
  ])('keeps every header of %s, and replaces the credential header', async (_, headers) => {
    const seen = await sent(headers)
    expect(seen['x-multi']).toBe('1, 2')
    expect(seen['x-one']).toBe('v')
    expect(seen['authorization']).toBe(`Bearer ${KEY}`)
  })

  it('reads a Host given in a flat array with an array value, so a mismatch is caught', async () => {
    const audit: Array<AuditEntry> = []
    const dispatcher = new GuardedDispatcher(guardFor('connected_deny', audit), base)
    const error = await dispatcher
      .request({ origin: `https://api.alpha.test:${upstream.port}`, path: '/v1/x', method: 'GET', headers: ['x-multi', ['1', '2'], 'host', 'evil.test'] as never })
      .then(() => undefined, (e: unknown) => e)
    expect(error).toMatchObject({ name: 'EgressGuardDenied', reason: 'host_mismatch' })
  })

  // The proxies' failure policy: deny modes refuse (403 `internal_error`), allow modes fail (502); recorded either way.
  it.each<[ProxyMode, number]>([
    ['connected_allow', 502],
    ['connected_deny', 403]
  ])('never sends a flat header array with a name and no value (%s: %i), and records it', async (mode, status) => {
    const before = upstream.received.length
    const audit: Array<AuditEntry> = []
    const dispatcher = new GuardedDispatcher(guardFor(mode, audit), base)
    const error = await dispatcher
      .request({ origin: `https://api.alpha.test:${upstream.port}`, path: '/v1/x', method: 'GET', headers: ['x-one', 'v', 'x-orphan'] as never })
      .then(() => undefined, (e: unknown) => e)
    expect(error).toMatchObject({ name: 'EgressGuardDenied', reason: 'internal_error', status })
    expect(upstream.received).toHaveLength(before)
    expect(audit.map((e) => e.metadata['reason'])).toEqual(['internal_error'])
  })

  it('gives a caller that accepts JSON the refusal as JSON', async () => {
    const dispatcher = new GuardedDispatcher(guardFor('connected_deny'), base)
    const error = await dispatcher
      .request({ origin: `https://api.alpha.test:${upstream.port}`, path: '/v2/x', method: 'GET', headers: { accept: 'application/json' } })
      .then(() => undefined, (e: unknown) => e)
    expect(error).toMatchObject({ name: 'EgressGuardDenied', reason: 'no_match', status: 403 })
    expect(JSON.parse((error as EgressGuardDenied).body)).toEqual({ error: 'egress_guard_denied', reason: 'no_match', message: 'Forbidden by egress-guard proxy policy (no_match)' })
  })
})

describe('installGlobalGuard', () => {
  it('guards Node’s built-in fetch and undici’s, and restores the previous dispatcher', async () => {
    const restore = installGlobalGuard(guardFor('connected_deny'), base)
    try {
      const builtIn = await globalThis.fetch(url('api.alpha.test', '/v1/builtin'))
      expect(builtIn.status).toBe(200)
      await builtIn.text()
      expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`)
      const viaUndici = await undiciFetch(url('api.alpha.test', '/v1/undici'))
      await viaUndici.text()
      expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`)
      const denied = await globalThis.fetch(url('other.test', '/x')).then(() => undefined, (e: unknown) => (e as { cause?: unknown }).cause)
      expect(denied).toMatchObject({ name: 'EgressGuardDenied', reason: 'no_match' })
    } finally {
      restore()
    }
    const after = await globalThis.fetch('https://api.alpha.test:1/').then(() => 'answered', (e: unknown) => ((e as { cause?: { name?: string } }).cause?.name ?? 'failed'))
    expect(after).not.toBe('EgressGuardDenied')
  })
})

describe('redirects', () => {
  const redirect = (to: string) => `/v1/redirect?to=${encodeURIComponent(to)}`

  it.each(['Node’s built-in fetch', 'undici’s fetch'])('%s asks the guard again for every hop: a hop off the route gets no credential', async (which) => {
    const audit: Array<AuditEntry> = []
    const restore = installGlobalGuard(guardFor('connected_allow', audit), base)
    const get = which.startsWith('Node') ? globalThis.fetch : (undiciFetch as unknown as typeof fetch)
    try {
      for (const to of [url('api.alpha.test', '/v2/same-host'), url('other.test', '/other-host')]) {
        const before = upstream.received.length
        const response = await get(url('api.alpha.test', redirect(to)))
        expect(response.status).toBe(200)
        await response.text()
        const [first, second] = upstream.received.slice(before)
        expect(first?.headers.authorization).toBe(`Bearer ${KEY}`)
        expect(second?.path).toBe(new URL(to).pathname)
        expect(second?.headers.authorization).toBeUndefined()
      }
      expect(audit.map((e) => `${e.event} ${String(e.metadata['host'])}${String(e.metadata['path'])}`)).toEqual([
        'proxy_inject api.alpha.test/v1/redirect',
        'proxy_miss api.alpha.test/v2/same-host',
        'proxy_inject api.alpha.test/v1/redirect',
        'proxy_miss other.test/other-host'
      ])
    } finally {
      restore()
    }
  })

  it('a hop a deny mode refuses fails the fetch, and is never sent', async () => {
    const restore = installGlobalGuard(guardFor('connected_deny'), base)
    try {
      const before = upstream.received.length
      const error = await globalThis.fetch(url('api.alpha.test', redirect(url('api.alpha.test', '/v2/x')))).then(() => undefined, (e: unknown) => (e as { cause?: unknown }).cause)
      expect(error).toMatchObject({ name: 'EgressGuardDenied', reason: 'no_match' })
      expect(upstream.received.slice(before).map((r) => r.path)).toEqual(['/v1/redirect?to=' + encodeURIComponent(url('api.alpha.test', '/v2/x'))])
    } finally {
      restore()
    }
  })

  it('a base dispatcher with undici’s redirect interceptor does not follow hops behind the guard’s back', async () => {
    const following = base.compose(interceptors.redirect({ maxRedirections: 3 }))
    const dispatcher = new GuardedDispatcher(guardFor('connected_allow'), following)
    const before = upstream.received.length
    const response = await dispatcher.request({ origin: `https://api.alpha.test:${upstream.port}`, path: redirect(url('api.alpha.test', '/v2/x')), method: 'GET' })
    await response.body.text()
    // The 302 comes back to the caller; the credential never reached /v2/x.
    expect(response.statusCode).toBe(302)
    expect(upstream.received.slice(before).map((r) => r.path)).toEqual([redirect(url('api.alpha.test', '/v2/x'))])
  })
})
