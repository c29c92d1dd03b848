// Core benchmark: nanoseconds per operation, medians of interleaved samples, all measured in one
// run against a bare `Map.get` baseline. Writes bench/results/core.json and prints ratios.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import type * as Core from '../core/index.js'
import type { PolicyInput, RequestFacts, RouteTable } from '../core/index.js'

// The built package, as users run it (`npm run bench` builds it first), typed by its source.
const builtCore: string = 'egress-guard/core'
const { buildRouteTable, decide, resolveRoute } = (await import(builtCore)) as typeof Core

const SAMPLES = Number(process.env['BENCH_SAMPLES'] ?? 15)
const OPS = Number(process.env['BENCH_OPS'] ?? 200_000)

/** A policy of `n` providers, each with one route: an exact host or an anchored subdomain pattern. */
const policyOf = (n: number, kind: 'exact' | 'regex'): PolicyInput => ({
  providers: Array.from({ length: n }, (_, i) => ({
    name: `svc${i}`,
    apiUrl: kind === 'exact' ? `https://api.svc${i}.com/v1` : `regex:^(?:[a-z0-9-]+\\.)?svc${i}\\.com$`
  })),
  connections: Array.from({ length: n }, (_, i) => ({ provider: `svc${i}`, name: 'default' }))
})

const requestTo = (host: string): RequestFacts => ({ scheme: 'https', host, port: 443, path: '/v1/chat/completions?stream=true', method: 'POST' })

const tableOf = (n: number, kind: 'exact' | 'regex'): RouteTable => {
  const { table, warnings } = buildRouteTable(policyOf(n, kind), 'connected')
  if (warnings.length > 0 || table.routes.length !== n) throw new Error(`bench table of ${n} ${kind} routes did not build cleanly`)
  return table
}

// Checks the operation does what it claims before it is timed.
const expectMatch = (table: RouteTable, request: RequestFacts, provider: string | null): (() => unknown) => {
  const resolution = resolveRoute(table, request)
  const got = resolution._tag === 'Matched' ? resolution.provider : null
  if (got !== provider) throw new Error(`bench request to ${request.host} resolved to ${got}, expected ${provider}`)
  return () => resolveRoute(table, request)
}

type Sampler = (op: () => unknown, ops: number, now: () => bigint) => number

// Each task gets its own compiled loop (the source differs, so V8 cannot share one), keeping
// every call site monomorphic: otherwise the cheapest operation pays for the others' shapes.
const samplerFor = (name: string): Sampler =>
  new Function('op', 'ops', 'now', `// ${name}\nlet n = 0\nconst t = now()\nfor (let i = 0; i < ops; i++) if (op() !== undefined) n++\nreturn n >= 0 ? Number(now() - t) / ops : 0`) as Sampler

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

const exact = { 10: tableOf(10, 'exact'), 1000: tableOf(1000, 'exact'), 10000: tableOf(10000, 'exact') }
const regex = { 10: tableOf(10, 'regex'), 100: tableOf(100, 'regex'), 1000: tableOf(1000, 'regex') }
const baselineMap = new Map(exact[10000].routes.map((r) => [r._tag === 'ExactRoute' ? r.host : '', r]))
const baselineHost = 'api.svc9999.com'
const decideInput = {
  mode: 'connected_deny' as const,
  request: requestTo('api.svc9.com'),
  resolution: resolveRoute(exact[10], requestTo('api.svc9.com')),
  credentials: { _tag: 'Available' as const, headers: { Authorization: 'Bearer sk-bench' } }
}

const tasks: Record<string, () => unknown> = {
  baseline: () => baselineMap.get(baselineHost),
  decide: () => decide(decideInput),
  miss: expectMatch(exact[10000], requestTo('unknown.example.org'), null),
  exact_10: expectMatch(exact[10], requestTo('api.svc9.com'), 'svc9'),
  exact_1000: expectMatch(exact[1000], requestTo('api.svc999.com'), 'svc999'),
  exact_10000: expectMatch(exact[10000], requestTo('api.svc9999.com'), 'svc9999'),
  regex_10: expectMatch(regex[10], requestTo('api.svc9.com'), 'svc9'),
  regex_100: expectMatch(regex[100], requestTo('api.svc99.com'), 'svc99'),
  regex_1000: expectMatch(regex[1000], requestTo('api.svc999.com'), 'svc999')
}

// Warm up every task, then interleave the samples so drift affects all of them alike.
const samplers = Object.fromEntries(Object.keys(tasks).map((name) => [name, samplerFor(name)]))
const sample = (name: string): number => samplers[name]?.(tasks[name] ?? (() => 0), OPS, process.hrtime.bigint) ?? Number.NaN
for (const name of Object.keys(tasks)) sample(name)
const samples: Record<string, Array<number>> = Object.fromEntries(Object.keys(tasks).map((k) => [k, []]))
for (let s = 0; s < SAMPLES; s++) for (const name of Object.keys(tasks)) samples[name]?.push(sample(name))
const ns = (name: string): number => Math.round(median(samples[name] ?? []) * 10) / 10

