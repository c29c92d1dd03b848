// Fuzzing the core: a million request facts (by default) through resolveRoute + decide, every one
// checked against the named laws, and one in 32 against the reference resolver. Policies and base
// requests come from the fast-check arbitraries (near each table's own routes); each fact is then
// bent by a seeded generator with mutations that are cheap enough for millions: case, dots,
// labels, encodings, dot segments, random text, schemes, ports, methods, and disagreeing
// Host/SNI/dialled facts. Every one of FUZZ_FACTS (default 1,000,000; about 35 s here) runs;
// FUZZ_SECONDS (default 240) is only the test's timeout, which stops a runaway. `npm run fuzz`
// runs ten million. A failure prints the seed and the fact.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'

import { buildRouteTable, decide, PROXY_MODES, resolveRoute, type CredentialOutcome, type ProxyMode, type RequestFacts, type RouteTable } from '../../core/index.js'
import { policyArb } from '../arbitraries/policy.js'
import { credentialsArb, requestNear, SECRET_PREFIX } from '../arbitraries/request.js'
import { decisionLaws, type Case } from '../model/laws.js'
import { referenceResolve } from '../model/referenceResolver.js'

const FACTS = Number(process.env['FUZZ_FACTS'] ?? 1_000_000)
const SECONDS = Number(process.env['FUZZ_SECONDS'] ?? 240)
const SEED = Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31)
const TABLES = 64

/** mulberry32: a small seeded generator, so a failure is replayed with FUZZ_SEED. */
const generator = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Mutable = { -readonly [K in keyof RequestFacts]: RequestFacts[K] }
type Mutation = (facts: Mutable, pick: <T>(items: ReadonlyArray<T>) => T, other: string, random: () => number) => void

