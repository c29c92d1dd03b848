// Proxy benchmark: requests/s and p50/p99 latency through each proxy configuration, measured in
// one run with the configurations interleaved round by round (in a rotating order), each reported
// as a ratio to its bare proxy. The load is undici with 32 kept-alive connections, HTTPS through
// CONNECT to a local upstream; every proxy and the upstream run in their own processes. Then: the
// first request to new hosts, and the guarded proxy's event-loop delay during a burst of them.
// Writes bench/results/proxy.json. `npm run bench:proxy` builds first.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { build } from 'tsup'
import { Agent, type Dispatcher } from 'undici'

import { createPki } from '../test/adapters/support/pki.js'
import { download, firstRequest, measure, throughProxy, type Measured } from './proxy/load.js'
import { burstHosts, firstHost, floodHosts, HOST, legitHosts, policy, quietHosts } from './proxy/policy.js'
import { benchProcesses, cpuSeconds, NICE, twoProcessScaling, type Started } from './proxy/processes.js'
import type { RoleConfig } from './proxy/roles.js'

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3)
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7)
const WARM_UP_SECONDS = Number(process.env['BENCH_WARM_UP_SECONDS'] ?? 6)
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 32)
const SECRET = 'sk-bench-0c1d2e3f'
const TOKEN = 'bench-token-0123456789'
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const ROLES_SOURCE = join(ROOT, 'bench', 'proxy', 'roles.ts')
// Roles run as plain JavaScript: under tsx's loader, the built package would be transformed again
// (with keepNames) and the guarded proxies measured slower than what users run.
const ROLES = join(ROOT, 'bench', '.build', 'roles.js')
const CLI = join(ROOT, 'dist', 'cli.js')
const ADDON = join(ROOT, 'adapters', 'mitmproxy', 'egress_guard.py')
const dir = mkdtempSync(join(tmpdir(), 'eg-bench-proxy-'))
// Everything temporary of the run (the test PKI, each role's CA directory) goes below `dir`, which
// is removed on exit: the roles inherit this TMPDIR.
process.env['TMPDIR'] = dir
const processes = benchProcesses({ dir, roles: ROLES, cli: CLI, secret: SECRET })
const { startRole, startServe, stopAll } = processes

/** A configuration under test. */
interface Configuration {
  readonly name: string
  /** The processes doing the proxying (their CPU time per request is reported too). */
  readonly pids: ReadonlyArray<number>
  readonly dispatcher: Dispatcher
  readonly origin: string
  readonly path: string
  readonly expect: string
}

const viaProxy = (name: string, started: Started, upstreamCa: string, path: string, expect: string): Configuration => ({
  name,
  pids: started.child.pid === undefined ? [] : [started.child.pid],
  dispatcher: throughProxy(`http://127.0.0.1:${started.port}`, [started.caPem, upstreamCa], CONNECTIONS),
  origin: `https://${HOST}`,
  path,
  expect
})

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN
const round2 = (n: number) => Math.round(n * 100) / 100
const hasMitmdump = spawnSync('mitmdump', ['--version'], { stdio: 'ignore' }).status === 0

