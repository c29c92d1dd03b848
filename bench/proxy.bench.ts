// Proxy benchmark: requests/s and p50/p99 latency through each proxy configuration, measured in
// one run with the configurations interleaved round by round, each reported as a ratio to its
// bare proxy. The load generator is undici with kept-alive connections (32 by default), HTTPS
// through CONNECT to a local upstream; every proxy and the upstream run in their own processes.
// Writes bench/results/proxy.json. `npm run bench:proxy` builds first.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import { build } from 'tsup'
import { Agent, ProxyAgent, type Dispatcher } from 'undici'

import { createPki } from '../test/adapters/support/pki.js'
import type { RoleConfig } from './proxy/roles.js'

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 4)
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3)
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 32)
const BURST_HOSTS = Number(process.env['BENCH_BURST_HOSTS'] ?? 40)
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

const HOST = 'api.bench.test'
const burstHosts = Array.from({ length: BURST_HOSTS }, (_, i) => `h${i}.burst.test`)

const policy = (extraRoutes: number) => `
mode: connected_allow
providers:
  - { name: bench, apiUrl: "https://${HOST}/v1" }
  - { name: burst, apiUrl: "regex:^h[0-9]+\\\\.burst\\\\.test$" }
${Array.from({ length: extraRoutes }, (_, i) => `  - { name: svc${i}, apiUrl: "https://api.svc${i}.example/v1" }`).join('\n')}
connections:
  - { provider: bench, name: default, credentials: { headers: { Authorization: "Bearer \${env:BENCH_KEY}" } } }
  - { provider: burst, name: default, credentials: { headers: { Authorization: "Bearer \${env:BENCH_KEY}" } } }
${Array.from({ length: extraRoutes }, (_, i) => `  - { provider: svc${i}, name: default, credentials: { headers: { Authorization: "Bearer \${env:BENCH_KEY}" } } }`).join('\n')}
`

interface Started {
  readonly port: number
  readonly caPem: string
  readonly child: ChildProcess
}

const children: Array<ChildProcess> = []
const stopAll = () => {
  for (const child of children) child.kill('SIGTERM')
}
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
})

/** Spawns a process and waits for the JSON line that says where it listens. */
const startProcess = async (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, read: (line: string) => { port: number; caPath?: string | undefined } | undefined): Promise<Started> => {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env: { ...process.env, ...env } })
  children.push(child)
  const lines = createInterface({ input: child.stdout! })
  const first = await new Promise<{ port: number; caPath?: string | undefined }>((resolve, reject) => {
    lines.on('line', (line) => {
      const found = line.startsWith('{') ? read(line) : undefined
      if (found !== undefined) resolve(found)
    })
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)))
  })
  // Later lines (decision logs) are read and dropped, as a log collector would.
  return { port: first.port, caPem: first.caPath === undefined ? '' : readFileSync(first.caPath, 'utf8'), child }
}

let roles = 0
const startRole = (role: string, config: RoleConfig) => {
  const file = join(dir, `role-${roles++}.json`) // a 1,000-route policy is too long for argv
  writeFileSync(file, JSON.stringify(config))
  return startProcess(process.execPath, [ROLES, role, file], {}, (line) => JSON.parse(line) as { port: number; caPath?: string })
}

const fromListening = (line: string) => {
  const parsed = JSON.parse(line) as { event?: string; proxy?: string; caCert?: string }
  return parsed.event === 'listening' ? { port: Number(new URL(parsed.proxy ?? '').port), caPath: parsed.caCert } : undefined
}

interface Measured {
  readonly rps: number
  readonly p50_ms: number
  readonly p99_ms: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN
const round2 = (n: number) => Math.round(n * 100) / 100

/** CPU seconds used so far by processes and their children (utime + stime from /proc, 100 Hz). */
const cpuSeconds = (pids: ReadonlyArray<number>): number => {
  let ticks = 0
  const visit = (pid: number) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(' ').filter((c) => c !== '')) visit(Number(child))
      }
    } catch {
      // the process is gone
    }
  }
  for (const pid of pids) visit(pid)
  return ticks / 100
}

