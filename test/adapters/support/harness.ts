// One guarded proxy on an ephemeral loopback port with stand-in upstreams behind it. Upstream
// names reach 127.0.0.1 only through the proxy's `connectTo` option, never /etc/hosts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { afterAll, beforeAll } from 'vitest'

import type { ProxyMode } from '../../../core/index.js'
import { parsePolicyText } from '../../../adapters/config/PolicyFile.js'
import { jsonLinesSink } from '../../../adapters/guard/auditSinks.js'
import { createGuard, type Guard, type GuardOptions } from '../../../adapters/guard/createGuard.js'
import { startHttpMitmProxy } from '../../../adapters/http-mitm-proxy/httpMitmProxy.js'
import { startMockttpProxy } from '../../../adapters/mockttp/mockttpProxy.js'
import { startNodeProxy } from '../../../adapters/node/nodeProxy.js'
import type { AuditEntry, AuditSink, RunningProxy } from '../../../adapters/ports.js'
import type { ConnectTo } from '../../../adapters/upstream/connectTo.js'
import { createPki, type Pki } from './pki.js'
import { startUpstream, type Upstream } from './upstream.js'

/** Secrets the credential references resolve to; no client ever holds them. */
export const SECRETS = { alpha: 'sk-alpha-7f3c9a1e', beta: 'sk-beta-2b8d4e6f' } as const

/** The test policy: every kind of route, provider state and credential failure. */
export const policyText = (mode: ProxyMode) => `
mode: ${mode}
denyText: { loginCommand: "authsome login {provider}", dashboardUrl: "http://127.0.0.1:7998" }
providers:
  - name: alpha
    apiUrl: https://api.alpha.test/v1
    oauth: { tokenUrl: "https://api.alpha.test/oauth/token" }
  - name: beta
    apiUrl: "regex:(?:[a-z0-9-]+\\\\.)?beta\\\\.test"
  - name: gamma
    apiUrl: https://api.gamma.test/
  - name: failing
    apiUrl: https://api.failing.test/
  - name: hanging
    apiUrl: https://api.hanging.test/
  - name: crlf
    apiUrl: https://api.crlf.test/
  - name: delta
    apiUrl: https://api.delta.test/
connections:
  - provider: alpha
    name: default
    credentials: { headers: { Authorization: "Bearer \${env:EG_ALPHA_KEY}" } }
  - provider: beta
    name: default
    credentials: { exec: ["node", "-e", "console.log(JSON.stringify({headers: {'x-api-key': process.env.EG_BETA_KEY}}))"] }
  - provider: failing
    name: default
    credentials: { exec: ["node", "-e", "process.exit(3)"] }
  - provider: hanging
    name: default
    credentials: { exec: ["node", "-e", "setTimeout(() => {}, 60000)"] }
  - provider: crlf
    name: default
    credentials: { headers: { Authorization: "Bearer \${env:EG_CRLF_KEY}" } }
  - provider: delta
    name: default
    credentials: { headers: { Authorization: "Bearer \${env:EG_ALPHA_KEY}" } }
passthrough: [pypi.test]
`

/** The proxy adapters the shared end-to-end suites run against. */
export const ADAPTERS = ['node', 'http-mitm-proxy', 'mockttp'] as const
export type AdapterName = (typeof ADAPTERS)[number]

/**
 * Where the adapters differ in ways the policy allows (each documented in docs/engines.md):
 * - how a refused WebSocket upgrade ends: http-mitm-proxy accepts the upgrade before any hook runs;
 * - a request in an allow mode whose Host names another host than its CONNECT target: mockttp
 *   verifies the upstream's certificate against the Host header, so it is refused (502), never sent;
 * - whether clients may speak HTTP/2 in a tunnel: only the node engine offers `h2` in ALPN;
 * - whether an idle upstream connection is dropped before the upstream's own `Keep-Alive` timeout:
 *   mockttp makes its upstream agents itself (one set per client connection, closed with it),
 *   without the idle timeout Node needs to read the hint.
 */
export const ADAPTER_TRAITS: Record<
  AdapterName,
  {
    readonly refusesWebSocketWith: 'close 1008' | 'status 403'
    readonly hostMismatchInAllowModes: 'forwarded' | 'refused'
    readonly honoursUpstreamKeepAliveHint: boolean
    readonly speaksHttp2ToClients: boolean
  }
> = {
  node: { refusesWebSocketWith: 'status 403', hostMismatchInAllowModes: 'forwarded', honoursUpstreamKeepAliveHint: true, speaksHttp2ToClients: true },
  'http-mitm-proxy': { refusesWebSocketWith: 'close 1008', hostMismatchInAllowModes: 'forwarded', honoursUpstreamKeepAliveHint: true, speaksHttp2ToClients: false },
  mockttp: { refusesWebSocketWith: 'status 403', hostMismatchInAllowModes: 'refused', honoursUpstreamKeepAliveHint: false, speaksHttp2ToClients: false }
}

/** Starts a guarded proxy on the named adapter; both take the same options. */
export const startProxy = (adapter: AdapterName, options: Parameters<typeof startHttpMitmProxy>[0]): Promise<RunningProxy> =>
  adapter === 'mockttp' ? startMockttpProxy(options) : adapter === 'node' ? startNodeProxy(options) : startHttpMitmProxy(options)

/** Names each stand-in upstream answers to (api.delta.test has none: it is resolved, and fails). */
const NAMES = {
  alpha: ['api.alpha.test'],
  beta: ['api.beta.test', 'x.beta.test'],
  other: ['other.test', 'pypi.test', 'api.gamma.test', 'api.failing.test', 'api.hanging.test', 'api.crlf.test']
} as const

