// Every proxy adapter end to end, one suite for all: a real proxy on 127.0.0.1, real clients
// (curl, Node fetch, Python urllib), stand-in HTTPS upstreams with their own CA. Expectations
// follow the decision table of docs/spec.md §5 for each mode; the upstreams' own records are the evidence.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { PROXY_MODES, type ProxyMode } from '../../core/index.js'
import { curl, nodeFetch, pythonUrllib } from './support/clients.js'
import { ADAPTER_TRAITS, ADAPTERS, SECRETS, startHarness, type Harness } from './support/harness.js'

const allow = (mode: ProxyMode) => mode.endsWith('allow')
const configured = (mode: ProxyMode) => mode.startsWith('configured')
const NO_CREDENTIALS_BODY = (provider: string) =>
  `Forbidden: provider '${provider}' is configured but has no active connection. Run \`authsome login ${provider}\` to connect, or open the dashboard at http://127.0.0.1:7998/.`
const POLICY_BODY = (reason: string) => `Forbidden by egress-guard proxy policy (${reason})`

const secretFree = (text: string) => !Object.values(SECRETS).some((s) => text.includes(s))

const CASES = ADAPTERS.flatMap((adapter) => PROXY_MODES.map((mode) => [adapter, mode] as const))

describe.each(CASES)('%s in %s', (adapter, mode) => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness({ mode, adapter })
  })
  afterAll(async () => {
    await h.close()
  })

  const last = (upstream: keyof Harness['upstreams']) => h.upstreams[upstream].received.at(-1)

  it('injects credentials for curl, replacing the Authorization the client sent, never duplicating it', async () => {
    const before = h.upstreams.alpha.received.length
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/models?limit=1', ['-H', 'Authorization: Bearer client-placeholder', '-H', 'Proxy-Authorization: Basic dXNlcjpwYXNz'])
    expect(answer.status).toBe(200)
    expect(h.upstreams.alpha.received).toHaveLength(before + 1)
    const seen = last('alpha')
    expect(seen?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    expect(seen?.rawNames.filter((n) => n === 'authorization')).toHaveLength(1)
    expect(seen?.rawNames.some((n) => n.startsWith('proxy-'))).toBe(false)
    expect(seen?.headers.host).toBe('api.alpha.test')
    expect(secretFree(answer.body)).toBe(true)
  })

  it('injects for Node fetch through undici ProxyAgent, over a kept-alive connection', async () => {
    const answer = await nodeFetch(h.proxy.url, h.proxy.caCertPem, 'https://api.alpha.test/v1/chat', { authorization: 'Bearer nope' })
    expect(answer.status).toBe(200)
    expect(last('alpha')?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
    expect(answer.headers?.['connection']).not.toBe('close')
  })

  it('injects for Python urllib through a proxy handler', async () => {
    const answer = await pythonUrllib(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/embeddings')
    expect(answer).toMatchObject({ status: 200 })
    expect(last('alpha')?.path).toBe('/v1/embeddings')
    expect(last('alpha')?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
  })

  it('injects the header a credential helper prints, for a regex-routed host', async () => {
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://x.beta.test/items')
    expect(answer.status).toBe(200)
    expect(last('beta')?.headers['x-api-key']).toBe(SECRETS.beta)
  })

  it(allow(mode) ? 'passes a request outside every prefix untouched' : 'denies a request outside every prefix with 403', async () => {
    const before = h.upstreams.alpha.received.length
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v2/other', ['-H', 'Authorization: Bearer client-own'])
    if (allow(mode)) {
      expect(answer.status).toBe(200)
      expect(last('alpha')?.headers.authorization).toBe('Bearer client-own')
    } else {
      expect(answer).toEqual({ status: 403, body: POLICY_BODY('no_match') })
      expect(h.upstreams.alpha.received).toHaveLength(before)
    }
  })

  it.runIf(!allow(mode))('tells a refused client why: X-Egress-Guard-Reason on the 403, and a JSON body when it accepts JSON', async () => {
    const text = await nodeFetch(h.proxy.url, h.proxy.caCertPem, 'https://api.alpha.test/v2/other')
    expect(text).toMatchObject({ status: 403, body: POLICY_BODY('no_match'), headers: { 'x-egress-guard-reason': 'no_match' } })
    const json = await nodeFetch(h.proxy.url, h.proxy.caCertPem, 'https://api.alpha.test/v2/other', { accept: 'application/json' })
    expect(json.status).toBe(403)
    expect(json.headers).toMatchObject({ 'x-egress-guard-reason': 'no_match', 'content-type': expect.stringContaining('application/json') })
    expect(JSON.parse(json.body)).toEqual({ error: 'egress_guard_denied', reason: 'no_match', message: POLICY_BODY('no_match') })
  })

  it('passes the OAuth token endpoint untouched in every mode', async () => {
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/oauth/token?code=1', ['-d', 'grant_type=x'])
    expect(answer.status).toBe(200)
    expect(last('alpha')?.headers.authorization).toBeUndefined()
  })

  it('handles a configured provider without a connection as its mode says', async () => {
    const before = h.upstreams.other.received.length
    const answer = await curl(h.proxy.url, h.bundlePath, 'https://api.gamma.test/v1/x')
    if (allow(mode)) {
      expect(answer.status).toBe(200)
      expect(last('other')?.headers.authorization).toBeUndefined()
    } else if (configured(mode)) {
      expect(answer).toEqual({ status: 403, body: NO_CREDENTIALS_BODY('gamma') })
      expect(h.upstreams.other.received).toHaveLength(before)
    } else {
      expect(answer.status).toBe(0) // not routed under connected scope: the CONNECT is closed
      expect(h.upstreams.other.received).toHaveLength(before)
    }
  })

  it(allow(mode) ? 'tunnels a host without routes untouched, without interception' : 'closes the CONNECT to a host without routes', async () => {
    const before = h.upstreams.other.received.length
    // Trusting only the upstream's CA: this succeeds only if the proxy did not intercept.
    const answer = await curl(h.proxy.url, h.upstreamCaPath, 'https://other.test/anything')
    if (allow(mode)) {
      expect(answer.status).toBe(200)
      expect(h.upstreams.other.received).toHaveLength(before + 1)
    } else {
      expect(answer.status).toBe(0)
      expect(h.upstreams.other.received).toHaveLength(before)
    }
  })

  it('tunnels a passthrough host untouched in every mode', async () => {
    const answer = await curl(h.proxy.url, h.upstreamCaPath, 'https://pypi.test/simple/')
    expect(answer.status).toBe(200)
    expect(last('other')?.path).toBe('/simple/')
  })

  it(allow(mode) ? 'forwards plain http without credentials' : 'denies plain http to a routed host', async () => {
    const before = h.upstreams.plain.received.length
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'http://api.alpha.test/v1/models')
    if (allow(mode)) {
      expect(answer.status).toBe(200)
      expect(last('plain')?.headers.authorization).toBeUndefined()
    } else {
      expect(answer).toEqual({ status: 403, body: POLICY_BODY('insecure_scheme') })
      expect(h.upstreams.plain.received).toHaveLength(before)
    }
  })

  it('pins the upstream to the CONNECT target when Host names another host, and never injects', async () => {
    const alphaBefore = h.upstreams.alpha.received.length
    const otherBefore = h.upstreams.other.received.length
    const answer = await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/models', ['-H', 'Host: other.test'])
    expect(h.upstreams.other.received).toHaveLength(otherBefore)
    if (allow(mode) && ADAPTER_TRAITS[adapter].hostMismatchInAllowModes === 'refused') {
      expect(answer.status).toBe(502)
      expect(h.upstreams.alpha.received).toHaveLength(alphaBefore)
    } else if (allow(mode)) {
      expect(answer.status).toBe(200)
      expect(h.upstreams.alpha.received).toHaveLength(alphaBefore + 1)
      expect(last('alpha')?.headers.authorization).toBeUndefined()
    } else {
      expect(answer).toEqual({ status: 403, body: POLICY_BODY('host_mismatch') })
      expect(h.upstreams.alpha.received).toHaveLength(alphaBefore)
    }
  })

  it.each([
    ['fails', 'https://api.failing.test/x'],
    ['hangs past the timeout', 'https://api.hanging.test/x'],
    ['returns a CR-LF header value', 'https://api.crlf.test/x']
  ])('never injects when the credential source %s', async (_, url) => {
    const before = h.upstreams.other.received.length
    const answer = await curl(h.proxy.url, h.proxyCaPath, url)
    const provider = new URL(url).hostname.split('.')[1] ?? ''
    if (allow(mode)) {
      expect(answer.status).toBe(200)
      const seen = last('other')
      expect(seen?.headers.authorization).toBeUndefined()
      expect(seen?.headers['x-injected']).toBeUndefined()
    } else {
      expect(answer).toEqual({ status: 403, body: NO_CREDENTIALS_BODY(provider) })
      expect(h.upstreams.other.received).toHaveLength(before)
    }
  })

  it('writes an audit record for every decision, and no credential value anywhere', async () => {
    const text = await h.auditText()
    expect(secretFree(text)).toBe(true)
    expect(text).not.toContain('sk-crlf')
    const entries = await h.auditEntries()
    expect(entries.length).toBeGreaterThan(10)
    for (const entry of entries) {
      expect(entry.mode).toBe(mode)
      expect(entry.source).toBe('external')
      expect(entry.decisionId).toMatch(/^[0-9a-f-]{36}$/)
      expect(Number.isNaN(Date.parse(entry.time))).toBe(false)
      if (entry.metadata['path'] !== undefined) expect(entry.metadata['path']).not.toContain('?')
    }
  })
})