const HOST_BENDS: ReadonlyArray<(h: string) => string> = [
  (h) => h.toUpperCase(),
  (h) => `${h}.`,
  (h) => `${h}..`,
  (h) => `x.${h}`,
  (h) => `evil${h}`,
  (h) => `${h}.evil.net`,
  (h) => h.split('.').slice(1).join('.'),
  (h) => h.replace('a', '\u0430'), // Cyrillic a
  (h) => h.replace('.', '%2e'),
  (h) => ` ${h}`,
  (h) => `${h}:443`,
  (h) => `[${h}]`,
  () => '127.0.0.1',
  () => '[::ffff:127.0.0.1]',
  () => '0x7f000001',
  () => '169.254.169.254',
  () => ''
]
const PATH_BENDS: ReadonlyArray<(p: string) => string> = [
  (p) => `${p}/../admin`,
  (p) => `${p}/%2e%2e/x`,
  (p) => `${p}%2f..%2fx`,
  (p) => `${p}/./x`,
  (p) => `/${p}`,
  (p) => `${p}?q=/../x`,
  (p) => `${p}#/../x`,
  (p) => `${p};x=1`,
  (p) => `${p}/..;/x`,
  (p) => p.toUpperCase(),
  (p) => p.replace(/^\//, ''),
  (p) => `${p}\\..\\x`,
  (p) => `${p}%00`,
  (p) => `${p}%`,
  (p) => `${p}0`
]
const ALPHABET = 'abcxyz019-._~%/\\:@?#;[]\u00e9\u0430 '
const MUTATIONS: ReadonlyArray<Mutation> = [
  // Random text: a few characters from an alphabet of separators, escapes and look-alikes.
  (f, pick, _, random) => {
    const at = Math.floor(f.host.length * random())
    f.host = `${f.host.slice(0, at)}${pick([...ALPHABET])}${f.host.slice(at)}`
  },
  (f, pick, _, random) => (f.path = `${f.path}/${Array.from({ length: 1 + Math.floor(random() * 6) }, () => pick([...ALPHABET])).join('')}`),
  (f, pick) => (f.host = pick(HOST_BENDS)(f.host)),
  (f, pick) => (f.path = pick(PATH_BENDS)(f.path)),
  (f, pick) => (f.scheme = pick(['http', 'https', 'HTTPS', 'Https', 'ftp', 'wss', ''])),
  (f, pick) => (f.port = pick([443, 80, 8443, 0, 65535, 65536, -1, 443.5])),
  (f, pick) => (f.method = pick(['GET', 'POST', 'CONNECT', 'TRACE', 'track', 'OPTIONS', 'get', ''])),
  (f, _, other) => (f.hostHeader = other),
  (f) => (f.hostHeader = `${f.host}:${f.port}`),
  (f, _, other) => (f.sni = other),
  (f, _, other) => (f.absoluteUriHost = other),
  (f, pick) => (f.dialedAddress = pick(['127.0.0.1', '10.0.0.9', '::1', '93.184.216.34', 'fe80::1', 'garbage', '0.0.0.0'])),
  (f) => {
    delete f.hostHeader
    delete f.sni
    delete f.absoluteUriHost
    delete f.dialedAddress
  }
]

interface Pool {
  readonly table: RouteTable
  readonly mode: ProxyMode
  readonly requests: ReadonlyArray<RequestFacts>
  readonly credentials: ReadonlyArray<CredentialOutcome | undefined>
}

describe('fuzzing resolveRoute + decide', () => {
  it(`holds every law on ${FACTS.toLocaleString('en')} facts, seed ${SEED}`, () => {
    const random = generator(SEED)
    const pick = <T,>(items: ReadonlyArray<T>): T => items[Math.floor(random() * items.length)] as T
    const pools: Array<Pool> = fc.sample(fc.tuple(policyArb, fc.constantFrom(...PROXY_MODES)), { numRuns: TABLES, seed: SEED }).map(([policy, mode], i) => {
      const { table } = buildRouteTable(policy, mode.startsWith('configured') ? 'configured' : 'connected')
      return {
        table,
        mode,
        requests: fc.sample(requestNear(table), { numRuns: 500, seed: SEED + i }),
        // The arbitrary's outcomes, and as many clean ones, so that injection is common enough to test.
        credentials: [...fc.sample(credentialsArb, { numRuns: 20, seed: SEED + i }), ...Array.from({ length: 20 }, (_, n) => ({ _tag: 'Available' as const, headers: { Authorization: `${SECRET_PREFIX}${n}` } }))]
      }
    })
    const laws = Object.entries(decisionLaws)
    let facts = 0
    let compared = 0
    let injected = 0
    // A 32-bit hash of every fact seen, to report (and bound) how many were distinct.
    const distinct = new Set<number>()
    const hash = (text: string) => {
      let h = 0x811c9dc5
      for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
      return h >>> 0
    }
    const failures: Array<string> = []
    while (facts < FACTS && failures.length === 0) {
      const pool = pick(pools)
      const request: Mutable = { ...pick(pool.requests) }
      const other = pick(pick(pools).requests).host
      // One in five facts is left as generated (so that injection stays common); the rest get one to four mutations.
      for (let m = random() < 0.2 ? 0 : 1 + Math.floor(random() * 4); m > 0; m--) pick(MUTATIONS)(request, pick, other, random)
      const credentials = pick(pool.credentials)
      const resolution = resolveRoute(pool.table, request)
      const decided = decide({ mode: pool.mode, request, resolution, ...(credentials === undefined ? {} : { credentials }) })
      const c: Case = { table: pool.table, mode: pool.mode, request, resolution, credentials, decided }
      facts++
      if (distinct.size < 4_000_000) distinct.add(hash(JSON.stringify([pool.mode, request, credentials])))
      if (decided.decision._tag === 'Inject') injected++
      for (const [name, law] of laws) if (!law(c)) failures.push(`${name} broken by ${JSON.stringify(request)} in ${pool.mode}`)
      if (facts % 32 === 0) {
        compared++
        const expected = referenceResolve(pool.table, request)
        if (JSON.stringify(expected) !== JSON.stringify(resolution)) failures.push(`resolveRoute disagrees with the reference on ${JSON.stringify(request)}`)
      }
    }
    process.stdout.write(`fuzz: ${facts} facts (${distinct.size} distinct, ${injected} injected), ${compared} against the reference, seed ${SEED}\n`)
    expect(failures).toEqual([])
    // The generators must reach the interesting cases, and mostly new ones, or the run proves little.
    expect(injected).toBeGreaterThan(facts / 200)
    expect(distinct.size).toBeGreaterThan(Math.min(facts, 4_000_000) * 0.75)
  }, (SECONDS + 60) * 1000)
})
