// Changes while the proxy runs: the mode from a polled endpoint, the policy from a watched file
// (and garbage in either keeps the last good state), and the audit file record by record.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { readPolicyFile } from '../../adapters/config/readPolicyFile.js'
import { pollModeEndpoint, watchPolicyFile } from '../../adapters/guard/reloadSources.js'
import { curl } from './support/clients.js'
import { ADAPTERS, policyText, SECRETS, startHarness, startProxy, type Harness } from './support/harness.js'

const waitFor = async (check: () => Promise<boolean>, what: string): Promise<void> => {
  for (let i = 0; i < 100; i++) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe.each(ADAPTERS)('a mode change while the proxy runs (%s)', (adapter) => {
  let h: Harness
  let endpoint: http.Server
  let answer = '{"mode": "connected_allow"}'
  let url = ''
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_allow', adapter })
    endpoint = http.createServer((_request, response) => response.end(answer))
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/mode`
  })
  afterAll(async () => {
    await h.close()
    await new Promise((resolve) => endpoint.close(resolve))
  })

  it('takes effect on the next request, and garbage from the endpoint keeps the current mode', async () => {
    const warnings: Array<string> = []
    const poller = pollModeEndpoint(url, h.guard, { intervalMs: 60_000, log: (_level, message) => warnings.push(message) })
    try {
      await poller.poll()
      expect((await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v2/x')).status).toBe(200)
      answer = '{"mode": "connected_deny"}'
      await poller.poll()
      expect(h.guard.mode()).toBe('connected_deny')
      expect(await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v2/x')).toEqual({ status: 403, body: 'Forbidden by egress-guard proxy policy (no_match)' })
      answer = '{"mode": "strict"}'
      await poller.poll()
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/unknown mode `strict`.*keeping mode connected_deny/s)
      answer = 'not json'
      await poller.poll()
      expect(warnings).toHaveLength(2)
      expect(warnings[1]).toMatch(/did not answer \{"mode": "..."\} with a valid mode.*keeping mode connected_deny/s)
      expect(h.guard.mode()).toBe('connected_deny')
      // Still serving, in the mode it kept, and every request of this test is in the audit file.
      expect((await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/x')).status).toBe(200)
      expect((await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v2/x')).status).toBe(403)
      expect((await h.auditEntries()).map((e) => `${e.mode} ${e.event}`)).toEqual([
        'connected_allow proxy_miss',
        'connected_deny proxy_deny',
        'connected_deny proxy_inject',
        'connected_deny proxy_deny'
      ])
    } finally {
      poller.stop()
    }
  })
})

describe.each(ADAPTERS)('a policy file changed while the proxy runs (%s)', (adapter) => {
  it('is reloaded on change; a file replaced by garbage keeps the last good policy until it is fixed', async () => {
    const h = await startHarness({ mode: 'connected_deny', adapter })
    const path = join(h.dir, 'policy.yaml')
    writeFileSync(path, policyText('connected_deny'))
    const initial = await readPolicyFile(path)
    expect(initial._tag).toBe('Right')
    const messages: Array<string> = []
    const { createGuard } = await import('../../adapters/guard/createGuard.js')
    if (initial._tag !== 'Right') throw new Error('policy did not load')
    const guard = createGuard({
      policy: initial.right,
      env: { EG_ALPHA_KEY: SECRETS.alpha },
      loadPolicy: () => readPolicyFile(path),
      log: (_level, message) => messages.push(message)
    })
    const proxy = await startProxy(adapter, {
      guard,
      configDir: join(h.dir, 'config'),
      upstreamCa: [h.pki.caPem],
      connectTo: [{ host: 'api.alpha.test', port: 443, toHost: '127.0.0.1', toPort: h.upstreams.alpha.port }],
      log: () => undefined
    })
    const watcher = watchPolicyFile(path, guard, { debounceMs: 20 })
    const status = async (p: string) => (await curl(proxy.url, proxy.caCertPath, `https://api.alpha.test${p}`)).status
    try {
      expect(await status('/v2/x')).toBe(403)
      // An editor-style replace: write elsewhere, rename over the file.
      writeFileSync(`${path}.tmp`, policyText('connected_deny').replace('https://api.alpha.test/v1', 'https://api.alpha.test/v2'))
      renameSync(`${path}.tmp`, path)
      await waitFor(async () => (await status('/v2/x')) === 200, 'the new policy')
      expect(await status('/v1/x')).toBe(403)
      writeFileSync(path, 'providers: [ {name: ')
      await waitFor(async () => messages.some((m) => m.includes('keeping the last good policy')), 'the reload failure')
      expect(await status('/v2/x')).toBe(200)
      expect(await status('/v1/x')).toBe(403)
      writeFileSync(path, policyText('connected_allow'))
      await waitFor(async () => guard.mode() === 'connected_allow', 'the fixed policy')
      // The fixed policy serves: /v1 is routed again and injected, anything else passes.
      expect(await status('/v1/x')).toBe(200)
      expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRETS.alpha}`)
      expect(await status('/v2/x')).toBe(200)
      expect(h.upstreams.alpha.received.at(-1)?.headers.authorization).toBeUndefined()
    } finally {
      watcher.stop()
      await proxy.close()
      await guard.close()
      await h.close()
    }
  })
})

describe('the audit file', () => {
  it('holds exactly the records of the requests made, in order, and no credential value', async () => {
    const h = await startHarness({ mode: 'connected_deny' })
    try {
      await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/models?key=value')
      await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v2/x')
      await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/oauth/token')
      await curl(h.proxy.url, h.upstreamCaPath, 'https://other.test/')
      await curl(h.proxy.url, h.upstreamCaPath, 'https://pypi.test/simple')
      await curl(h.proxy.url, h.proxyCaPath, 'https://api.failing.test/x')
      const records = (await h.auditEntries()).map(({ event, provider, connection, metadata }) => ({ event, provider, connection, metadata }))
      expect(records).toEqual([
        { event: 'proxy_inject', provider: 'alpha', connection: 'default', metadata: { host: 'api.alpha.test', method: 'GET', path: '/v1/models' } },
        { event: 'proxy_deny', provider: null, connection: null, metadata: { host: 'api.alpha.test', reason: 'no_match' } },
        { event: 'proxy_miss', provider: null, connection: null, metadata: { host: 'api.alpha.test', reason: 'auth_endpoint', method: 'GET', path: '/oauth/token' } },
        { event: 'proxy_deny', provider: null, connection: null, metadata: { host: 'other.test', reason: 'no_match' } },
        { event: 'proxy_miss', provider: null, connection: null, metadata: { host: 'pypi.test', reason: 'passthrough', method: 'CONNECT' } },
        { event: 'proxy_no_credentials', provider: 'failing', connection: 'default', metadata: { host: 'api.failing.test', error: 'credential helper `node` exited with code 3' } },
        { event: 'proxy_deny', provider: 'failing', connection: 'default', metadata: { host: 'api.failing.test', reason: 'no_credentials' } }
      ])
      const text = await h.auditText()
      expect(text).not.toContain(SECRETS.alpha)
      expect(text).not.toContain('key=value')
    } finally {
      await h.close()
    }
  })
})