/** A configuration under test: how to reach the upstream, and what its answers must say. */
interface Target {
  readonly name: string
  /** The processes doing the proxying (their CPU time per request is reported too). */
  readonly pids: ReadonlyArray<number>
  readonly dispatcher: Dispatcher
  readonly origin: string
  readonly path: string
  readonly expect: string
}

/** `CONNECTIONS` loops, each on its own kept-alive connection, for `seconds`. */
const load = async (target: Target, seconds: number): Promise<Measured & { errors: number }> => {
  const latencies: Array<number> = []
  let errors = 0
  const end = performance.now() + seconds * 1000
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        const start = performance.now()
        try {
          const response = await target.dispatcher.request({ origin: target.origin, path: target.path, method: 'GET' })
          const body = await response.body.text()
          if (response.statusCode === 200 && body === target.expect) latencies.push(performance.now() - start)
          else errors++
        } catch {
          errors++
        }
      }
    })
  )
  latencies.sort((a, b) => a - b)
  return { rps: latencies.length / seconds, p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99), errors }
}

const viaProxy = (name: string, started: Started, upstreamCa: string, path: string, expect: string): Target => ({
  name,
  pids: started.child.pid === undefined ? [] : [started.child.pid],
  dispatcher: new ProxyAgent({ uri: `http://127.0.0.1:${started.port}`, requestTls: { ca: [started.caPem, upstreamCa] }, connections: CONNECTIONS }),
  origin: `https://${HOST}`,
  path,
  expect
})

const hasMitmdump = spawnSync('mitmdump', ['--version'], { stdio: 'ignore' }).status === 0

