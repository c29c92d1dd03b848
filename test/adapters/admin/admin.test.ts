// The admin listener of `serve --admin` (docs/spec.md §14) through real processes: health,
// readiness, the mode endpoint and its bad input, the token rules, metrics counted from real
// requests (one process and --workers 2), scraped by a real Prometheus.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { METRIC_NAMES } from '../../../adapters/admin/metrics.js'
import { curlThrough, startServe, type ServeProcess } from '../cli/serveProcess.js'
import { cliEnv, useStandIn, workspace } from '../cli/support.js'
import { freePort, isListening } from '../support/ports.js'

const space = workspace()
const TOKEN = 'admin-token-0123456789abcdef'

const admin = (base: string, path: string, init: RequestInit & { readonly token?: string } = {}) =>
  fetch(`${base}${path}`, { ...init, headers: { ...(init.token === undefined ? {} : { authorization: `Bearer ${init.token}` }), ...(init.headers as Record<string, string>) } })

const metricValue = (text: string, pattern: RegExp): number =>
  text
    .split('\n')
    .filter((line) => pattern.test(line))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)

describe('serve --admin (docs/spec.md §14)', () => {
  let common: ReadonlyArray<string> = []
  useStandIn(space, (standIn) => {
    common = standIn.common
  })
  let served: ServeProcess
  let base = ''
  beforeAll(async () => {
    served = await startServe([...common, '--port', '0', '--admin', '127.0.0.1:0', '--instance', 'admin-test'], { ...cliEnv(space), HOME: space.dir, EGRESS_GUARD_ADMIN_TOKEN: TOKEN })
    base = served.listening.admin ?? ''
  })
  afterAll(async () => {
    await served?.stop()
  })

  it('answers /healthz and /readyz without a token, and /metrics without one on loopback', async () => {
    expect(await (await admin(base, '/healthz')).json()).toEqual({ status: 'ok' })
    const ready = await admin(base, '/readyz')
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ status: 'ready', checks: { policy: true, ca: true, sinks: true } })
    const metrics = await admin(base, '/metrics')
    expect(metrics.status).toBe(200)
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await metrics.text()
    const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')
    for (const name of METRIC_NAMES) {
      expect(text, name).toContain(`# TYPE ${name} `)
      expect(readme, `README names ${name}`).toContain(`\`${name}`)
    }
  })

  it('needs the bearer token for /proxy/mode: none or a wrong one gets 401 with WWW-Authenticate', async () => {
    for (const token of [undefined, 'wrong-token-0123456789abcdef', `${TOKEN}x`]) {
      const answer = await admin(base, '/proxy/mode', token === undefined ? {} : { token })
      expect(answer.status).toBe(401)
      expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="egress-guard admin"')
      expect(JSON.stringify(await answer.json())).not.toContain(TOKEN)
    }
    expect((await admin(base, '/proxy/mode', { method: 'PUT', body: '{"mode":"configured_allow"}', token: 'wrong-token-0123456789abcdef' })).status).toBe(401)
    expect(await (await admin(base, '/proxy/mode', { token: TOKEN })).json()).toEqual({ mode: 'connected_deny' })
  })

  it('refuses bad mode input with a 4xx that says what to send, and changes nothing', async () => {
    for (const [body, status, words] of [
      ['{"mode":"allow_everything"}', 400, 'unknown mode `allow_everything`: expected one of connected_allow'],
      ['{"mode":', 400, 'not JSON'],
      ['["connected_allow"]', 400, '{"mode": "..."}'],
      ['{"mode":"connected_allow","extra":1}', 400, '`mode` alone'],
      ['{"mode":42}', 400, 'mode must be a string'],
      [JSON.stringify({ mode: 'x'.repeat(5_000) }), 413, 'larger than 4096 bytes']
    ] as const) {
      const answer = await admin(base, '/proxy/mode', { method: 'PUT', body, token: TOKEN })
      expect(answer.status, body.slice(0, 40)).toBe(status)
      expect(((await answer.json()) as { error: string }).error).toContain(words)
    }
    expect((await admin(base, '/proxy/mode', { method: 'POST', body: '{}', token: TOKEN })).headers.get('allow')).toBe('GET, HEAD, PUT')
    expect((await admin(base, '/metrics', { method: 'DELETE' })).status).toBe(405)
    expect((await admin(base, '/admin', { token: TOKEN })).status).toBe(404)
    expect(await (await admin(base, '/proxy/mode', { token: TOKEN })).json()).toEqual({ mode: 'connected_deny' })
  })

  it('switches the mode live with PUT: the next request is decided under it, and its record says so', async () => {
    const { proxy, caCert } = served.listening
    expect((await curlThrough(proxy, caCert, 'http://unrouted.example.test/')).status).toBe(403)
    const put = await admin(base, '/proxy/mode', { method: 'PUT', body: '{"mode":"connected_allow"}', token: TOKEN, headers: { 'content-type': 'application/json' } })
    expect(await put.json()).toEqual({ mode: 'connected_allow' })
    // Allowed now: passed on (to a name that does not resolve: 502), not refused.
    const passed = await curlThrough(proxy, caCert, 'http://unrouted.example.test/')
    expect(passed.status).toBe(502)
    await admin(base, '/proxy/mode', { method: 'PUT', body: '{"mode":"connected_deny"}', token: TOKEN })
    const decided = () =>
      served
        .output()
        .stdout.split('\n')
        .filter((l) => l.includes('"decisionId"'))
        .map((l) => JSON.parse(l) as { mode: string; instance: string })
    for (let i = 0; i < 100 && decided().length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    const records = decided()
    expect(records.map((r) => r.mode)).toEqual(['connected_deny', 'connected_allow'])
    expect(records.every((r) => r.instance === 'admin-test')).toBe(true)
  })

  it('counts decisions by event, reason, provider and client, with latency histograms and open connections', async () => {
    const { proxy, caCert } = served.listening
    for (let i = 0; i < 3; i++) expect((await curlThrough(proxy, caCert, 'https://api.alpha.test/v1/models')).status).toBe(200)
    const text = await (await admin(base, '/metrics')).text()
    expect(metricValue(text, /^egress_guard_decisions_total\{event="proxy_inject",reason="",provider="alpha",client=""\}/)).toBe(3)
    expect(metricValue(text, /^egress_guard_decisions_total\{event="proxy_deny",reason="no_match"/)).toBeGreaterThanOrEqual(1)
    expect(metricValue(text, /^egress_guard_decision_duration_seconds_count/)).toBeGreaterThanOrEqual(5)
    expect(metricValue(text, /^egress_guard_upstream_duration_seconds_count/)).toBeGreaterThanOrEqual(3)
    expect(metricValue(text, /^egress_guard_credential_cache_entries /)).toBe(1)
    expect(metricValue(text, /^egress_guard_credential_resolutions_total /)).toBe(1)
    expect(metricValue(text, /^egress_guard_credential_cache_hits_total /)).toBeGreaterThanOrEqual(2)
    expect(metricValue(text, /^egress_guard_intercepted_hosts /)).toBe(1)
    expect(metricValue(text, /^egress_guard_mode\{mode="connected_deny"\}/)).toBe(1)
    expect(text).not.toContain('sk-cli-test')
  })
})

