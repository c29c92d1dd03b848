// Envoy's ext_authz HTTP-service protocol, as contract tests: the shipped examples/envoy/envoy.yaml
// is read, and the check requests Envoy derives from it (documented behaviour: same method, the
// original path under `path_prefix`, the original Host and Authorization, plus `headers_to_add`)
// are sent to a real decision service. Its answers are checked against what Envoy does with them:
// 200 = allowed, headers matching `allowed_upstream_headers` set upstream; anything else = denied,
// status and body to the client.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'

import type { ProxyMode } from '../../../core/index.js'
import type { RunningDecisionService } from '../../../adapters/decision-service/decisionService.js'
import { KEY, startService } from './support.js'

interface ExtAuthz {
  readonly http_service: {
    readonly path_prefix: string
    readonly authorization_request: { readonly headers_to_add: ReadonlyArray<{ key: string; value: string }>; readonly allowed_headers?: { readonly patterns: ReadonlyArray<{ exact: string }> } }
    readonly authorization_response: { readonly allowed_upstream_headers: { readonly patterns: ReadonlyArray<{ exact: string }> } }
  }
  readonly failure_mode_allow: boolean
}

const TOKEN = 'envoy-contract-token'
const rendered = readFileSync(fileURLToPath(new URL('../../../examples/envoy/envoy.yaml', import.meta.url)), 'utf8').replace(
  /\$\{([A-Z_]+)\}/g,
  (_, name: string) => ({ LISTEN_PORT: '8082', DECISION_SERVICE: '127.0.0.1', DECISION_PORT: '8181', TOKEN, UPSTREAM_HOST: 'api.alpha.test', UPSTREAM_CA: '/tmp/ca.pem' })[name] ?? ''
)
const config = parse(rendered) as { static_resources: { listeners: Array<{ filter_chains: Array<{ filters: Array<{ typed_config: { http_filters: Array<{ name: string; typed_config: ExtAuthz }> } }> }> }> } }
const extAuthz = config.static_resources.listeners[0]?.filter_chains[0]?.filters[0]?.typed_config.http_filters.find((f) => f.name === 'envoy.filters.http.ext_authz')?.typed_config
const allowedUpstream = new Set(extAuthz?.http_service.authorization_response.allowed_upstream_headers.patterns.map((p) => p.exact) ?? [])

describe.each<ProxyMode>(['connected_deny', 'connected_allow'])('Envoy ext_authz contract with the shipped configuration, %s', (mode) => {
  let service: RunningDecisionService
  beforeAll(async () => {
    ;({ service } = await startService(mode, TOKEN))
  })
  afterAll(async () => {
    await service.close()
  })

  // The check request Envoy sends for a client request.
  const check = async (method: string, path: string, clientHeaders: Record<string, string> = {}) => {
    const added = Object.fromEntries((extAuthz?.http_service.authorization_request.headers_to_add ?? []).map((h) => [h.key, h.value]))
    const response = await fetch(`${service.url}${extAuthz?.http_service.path_prefix ?? ''}${path}`, {
      method,
      headers: { host: '127.0.0.1:8082', ...clientHeaders, ...added }
    })
    return { status: response.status, headers: Object.fromEntries(response.headers), body: await response.text() }
  }

  it('the configuration fails closed and lets only credential headers through upstream', () => {
    expect(extAuthz?.failure_mode_allow).toBe(false)
    expect([...allowedUpstream]).toEqual(['authorization', 'x-api-key'])
  })

  it('allows a matched request with the credential header to set upstream', async () => {
    const answer = await check('GET', '/v1/models?limit=1', { authorization: 'Bearer client-own' })
    expect(answer.status).toBe(200)
    const upstreamHeaders = Object.entries(answer.headers).filter(([k]) => allowedUpstream.has(k))
    expect(upstreamHeaders).toEqual([['authorization', `Bearer ${KEY}`]])
  })

  it(mode.endsWith('deny') ? 'denies an unmatched request with 403 and the body' : 'allows an unmatched request without touching its headers', async () => {
    const answer = await check('POST', '/v2/other', { authorization: 'Bearer client-own' })
    if (mode.endsWith('deny')) {
      expect(answer.status).toBe(403)
      expect(answer.body).toBe('Forbidden by egress-guard proxy policy (no_match)')
      expect(answer.headers['x-egress-guard-reason']).toBe('no_match')
    } else {
      expect(answer.status).toBe(200)
      expect(Object.keys(answer.headers).filter((k) => allowedUpstream.has(k))).toEqual([])
    }
    expect(JSON.stringify(answer)).not.toContain(KEY)
  })

  it.runIf(mode.endsWith('deny'))('answers a refusal as JSON to a client whose Accept asks for it (Envoy passes Accept to the service)', async () => {
    expect(extAuthz?.http_service.authorization_request.allowed_headers?.patterns.map((p) => p.exact)).toContain('accept')
    const answer = await check('GET', '/v2/other', { accept: 'application/json' })
    expect(answer.status).toBe(403)
    expect(answer.headers['x-egress-guard-reason']).toBe('no_match')
    expect(answer.headers['content-type']).toMatch(/^application\/json/)
    expect(JSON.parse(answer.body)).toEqual({ error: 'egress_guard_denied', reason: 'no_match', message: 'Forbidden by egress-guard proxy policy (no_match)' })
  })

  it('decides on the raw path Envoy forwards, not a normalised one', async () => {
    // fetch would normalise the path on the client side: send the raw request line.
    const { request } = await import('node:http')
    const added = Object.fromEntries((extAuthz?.http_service.authorization_request.headers_to_add ?? []).map((h) => [h.key, h.value]))
    const answer = await new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
      request(`${service.url}/`, { method: 'GET', path: `${extAuthz?.http_service.path_prefix ?? ''}/v2\\..\\v1/x`, headers: added }, (response) => {
        response.resume()
        resolve({ status: response.statusCode ?? 0, headers: response.headers })
      })
        .on('error', reject)
        .end()
    })
    expect(Object.keys(answer.headers).filter((k) => allowedUpstream.has(k))).toEqual([])
    if (mode.endsWith('deny')) expect(answer.status).toBe(403)
  })

  it('never takes the upstream from the client\'s Host: a check without the declared upstream host is denied', async () => {
    const response = await fetch(`${service.url}/v1/envoy/v1/models`, {
      headers: { host: 'api.alpha.test', authorization: `Bearer ${TOKEN}`, 'x-egress-guard-upstream-scheme': 'https', 'x-egress-guard-upstream-port': '443' }
    })
    const body = await response.text()
    expect(response.status).toBe(403)
    expect(body).toBe('Forbidden: missing x-egress-guard-upstream-host header: set it to the upstream host in the gateway configuration')
    expect(JSON.stringify([...response.headers])).not.toContain(KEY)
  })

  it('refuses a check without the token (Envoy then denies: failure_mode_allow is false)', async () => {
    const response = await fetch(`${service.url}/v1/envoy/v1/models`, { headers: { 'x-egress-guard-upstream-host': 'api.alpha.test', 'x-egress-guard-upstream-scheme': 'https' } })
    expect(response.status).toBe(401)
  })
})