const results = {
  baseline_ns: ns('baseline'),
  decide_ns: ns('decide'),
  miss_ns: ns('miss'),
  exact_hit_ns: { '10': ns('exact_10'), '1000': ns('exact_1000'), '10000': ns('exact_10000') },
  regex_hit_ns: { '10': ns('regex_10'), '100': ns('regex_100'), '1000': ns('regex_1000') }
}

// `egress-guard replay` over 100,000 recorded decisions (docs/spec.md §12: fast enough for CI,
// under 10 s), end to end through the built command line: read, group, decide again, compare.
const REPLAY_RECORDS = Number(process.env['BENCH_REPLAY_RECORDS'] ?? 100_000)
const replaySeconds = (): number => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-bench-replay-'))
  try {
    const policy = join(dir, 'policy.yaml')
    writeFileSync(policy, 'mode: connected_allow\nproviders:\n' + Array.from({ length: 100 }, (_, i) => `  - { name: svc${i}, apiUrl: "https://api.svc${i}.com/v1" }\n`).join('') + 'connections:\n' + Array.from({ length: 100 }, (_, i) => `  - { provider: svc${i}, name: default, credentials: { headers: { Authorization: "Bearer \${env:K}" } } }\n`).join(''))
    const line = (i: number): string => {
      const host = `api.svc${i % 100}.com`
      const inject = i % 3 !== 0
      const path = inject ? '/v1/chat/completions' : '/v2/other'
      return JSON.stringify({ time: '2026-12-05T00:00:00.000Z', mode: 'connected_allow', enforcement: 'enforce', client: null, decisionId: `d${i}`, policyHash: 'bench', request: { scheme: 'https', host, port: 443, method: 'POST', path }, event: inject ? 'proxy_inject' : 'proxy_miss', source: 'external', provider: inject ? `svc${i % 100}` : null, connection: inject ? 'default' : null, metadata: inject ? { host, method: 'POST', path } : { host, reason: 'no_match', method: 'POST', path } })
    }
    const audit = join(dir, 'audit.jsonl')
    writeFileSync(audit, `${Array.from({ length: REPLAY_RECORDS }, (_, i) => line(i)).join('\n')}\n`)
    const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
    const started = process.hrtime.bigint()
    const result = spawnSync(process.execPath, [cli, 'replay', audit, '--policy', policy, '--mode', 'connected_deny', '--json'], { env: { PATH: process.env['PATH'] ?? '' }, maxBuffer: 1 << 30 })
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const out = JSON.parse(result.stdout.toString()) as { total: number; changed: number }
    if (result.status !== 1 || out.total !== REPLAY_RECORDS || out.changed !== Math.ceil(REPLAY_RECORDS / 3)) throw new Error(`replay bench: exit ${result.status}, ${out.total} decisions, ${out.changed} changed`)
    return Math.round(seconds * 100) / 100
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
const replay = { records: REPLAY_RECORDS, seconds: replaySeconds(), target_seconds: 10 }

const out = fileURLToPath(new URL('./results/core.json', import.meta.url))
mkdirSync(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true })
writeFileSync(out, `${JSON.stringify({ ...results, replay }, null, 2)}\n`)

const ratio = (x: number, to: number) => `${(x / to).toFixed(2)}×`
const b = results.baseline_ns
console.log(`core benchmark (${SAMPLES} samples × ${OPS} ops, medians; ${process.version})`)
for (const name of Object.keys(tasks)) console.log(`  ${name.padEnd(12)} ${String(ns(name)).padStart(8)} ns   ${ratio(ns(name), b)} baseline`)
const targets: ReadonlyArray<[string, number, number]> = [
  ['exact 10,000 vs 10 routes (target ≤ 1.5×)', results.exact_hit_ns['10000'] / results.exact_hit_ns['10'], 1.5],
  ['regex 1,000 vs 10 routes (target ≤ 10×)', results.regex_hit_ns['1000'] / results.regex_hit_ns['10'], 10],
  ['exact hit vs bare Map.get (target ≤ 15×)', results.exact_hit_ns['10000'] / b, 15]
]
for (const [what, value, target] of targets) console.log(`  ${what}: ${value.toFixed(2)}× ${value <= target ? 'met' : 'MISSED'}`)
console.log(`  replay of ${replay.records} records: ${replay.seconds} s (target ≤ 10 s) ${replay.seconds <= 10 ? 'met' : 'MISSED'}`)
console.log(`wrote ${out}`)
