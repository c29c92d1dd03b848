// Core benchmark: nanoseconds per operation, medians of interleaved samples, all measured in one
// run against a bare `Map.get` baseline. Writes bench/results/core.json and prints ratios.
import { mkdirSync, writeFileSync } from 'node:fs'
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

const out = fileURLToPath(new URL('./results/core.json', import.meta.url))
mkdirSync(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true })
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)

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
console.log(`wrote ${out}`)