const main = async () => {
  await build({ entry: { roles: ROLES_SOURCE }, outDir: join(ROOT, 'bench', '.build'), format: ['esm'], target: 'node20', external: [/^egress-guard/, 'http-mitm-proxy', 'mockttp'], silent: true, clean: true })
  const pki = createPki()
  const hosts = [HOST, firstHost, ...quietHosts, ...burstHosts, ...['node', 'hmp', 'mockttp'].flatMap((e) => [...floodHosts(e), ...legitHosts(e)])]
  const leaf = pki.leaf([HOST, '*.burst.test', '*.node.flood.test', '*.hmp.flood.test', '*.mockttp.flood.test', '127.0.0.1'])
  const upstream = await startRole('upstream', { ...leaf, secret: SECRET })
  const base: RoleConfig = { upstreamPort: upstream.port, upstreamCa: pki.caPem, secret: SECRET, hosts }
  const policyFile = join(dir, 'policy.yaml')
  const upstreamCaPath = join(dir, 'upstream-ca.pem')
  writeFileSync(policyFile, policy(0))
  writeFileSync(upstreamCaPath, pki.caPem)
  const serveArgs = ['--policy', policyFile, '--upstream-ca', upstreamCaPath, '--port', '0', ...hosts.flatMap((h) => ['--connect-to', `${h}:443:127.0.0.1:${upstream.port}`])]

  const floor = await startRole('floor', { ...base, ...leaf })
  const nodeBare = await startRole('node-bare', base)
  const nodeGuarded = await startRole('node-guarded', { ...base, policy: policy(0) })
  const nodeUnscrubbed = await startRole('node-guarded-unscrubbed', { ...base, policy: policy(0) })
  const nodeBig = await startRole('node-guarded', { ...base, policy: policy(999) })
  const hmpBare = await startRole('hmp-bare', base)
  const hmpGuarded = await startRole('hmp-guarded', { ...base, policy: policy(0) })
  const hmpBig = await startRole('hmp-guarded', { ...base, policy: policy(999) })
  const mockttpBare = await startRole('mockttp-bare', base)
  const mockttpGuarded = await startRole('mockttp-guarded', { ...base, policy: policy(0) })
  const serveOne = await startServe('workers-1', serveArgs)
  const serveTwo = await startServe('workers-2', [...serveArgs, '--workers', '2'])
  // §14 switched on: the admin listener's metrics, and rate limits too high to refuse anything.
  const operatedPolicy = join(dir, 'policy-operated.yaml')
  writeFileSync(operatedPolicy, `${policy(0)}\nlimits: { perClient: { requests: 1000000000, perSeconds: 1 }, perHost: { requests: 1000000000, perSeconds: 1 } }\n`)
  const serveOperated = await startServe('workers-1-operated', [...serveArgs.map((a) => (a === policyFile ? operatedPolicy : a)), '--admin', '127.0.0.1:0'])

  const configurations: Array<Configuration> = [
    { name: 'direct', pids: [], dispatcher: new Agent({ connect: { ca: pki.caPem, servername: HOST }, connections: CONNECTIONS }), origin: `https://127.0.0.1:${upstream.port}`, path: '/v1/x', expect: 'auth:none' },
    viaProxy('floor', floor, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('node_bare', nodeBare, pki.caPem, '/v1/x', 'auth:none'),
    // node_inject: the guard without the secret in both directions (docs/spec.md §13); node_inject_scrub: as users run it.
    viaProxy('node_inject', nodeUnscrubbed, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('node_inject_scrub', nodeGuarded, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('node_pass', nodeGuarded, pki.caPem, '/other', 'auth:none'),
    viaProxy('node_inject_1000_routes', nodeBig, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('hmp_bare', hmpBare, pki.caPem, '/v1/x', 'auth:none'),
    viaProxy('hmp_inject', hmpGuarded, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('hmp_pass', hmpGuarded, pki.caPem, '/other', 'auth:none'),
    viaProxy('hmp_inject_1000_routes', hmpBig, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('mockttp_bare', mockttpBare, pki.caPem, '/v1/x', 'auth:none'),
    viaProxy('mockttp_inject', mockttpGuarded, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('mockttp_pass', mockttpGuarded, pki.caPem, '/other', 'auth:none'),
    viaProxy('workers_1_inject', serveOne, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('workers_2_inject', serveTwo, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('workers_1_operated_inject', serveOperated, pki.caPem, '/v1/x', 'auth:injected')
  ]
  if (hasMitmdump) {
    const upstreamCa = readFileSync(upstreamCaPath, 'utf8')
    const through = (started: Started) => viaProxy('mitmdump_addon', started, upstreamCa, '/v1/x', 'auth:injected')
    const options = { policyFile, upstreamCaPath, upstreamPort: upstream.port, hosts, addon: ADDON, token: TOKEN }
    const mitmdump = await processes.startMitmdump(options, async (started) => (await measure(through(started), 0.2, 1)).rps > 0)
    if (mitmdump === undefined) throw new Error('mitmdump with the addon did not start')
    configurations.push({ ...through(mitmdump.started), pids: mitmdump.pids })
  }

  // BENCH_ONLY=name,name runs a subset (for diagnosis; the committed results run everything).
  const only = process.env['BENCH_ONLY']?.split(',')
  if (only !== undefined) configurations.splice(0, configurations.length, ...configurations.filter((c) => only.includes(c.name)))

  // Warm every configuration (connections, leaf certificates, the JIT), and check that it answers
  // what it claims to: every answer of a measurement is checked the same way.
  for (const configuration of configurations) {
    const warm = await measure(configuration, WARM_UP_SECONDS, CONNECTIONS)
    if (warm.rps === 0 || warm.errors > 0) throw new Error(`${configuration.name}: ${warm.errors} wrong answers while warming up (${Math.round(warm.rps)} right ones a second), the first: ${warm.firstFailure ?? 'none'}`)
  }

  // Rounds: every configuration once per round, the order rotated each round, so that a slower or
  // faster stretch of this shared machine falls on each in turn.
  const samples = new Map<string, Array<Measured & { cpuMs: number; harnessCpuMs: number }>>()
  // The load generator (this process) and the upstream: what the measuring itself takes of the machine.
  const harness = [process.pid, upstream.child.pid ?? 0]
  for (let round = 0; round < ROUNDS; round++) {
    const order = configurations.map((_, i) => configurations[(i + round) % configurations.length] as Configuration)
    for (const configuration of order) {
      await measure(configuration, 0.5, CONNECTIONS) // reopen connections closed while idle
      const cpuBefore = cpuSeconds(configuration.pids)
      const harnessBefore = cpuSeconds(harness, true)
      const measured = await measure(configuration, SECONDS, CONNECTIONS)
      const requests = Math.max(1, measured.requests)
      const result = { ...measured, cpuMs: ((cpuSeconds(configuration.pids) - cpuBefore) * 1000) / requests, harnessCpuMs: ((cpuSeconds(harness, true) - harnessBefore) * 1000) / requests }
      samples.set(configuration.name, [...(samples.get(configuration.name) ?? []), result])
      process.stderr.write(`round ${round + 1}/${ROUNDS} ${configuration.name.padEnd(24)} ${result.rps.toFixed(0).padStart(6)} req/s  p50 ${result.p50_ms.toFixed(1)} ms  p99 ${result.p99_ms.toFixed(1)} ms  proxy CPU ${result.cpuMs.toFixed(3)} ms/req  errors ${result.errors}${result.firstFailure === undefined ? '' : ` (first: ${result.firstFailure})`}\n`)
    }
  }

  // A 50 MB answer to an injected request, downloaded alone, three times, through the node engine
  // with and without scrubbing: the scrubber's throughput.
  const bigDownloads = async (started: Started): Promise<number> => {
    const speeds: Array<number> = []
    for (let i = 0; i < 3; i++) speeds.push(await download(`http://127.0.0.1:${started.port}`, [started.caPem, pki.caPem], `https://${HOST}`, '/big'))
    return median(speeds)
  }
  const bigUnscrubbed = await bigDownloads(nodeUnscrubbed)
  const bigScrubbed = await bigDownloads(nodeGuarded)

  // The first request to a new host (CONNECT, a new leaf certificate, a new upstream connection),
  // one host at a time on a quiet guarded proxy.
  const trusted = [hmpGuarded.caPem, pki.caPem]
  const proxyUrl = `http://127.0.0.1:${hmpGuarded.port}`
  const quiet: Array<number> = []
  await firstRequest(proxyUrl, trusted, `https://${firstHost}`, '/v1/x', 'auth:injected')
  for (const host of quietHosts) quiet.push(await firstRequest(proxyUrl, trusted, `https://${host}`, '/v1/x', 'auth:injected'))
  quiet.sort((a, b) => a - b)

  // A burst of new hosts (one every 25 ms) while 8 connections keep a steady background load on
  // the same proxy, against the same background load alone: the proxy's event-loop delay and the
  // background requests' latency, with and without the burst.
  const loopDelay = async (during: () => Promise<unknown>): Promise<{ maxMs: number; p99Ms: number }> => {
    hmpGuarded.child.send('loop:start')
    await during()
    return new Promise((resolve) => {
      hmpGuarded.child.once('message', (m) => resolve(m as { maxMs: number; p99Ms: number }))
      hmpGuarded.child.send('loop:read')
    })
  }
  const background = { dispatcher: throughProxy(proxyUrl, trusted, 8), origin: `https://${HOST}`, path: '/v1/x', expect: 'auth:injected' }
  const backgroundRate = Math.round(median(samples.get('hmp_inject')?.map((s) => s.rps) ?? [1000]) / 4)
  await measure(background, 1, 8, backgroundRate)
  let alone: Measured | undefined
  const aloneDelay = await loopDelay(async () => (alone = await measure(background, 2, 8, backgroundRate)))
  let withBurst: Measured | undefined
  const burst: Array<number> = []
  const burstDelay = await loopDelay(async () => {
    const load = measure(background, 2, 8, backgroundRate)
    await Promise.all(
      burstHosts.map(async (host, i) => {
        await new Promise((resolve) => setTimeout(resolve, i * 25))
        burst.push(await firstRequest(proxyUrl, trusted, `https://${host}`, '/v1/x', 'auth:injected'))
      })
    )
    withBurst = await load
  })
  burst.sort((a, b) => a - b)
  await background.dispatcher.close()

  // The flood: every host's first request at once, from a process of its own, and 300 ms into it
  // five first requests to new hosts of another domain, one after another, from this one.
  // Target: each of those within 1 s.
  const flood = async (engine: 'node' | 'hmp' | 'mockttp', role: Started) => {
    const url = `http://127.0.0.1:${role.port}`
    const trust = [role.caPem, pki.caPem]
    const flooder = await startRole('flooder', { flood: { proxyUrl: url, trusted: trust, hosts: floodHosts(engine) } })
    const outcome = new Promise<{ hosts: number; answered: number; refused: number; failed: number }>((resolve) => flooder.child.once('message', (m) => resolve(m as never)))
    flooder.child.send('flood:go')
    await new Promise((resolve) => setTimeout(resolve, 300))
    const legit: Array<number> = []
    for (const host of legitHosts(engine)) legit.push(await firstRequest(url, trust, `https://${host}`, '/v1/x', 'auth:injected'))
    const done = await outcome
    flooder.child.kill('SIGTERM')
    legit.sort((a, b) => a - b)
    return {
      flood_hosts: done.hosts,
      flood_answered: done.answered,
      flood_refused_503: done.refused,
      flood_failed_otherwise: done.failed,
      first_request_ms: { p50: round2(legit[Math.floor(legit.length / 2)] ?? NaN), max: round2(legit.at(-1) ?? NaN), hosts: legit.length },
      within_1s: (legit.at(-1) ?? Infinity) <= 1_000
    }
  }
  const floodNode = await flood('node', nodeGuarded)
  const floodHmp = await flood('hmp', hmpGuarded)
  const floodMockttp = await flood('mockttp', mockttpGuarded)

  const scaling = await twoProcessScaling()

  const result: Record<string, unknown> = {}
  for (const [name, runs] of samples) {
    result[name] = { rps: Math.round(median(runs.map((r) => r.rps))), p50_ms: round2(median(runs.map((r) => r.p50_ms))), p99_ms: round2(median(runs.map((r) => r.p99_ms))) }
  }
  const rps = (name: string) => (result[name] as Measured | undefined)?.rps ?? NaN
  const p99 = (name: string) => (result[name] as Measured | undefined)?.p99_ms ?? NaN
  // Each round's own ratio too (the two configurations measured back to back), as a spread.
  const paired = (a: string, b: string) => {
    const ratios = (samples.get(a) ?? []).map((s, i) => s.rps / (samples.get(b)?.[i]?.rps ?? NaN)).sort((x, y) => x - y)
    return { median: round2(median(ratios)), min: round2(ratios[0] ?? NaN), max: round2(ratios.at(-1) ?? NaN) }
  }
  result['new_host_max_loop_delay_ms'] = round2(burstDelay.maxMs)
  result['new_host_flood'] = { node: floodNode, hmp: floodHmp, mockttp: floodMockttp }
  result['new_host'] = {
    first_request_ms: { p50: round2(quiet[Math.floor(quiet.length / 2)] ?? NaN), p90: round2(quiet[Math.floor(quiet.length * 0.9)] ?? NaN), max: round2(quiet.at(-1) ?? NaN), hosts: quiet.length },
    burst: { hosts: burst.length, first_request_p50_ms: round2(burst[Math.floor(burst.length / 2)] ?? NaN), first_request_max_ms: round2(burst.at(-1) ?? NaN) },
    loop_delay_ms: { background_alone: { max: round2(aloneDelay.maxMs), p99: round2(aloneDelay.p99Ms) }, with_burst: { max: round2(burstDelay.maxMs), p99: round2(burstDelay.p99Ms) } },
    background: {
      rps: backgroundRate,
      connections: 8,
      alone: { p50_ms: round2(alone?.p50_ms ?? NaN), p99_ms: round2(alone?.p99_ms ?? NaN), errors: alone?.errors ?? NaN },
      with_burst: { p50_ms: round2(withBurst?.p50_ms ?? NaN), p99_ms: round2(withBurst?.p99_ms ?? NaN), errors: withBurst?.errors ?? NaN }
    }
  }
  const cpu = (name: string) => median(samples.get(name)?.map((r) => r.cpuMs) ?? [NaN])
  // The node engine's targets (issue 14), as ratios of proxy CPU per request and of throughput, for
  // the guard as users run it (node_inject_scrub; node_inject_1000_routes is the same guard).
  result['node_targets'] = {
    node_inject_scrub_vs_hmp_inject_cpu: { value: round2(cpu('node_inject_scrub') / cpu('hmp_inject')), target: '<= 0.6' },
    node_inject_scrub_vs_floor_cpu: { value: round2(cpu('node_inject_scrub') / cpu('floor')), target: '<= 1.25' },
    node_inject_scrub_vs_hmp_inject_rps: { value: round2(rps('node_inject_scrub') / rps('hmp_inject')), target: '>= 1.6' },
    node_inject_scrub_vs_node_bare_cpu: { value: round2(cpu('node_inject_scrub') / cpu('node_bare')), target: '<= 1.10' },
    node_inject_1000_routes_vs_node_inject_scrub_cpu: { value: round2(cpu('node_inject_1000_routes') / cpu('node_inject_scrub')), target: '<= 1.10' }
  }
  // The secret in both directions (issue 17): its cost on small answers, and its throughput on a large one.
  result['secrets_targets'] = {
    node_inject_scrub_vs_node_inject_cpu: { value: round2(cpu('node_inject_scrub') / cpu('node_inject')), target: '<= 1.3' },
    node_inject_scrub_vs_node_inject_rps: round2(rps('node_inject_scrub') / rps('node_inject')),
    big_body_mb_per_s: { node_inject: round2(bigUnscrubbed), node_inject_scrub: round2(bigScrubbed), ratio: round2(bigScrubbed / bigUnscrubbed), body_mb: 50 }
  }
  // Operating it (issue 18): serve with its admin listener's metrics and rate limits, against serve without.
  result['operating_costs'] = {
    workers_1_operated_vs_workers_1_inject_cpu: round2(cpu('workers_1_operated_inject') / cpu('workers_1_inject')),
    workers_1_operated_vs_workers_1_inject_rps: round2(rps('workers_1_operated_inject') / rps('workers_1_inject'))
  }
  result['ratios'] = {
    node_inject_scrub_vs_bare_rps: round2(rps('node_inject_scrub') / rps('node_bare')),
    node_inject_scrub_vs_floor_rps: round2(rps('node_inject_scrub') / rps('floor')),
    hmp_inject_vs_bare_rps: round2(rps('hmp_inject') / rps('hmp_bare')),
    hmp_inject_vs_bare_p99: round2(p99('hmp_inject') / p99('hmp_bare')),
    hmp_pass_vs_bare_rps: round2(rps('hmp_pass') / rps('hmp_bare')),
    hmp_inject_1000_routes_vs_bare_rps: round2(rps('hmp_inject_1000_routes') / rps('hmp_bare')),
    mockttp_inject_vs_bare_rps: round2(rps('mockttp_inject') / rps('mockttp_bare')),
    mockttp_inject_vs_bare_p99: round2(p99('mockttp_inject') / p99('mockttp_bare')),
    mockttp_pass_vs_bare_rps: round2(rps('mockttp_pass') / rps('mockttp_bare')),
    workers_2_vs_workers_1_rps: round2(rps('workers_2_inject') / rps('workers_1_inject')),
    // The same for pure CPU-bound JavaScript, two processes against one: the ceiling of the above.
    machine_two_process_scaling: round2(scaling),
    ...(samples.has('mitmdump_addon') ? { workers_2_vs_mitmdump_addon_rps: round2(rps('workers_2_inject') / rps('mitmdump_addon')), mitmdump_addon_vs_hmp_bare_rps: round2(rps('mitmdump_addon') / rps('hmp_bare')) } : {}),
    direct_vs_hmp_bare_rps: round2(rps('direct') / rps('hmp_bare'))
  }
  result['paired_round_ratios_rps'] = {
    node_inject_scrub_vs_bare: paired('node_inject_scrub', 'node_bare'),
    node_inject_scrub_vs_node_inject: paired('node_inject_scrub', 'node_inject'),
    node_inject_scrub_vs_hmp_inject: paired('node_inject_scrub', 'hmp_inject'),
    hmp_inject_vs_bare: paired('hmp_inject', 'hmp_bare'),
    mockttp_inject_vs_bare: paired('mockttp_inject', 'mockttp_bare'),
    workers_2_vs_workers_1: paired('workers_2_inject', 'workers_1_inject'),
    workers_1_operated_vs_workers_1: paired('workers_1_operated_inject', 'workers_1_inject')
  }
  result['proxy_cpu_ms_per_request'] = Object.fromEntries([...samples].filter(([name]) => name !== 'direct').map(([name, runs]) => [name, Math.round(median(runs.map((r) => r.cpuMs)) * 1000) / 1000]))
  // The share of the machine's 2 CPUs the load generator and the upstream took while measuring each.
  result['load_generator_and_upstream_cpu_share'] = Object.fromEntries([...samples].map(([name, runs]) => [name, round2(median(runs.map((r) => (r.harnessCpuMs * r.rps) / 1000)))]))
  const errors = [...samples.values()].flat().reduce((n, r) => n + r.errors, 0) + (alone?.errors ?? 0) + (withBurst?.errors ?? 0)
  // Requests that failed or answered wrongly while measured (the warm-up allows none): kept apart,
  // so that each configuration's entry keeps its {rps, p50_ms, p99_ms} shape.
  result['failed_requests_by_configuration'] = Object.fromEntries([...samples].map(([name, runs]) => [name, runs.reduce((n, r) => n + r.errors, 0)]))
  result['setup'] = { seconds_per_sample: SECONDS, rounds: ROUNDS, warm_up_seconds: WARM_UP_SECONDS, connections: CONNECTIONS, failed_requests: errors, node: process.version, mitmdump: hasMitmdump, proxies_niced: NICE, cores: readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length }
  // BENCH_RESULT names another file (a subset run with BENCH_ONLY must not replace the whole run's).
  const out = join(ROOT, 'bench', 'results', process.env['BENCH_RESULT'] ?? 'proxy.json')
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write(`${JSON.stringify(result, null, 2)}\nwritten to ${out}\n`)
  for (const configuration of configurations) await configuration.dispatcher.close()
}

main().then(
  () => {
    stopAll()
    // Give the children a moment to stop (and write a profile, if asked for).
    setTimeout(() => process.exit(0), 2_000)
  },
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`)
    stopAll()
    process.exit(1)
  }
)