const main = async () => {
  await build({ entry: { roles: ROLES_SOURCE }, outDir: join(ROOT, 'bench', '.build'), format: ['esm'], target: 'node20', external: [/^egress-guard/, 'http-mitm-proxy', 'mockttp'], silent: true, clean: true })
  const pki = createPki()
  const leaf = pki.leaf([HOST, '*.burst.test', '127.0.0.1'])
  const upstream = await startRole('upstream', { ...leaf, secret: SECRET })
  const hosts = [HOST, ...burstHosts]
  const base: RoleConfig = { upstreamPort: upstream.port, upstreamCa: pki.caPem, secret: SECRET, hosts }
  const policyFile = join(dir, 'policy.yaml')
  const bigPolicyFile = join(dir, 'policy-1000.yaml')
  writeFileSync(policyFile, policy(0))
  writeFileSync(bigPolicyFile, policy(999))
  writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
  const cliArgs = (file: string) => ['--policy', file, '--upstream-ca', join(dir, 'upstream-ca.pem'), '--port', '0', '--json', ...hosts.flatMap((h) => ['--connect-to', `${h}:443:127.0.0.1:${upstream.port}`])]

  const hmpBare = await startRole('hmp-bare', base)
  const hmpGuarded = await startRole('hmp-guarded', { ...base, policy: policy(0) })
  const hmpBig = await startRole('hmp-guarded', { ...base, policy: policy(999) })
  const mockttpBare = await startRole('mockttp-bare', base)
  const mockttpGuarded = await startRole('mockttp-guarded', { ...base, policy: policy(0) })
  const serveOne = await startProcess(process.execPath, [CLI, 'serve', ...cliArgs(policyFile), '--config-dir', join(dir, 'one')], { BENCH_KEY: SECRET }, fromListening)
  const serveTwo = await startProcess(process.execPath, [CLI, 'serve', ...cliArgs(policyFile), '--workers', '2', '--config-dir', join(dir, 'two')], { BENCH_KEY: SECRET }, fromListening)

  const targets: Array<Target> = [
    { name: 'direct', pids: [], dispatcher: new Agent({ connect: { ca: pki.caPem, servername: HOST }, connections: CONNECTIONS }), origin: `https://127.0.0.1:${upstream.port}`, path: '/v1/x', expect: 'auth:none' },
    viaProxy('hmp_bare', hmpBare, pki.caPem, '/v1/x', 'auth:none'),
    viaProxy('hmp_inject', hmpGuarded, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('hmp_pass', hmpGuarded, pki.caPem, '/other', 'auth:none'),
    viaProxy('hmp_inject_1000_routes', hmpBig, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('mockttp_bare', mockttpBare, pki.caPem, '/v1/x', 'auth:none'),
    viaProxy('mockttp_inject', mockttpGuarded, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('workers_1_inject', serveOne, pki.caPem, '/v1/x', 'auth:injected'),
    viaProxy('workers_2_inject', serveTwo, pki.caPem, '/v1/x', 'auth:injected')
  ]

  if (hasMitmdump) {
    const service = await startProcess(process.execPath, [CLI, 'decision-service', '--policy', policyFile, '--port', '0', '--token', TOKEN, '--json'], { BENCH_KEY: SECRET }, (line) => {
      const parsed = JSON.parse(line) as { event?: string; url?: string }
      return parsed.event === 'listening' ? { port: Number(new URL(parsed.url ?? '').port) } : undefined
    })
    const confdir = join(dir, 'mitmproxy')
    mkdirSync(confdir)
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    const rules = hosts.map((h) => `${h}:443:127.0.0.1:${upstream.port}`).join(',')
    const child = spawn('mitmdump', ['--quiet', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${confdir}`, '--set', 'connection_strategy=lazy',
      '--set', `ssl_verify_upstream_trusted_ca=${join(dir, 'upstream-ca.pem')}`, '-s', ADDON, '--set', `egress_guard_url=http://127.0.0.1:${service.port}`,
      '--set', `egress_guard_token=${TOKEN}`, '--set', `egress_guard_connect_to=${rules}`], { stdio: 'ignore' })
    children.push(child)
    const caPath = join(confdir, 'mitmproxy-ca-cert.pem')
    for (let i = 0; i < 300; i++) {
      try {
        const caPem = readFileSync(caPath, 'utf8')
        const probe = viaProxy('probe', { port, caPem, child }, pki.caPem, '/v1/x', 'auth:injected')
        if ((await load(probe, 0.2)).rps > 0) {
          targets.push({ ...probe, name: 'mitmdump_addon', pids: [child.pid ?? 0, service.child.pid ?? 0] })
          break
        }
      } catch {
        // not up yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }

  // BENCH_ONLY=name,name runs a subset (for diagnosis; the committed results run everything).
  const only = process.env['BENCH_ONLY']?.split(',')
  if (only !== undefined) targets.splice(0, targets.length, ...targets.filter((t) => only.includes(t.name)))

  // Warm every configuration (connections, leaf certificates), and check each measures what it claims.
  for (const target of targets) {
    const warm = await load(target, 1)
    if (warm.rps === 0) throw new Error(`${target.name}: no successful request while warming up (${warm.errors} errors)`)
  }

  const samples = new Map<string, Array<Measured & { errors: number; cpuMs: number }>>()
  for (let round = 0; round < ROUNDS; round++) {
    for (const target of targets) {
      // Idle connections may have been closed while the others ran: reopen them before measuring.
      await load(target, 0.5)
      const cpuBefore = cpuSeconds(target.pids)
      const measured = await load(target, SECONDS)
      const result = { ...measured, cpuMs: ((cpuSeconds(target.pids) - cpuBefore) * 1000) / Math.max(1, measured.rps * SECONDS) }
      samples.set(target.name, [...(samples.get(target.name) ?? []), result])
      process.stderr.write(`round ${round + 1}/${ROUNDS} ${target.name.padEnd(24)} ${result.rps.toFixed(0).padStart(6)} req/s  p50 ${result.p50_ms.toFixed(1)} ms  p99 ${result.p99_ms.toFixed(1)} ms  proxy CPU ${result.cpuMs.toFixed(3)} ms/req  errors ${result.errors}\n`)
    }
  }

  // The first request to each new host (a new leaf certificate each) while 8 connections keep
  // loading the proxy, with the proxy's own event-loop delay measured across the burst.
  const background = { ...targets.find((t) => t.name === 'hmp_inject')! }
  const readLoopDelay = () =>
    new Promise<{ maxMs: number }>((resolve) => {
      hmpGuarded.child.once('message', (m) => resolve(m as { maxMs: number }))
      hmpGuarded.child.send('loop:read')
    })
  hmpGuarded.child.send('loop:reset')
  const steady = load({ ...background, dispatcher: new ProxyAgent({ uri: `http://127.0.0.1:${hmpGuarded.port}`, requestTls: { ca: [hmpGuarded.caPem, pki.caPem] }, connections: 8 }) }, 3)
  const firstRequest = await Promise.all(
    burstHosts.map(async (host, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * 25))
      const dispatcher = new ProxyAgent({ uri: `http://127.0.0.1:${hmpGuarded.port}`, requestTls: { ca: [hmpGuarded.caPem, pki.caPem] } })
      const start = performance.now()
      const response = await dispatcher.request({ origin: `https://${host}`, path: '/v1/x', method: 'GET' })
      const body = await response.body.text()
      if (body !== 'auth:injected') throw new Error(`burst host ${host}: ${response.statusCode} ${body}`)
      const elapsed = performance.now() - start
      await dispatcher.close()
      return elapsed
    })
  )
  await steady
  const { maxMs } = await readLoopDelay()
  firstRequest.sort((a, b) => a - b)

  const result: Record<string, unknown> = {}
  for (const [name, runs] of samples) {
    result[name] = { rps: Math.round(median(runs.map((r) => r.rps))), p50_ms: round2(median(runs.map((r) => r.p50_ms))), p99_ms: round2(median(runs.map((r) => r.p99_ms))) }
  }
  result['proxy_cpu_ms_per_request'] = Object.fromEntries([...samples].filter(([name]) => name !== 'direct').map(([name, runs]) => [name, Math.round(median(runs.map((r) => r.cpuMs)) * 1000) / 1000]))
  result['new_host_max_loop_delay_ms'] = round2(maxMs)
  result['new_host_first_request_ms'] = { p50: round2(percentile(firstRequest, 50)), max: round2(firstRequest.at(-1) ?? NaN), hosts: burstHosts.length }
  const rps = (name: string) => (result[name] as Measured | undefined)?.rps ?? NaN
  const p99 = (name: string) => (result[name] as Measured | undefined)?.p99_ms ?? NaN
  const errors = [...samples.values()].flat().reduce((n, r) => n + r.errors, 0)
  result['ratios'] = {
    hmp_inject_vs_bare_rps: round2(rps('hmp_inject') / rps('hmp_bare')),
    hmp_inject_vs_bare_p99: round2(p99('hmp_inject') / p99('hmp_bare')),
    hmp_pass_vs_bare_rps: round2(rps('hmp_pass') / rps('hmp_bare')),
    hmp_inject_1000_routes_vs_bare_rps: round2(rps('hmp_inject_1000_routes') / rps('hmp_bare')),
    mockttp_inject_vs_bare_rps: round2(rps('mockttp_inject') / rps('mockttp_bare')),
    mockttp_inject_vs_bare_p99: round2(p99('mockttp_inject') / p99('mockttp_bare')),
    workers_2_vs_workers_1_rps: round2(rps('workers_2_inject') / rps('workers_1_inject')),
    ...(samples.has('mitmdump_addon') ? { workers_2_vs_mitmdump_addon_rps: round2(rps('workers_2_inject') / rps('mitmdump_addon')) } : {})
  }
  result['setup'] = { seconds_per_sample: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, failed_requests: errors, node: process.version, mitmdump: hasMitmdump }
  const out = join(ROOT, 'bench', 'results', 'proxy.json')
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write(`${JSON.stringify(result, null, 2)}\nwritten to ${out}\n`)
  for (const target of targets) await target.dispatcher.close()
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