export interface Harness {
  readonly proxy: RunningProxy
  readonly guard: Guard
  readonly upstreams: { readonly alpha: Upstream; readonly beta: Upstream; readonly other: Upstream; readonly plain: Upstream }
  readonly pki: Pki
  /** PEM bundle trusting the proxy CA and the upstream CA (for tunnelled hosts). */
  readonly bundlePath: string
  readonly proxyCaPath: string
  readonly upstreamCaPath: string
  readonly dir: string
  readonly auditEntries: () => Promise<ReadonlyArray<AuditEntry>>
  readonly auditText: () => Promise<string>
  readonly close: () => Promise<void>
}

export interface HarnessOptions {
  readonly mode: ProxyMode
  /** The proxy adapter; http-mitm-proxy by default. */
  readonly adapter?: AdapterName
  readonly policy?: string
  readonly trustUpstreamCa?: boolean
  readonly guard?: Partial<GuardOptions>
  readonly wrapGuard?: (guard: Guard) => Guard
  /** Sinks that receive every record besides the harness's own audit file. */
  readonly extraSinks?: ReadonlyArray<AuditSink>
  /** Options of the proxy adapter beyond the ones the harness sets. */
  readonly proxy?: Pick<Parameters<typeof startHttpMitmProxy>[0], 'maxInterceptedHosts' | 'now' | 'clientBounds' | 'newHosts' | 'proxyAuthentication'>
}

let sharedPki: Pki | undefined

/** Starts upstreams, a guard with a JSON-lines audit file, and the proxy. */
export const startHarness = async (options: HarnessOptions): Promise<Harness> => {
  const pki = (sharedPki ??= createPki())
  const dir = mkdtempSync(join(tmpdir(), 'egress-guard-e2e-'))
  const alpha = await startUpstream('alpha', pki.leaf(NAMES.alpha))
  const beta = await startUpstream('beta', pki.leaf(NAMES.beta))
  const other = await startUpstream('other', pki.leaf(NAMES.other))
  const plain = await startUpstream('plain')
  const loaded = parsePolicyText(options.policy ?? policyText(options.mode), 'test policy')
  if (E.isLeft(loaded)) throw new Error(loaded.left.messages.join('\n'))
  const auditPath = join(dir, 'audit.jsonl')
  const sink = jsonLinesSink({ path: auditPath })
  const guard = createGuard({
    policy: loaded.right,
    audit: [sink, ...(options.extraSinks ?? [])],
    env: { EG_ALPHA_KEY: SECRETS.alpha, EG_BETA_KEY: SECRETS.beta, EG_CRLF_KEY: 'sk-crlf\r\nX-Injected: 1', PATH: process.env['PATH'] ?? '' },
    credentialTimeoutMs: 1_000,
    log: () => undefined,
    ...options.guard
  })
  const rules: Array<ConnectTo> = [
    ...Object.entries(NAMES).flatMap(([upstream, names]) =>
      names.map((host) => ({ host, port: 443, toHost: '127.0.0.1', toPort: ({ alpha, beta, other } as Record<string, Upstream>)[upstream]?.port ?? 0 }))
    ),
    { host: 'api.alpha.test', port: 80, toHost: '127.0.0.1', toPort: plain.port }
  ]
  const proxy = await startProxy(options.adapter ?? 'http-mitm-proxy', {
    guard: options.wrapGuard?.(guard) ?? guard,
    configDir: join(dir, 'config'),
    upstreamCa: options.trustUpstreamCa === false ? [] : [pki.caPem],
    connectTo: rules,
    log: () => undefined,
    ...options.proxy
  })
  const upstreamCaPath = join(dir, 'upstream-ca.pem')
  const bundlePath = join(dir, 'bundle.pem')
  writeFileSync(upstreamCaPath, pki.caPem)
  writeFileSync(bundlePath, `${proxy.caCertPem}\n${pki.caPem}`)
  const auditText = async () => {
    await sink.flush()
    return readFileSync(auditPath, 'utf8')
  }
  return {
    proxy,
    guard,
    upstreams: { alpha, beta, other, plain },
    pki,
    bundlePath,
    proxyCaPath: proxy.caCertPath,
    upstreamCaPath,
    dir,
    auditText,
    auditEntries: async () => (await auditText()).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEntry),
    close: async () => {
      await proxy.close()
      await guard.close()
      await Promise.all([alpha.close(), beta.close(), other.close(), plain.close()])
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/**
 * The two proxies the trap suites share: one in connected_deny whose guard throws for paths under
 * `/v1/explode` (a hook's exception must not kill the proxy), and one in connected_allow.
 */
const startTrapHarnesses = async (adapter: AdapterName): Promise<{ readonly deny: Harness; readonly allow: Harness }> => {
  const deny = await startHarness({
    mode: 'connected_deny',
    adapter,
    wrapGuard: (guard) => ({
      ...guard,
      evaluate: (facts) => (facts.path.startsWith('/v1/explode') ? Promise.reject(new Error(`boom ${SECRETS.alpha}`)) : guard.evaluate(facts))
    })
  })
  const allow = await startHarness({ mode: 'connected_allow', adapter })
  return { deny, allow }
}

/** Starts the trap suites' two proxies before the calling suite and stops them after; `take` receives them once started. */
export const useTrapHarnesses = (adapter: AdapterName, take: (harnesses: { readonly deny: Harness; readonly allow: Harness }) => void): void => {
  let started: { readonly deny: Harness; readonly allow: Harness } | undefined
  beforeAll(async () => {
    started = await startTrapHarnesses(adapter)
    take(started)
  })
  afterAll(async () => {
    await started?.deny.close()
    await started?.allow.close()
  })
}