/** Starts Debian's Prometheus on a free port, scraping `targets`; stopped by the caller. */
const startPrometheus = async (dir: string, job: string): Promise<{ readonly url: string; readonly child: ChildProcess }> => {
  const port = await freePort()
  mkdirSync(join(dir, 'tsdb'), { recursive: true })
  writeFileSync(join(dir, 'prometheus.yml'), job)
  const child = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' })
  for (let i = 0; i < 300 && !(await isListening(port)); i++) await new Promise((resolve) => setTimeout(resolve, 100))
  return { url: `http://127.0.0.1:${port}`, child }
}

/** Asks Prometheus `query` until it answers a sample (or gives up after 30 s): the sample's value. */
const queried = async (prometheus: string, query: string): Promise<number | undefined> => {
  for (let i = 0; i < 150; i++) {
    const answer = (await (await fetch(`${prometheus}/api/v1/query?query=${encodeURIComponent(query)}`)).json()) as { data?: { result?: Array<{ value: [number, string] }> } }
    const value = answer.data?.result?.[0]?.value[1]
    if (value !== undefined) return Number(value)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return undefined
}

describe('a real Prometheus scraping serve --workers 2 --admin, with the bearer token', () => {
  let common: ReadonlyArray<string> = []
  useStandIn(space, (standIn) => {
    common = standIn.common
  })

  it('scrapes the workers’ metrics added up, and a mode set live reaches every worker', async () => {
    const adminPort = await freePort()
    // Off loopback, /metrics needs the token too: Prometheus sends it.
    const served = await startServe([...common, '--port', '0', '--workers', '2', '--admin', `0.0.0.0:${adminPort}`], { ...cliEnv(space), HOME: space.dir, EGRESS_GUARD_ADMIN_TOKEN: TOKEN })
    const prometheusDir = join(space.dir, 'prometheus')
    const prometheus = await startPrometheus(
      prometheusDir,
      `global: { scrape_interval: 1s }\nscrape_configs:\n  - job_name: egress-guard\n    scrape_interval: 1s\n    authorization: { type: Bearer, credentials: "${TOKEN}" }\n    static_configs: [{ targets: ["127.0.0.1:${adminPort}"] }]\n`
    )
    try {
      const base = `http://127.0.0.1:${adminPort}`
      expect((await admin(base, '/metrics')).status).toBe(401)
      expect(await (await admin(base, '/readyz')).json()).toEqual({ status: 'ready', checks: { workers: true, policy: true, ca: true, sinks: true } })
      const { proxy, caCert } = served.listening
      // New connections go to the workers in turn: both count.
      for (let i = 0; i < 6; i++) expect((await curlThrough(proxy, caCert, 'https://api.alpha.test/v1/models')).status).toBe(200)
      expect(await queried(prometheus.url, 'sum(egress_guard_decisions_total{event="proxy_inject",provider="alpha"}) >= 6')).toBe(6)
      expect(await queried(prometheus.url, 'up{job="egress-guard"} == 1')).toBe(1)
      expect(await queried(prometheus.url, 'egress_guard_credential_resolutions_total >= 2')).toBe(2)

      await admin(base, '/proxy/mode', { method: 'PUT', body: '{"mode":"configured_allow"}', token: TOKEN })
      expect(await (await admin(base, '/proxy/mode', { token: TOKEN })).json()).toEqual({ mode: 'configured_allow' })
      const text = await (await admin(base, '/metrics', { token: TOKEN })).text()
      expect(metricValue(text, /^egress_guard_mode\{mode="configured_allow"\}/)).toBe(1)
      for (let i = 0; i < 4; i++) await curlThrough(proxy, caCert, 'http://unrouted.example.test:9/')
      const unrouted = () =>
        served
          .output()
          .stdout.split('\n')
          .filter((l) => l.includes('unrouted.example.test'))
          .map((l) => (JSON.parse(l) as { mode: string }).mode)
      for (let i = 0; i < 100 && unrouted().length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      const modes = unrouted()
      expect(modes).toEqual(['configured_allow', 'configured_allow', 'configured_allow', 'configured_allow'])
    } finally {
      prometheus.child.kill('SIGTERM')
      await served.stop()
    }
    expect(readFileSync(join(prometheusDir, 'prometheus.yml'), 'utf8')).toContain('egress-guard')
  })
})
