// Requests built from the policy pool and then bent into near misses: case and trailing-dot
// variants, glued and cut labels, `/v10` beside `/v1`, dot segments, encoded separators.
import fc from 'fast-check'

import type { RequestFacts } from '../../core/resolveRoute.js'
import { emptyRouteTable, type RouteTable } from '../../core/RouteTable.js'
import { AUTH_PATHS, BASE_DOMAINS, PREFIXES, SUBDOMAINS, poolHost } from './policy.js'

const bend = (h: string, bend: number): string =>
    [h, h, h, h, h, h, h, h, h, h.toUpperCase(), `${h}.`, `evil${h}`, `${h}.evil.net`, h.split('.').slice(1).join('.'), `x.${h}`, `${h.slice(0, -1)}`][bend] ?? h

/** A pool host bent into its near misses (and left alone most of the time). */
export const bentHost = fc.tuple(poolHost, fc.nat(15)).map(([h, n]) => bend(h, n))

const POOL_HOSTS = SUBDOMAINS.flatMap((s) => BASE_DOMAINS.flatMap((d) => [s === '' ? d : `${s}.${d}`, `x.${s === '' ? d : `${s}.${d}`}`]))

// Hosts the table's own routes match: exact hosts, and pool hosts each pattern accepts.
const routedHosts = (table: RouteTable): ReadonlyArray<string> => [
  ...new Set(table.routes.flatMap((r) => (r._tag === 'ExactRoute' ? [r.host] : POOL_HOSTS.filter((h) => r.pattern.matches(h)))))
]

const localHost = fc.constantFrom('localhost', 'a.localhost', '127.1', '2130706433', '0x7f.0.0.1', '[::ffff:7f00:1]', '10.0.0.8', '169.254.169.254', '[fe80::1]', '[::1]')

// Tails that bend a prefix: dot segments, encoded separators, and dot segments behind a repeated
// `/` (read as `/v1/v2/x` by RFC 3986 and as `/v2/x` by servers that merge slashes first).
const pathTail = fc.constantFrom(
  '', '/', '/x', '0', '/../admin', '/%2e%2e/v1', '%2fx', '/x?key=1', '\\x', '/./x', '/X', '#frag',
  '//../v2/x', '/x//../../v2/x', '//%2e%2e/admin', '//%2E./x', '///../..//v2', '//./x', '//x',
  // Read as a nested prefix once repeated `/` are merged: `/v1//chat/x` is `/v1/chat/x` to nginx.
  '//chat/x', '//./chat', '/c/..//chat/x'
)

const authTail = fc.tuple(fc.constantFrom('', '/', '?code=1', '%2f', 'x', '/..'), fc.boolean())

/** A request path: a pool prefix or auth path with a tail that bends it. */
export const bentPath = fc.oneof(
  fc.tuple(fc.constantFrom(...PREFIXES), pathTail).map(([p, t]) => `${p}${t}` || '/'),
  fc.tuple(fc.constantFrom(...AUTH_PATHS), fc.constantFrom('', '/', '?code=1', '%2f'), fc.boolean()).map(
    ([p, t, doubled]) => `${doubled ? '/' : ''}${p.replace('token', '%74oken')}${t}`
  ),
  // An auth endpoint only servers that merge repeated `/` first reach: `/x//../oauth/token`.
  fc.tuple(fc.constantFrom(...AUTH_PATHS), fc.constantFrom('/x//..', '/x//%2e%2e', '/x/%2f..')).map(([p, lead]) => `${lead}${p}`),
  fc.constantFrom('*', 'https://alpha.com/v1', '', 'https://u5er:pa55w0rd@alpha.com/v1/x?q', 'http://alpha.com:443@evil.net/v1', 'u5er:pa55w0rd@alpha.com/v1', 'https://a@b@alpha.com\\@x/v1')
)

/** Request facts built from a table's own routes, mostly coherent, with one fact bent now and then. */
export const requestNear = (table: RouteTable): fc.Arbitrary<RequestFacts> => {
  const hosts = routedHosts(table)
  const near = hosts.length === 0 ? bentHost : fc.tuple(fc.constantFrom(...hosts), fc.nat(15)).map(([h, n]) => bend(h, n))
  const prefixes = [...new Set([...table.routes.map((r) => r.prefix), ...PREFIXES])]
  const ports = [...new Set([443, ...table.routes.map((r) => r.port)])]
  const authPaths = [...new Set([...table.routes.flatMap((r) => r.authPaths), ...AUTH_PATHS])]
  const path = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...prefixes), pathTail).map(([p, t]) => `${p}${t}` || '/') },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...authPaths), authTail).map(([p, [t, doubled]]) => `${doubled ? '/' : ''}${p.replace(/n$/, '%6E')}${t}`) },
    { weight: 1, arbitrary: bentPath }
  )
  return fc
    .record({
      scheme: fc.constantFrom('https', 'https', 'https', 'https', 'HTTPS', 'http'),
      host: fc.oneof({ weight: 8, arbitrary: near }, { weight: 2, arbitrary: bentHost }, { weight: 1, arbitrary: localHost }),
      port: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...ports) }, { weight: 1, arbitrary: fc.constantFrom(8443, 80) }),
      path,
      method: fc.constantFrom('GET', 'POST', 'CONNECT'),
      // Which optional facts the transport reports, and whether one of them disagrees.
      reported: fc.record({ hostHeader: fc.boolean(), sni: fc.boolean(), absoluteUriHost: fc.boolean(), dialedAddress: fc.boolean() }),
      withPort: fc.boolean(),
      bend: fc.nat(19),
      other: bentHost,
      dialed: fc.constantFrom('127.0.0.1', '10.1.2.3', '::ffff:127.0.0.1', 'not an address')
    })
    .map((r) => {
      const facts: { -readonly [K in keyof RequestFacts]: RequestFacts[K] } = { scheme: r.scheme, host: r.host, port: r.port, path: r.path, method: r.method }
      const bare = r.host.toLowerCase()
      if (r.reported.hostHeader) facts.hostHeader = r.withPort ? `${bare}:${r.port}` : bare
      if (r.reported.sni) facts.sni = r.host
      if (r.reported.absoluteUriHost) facts.absoluteUriHost = bare
      if (r.reported.dialedAddress) facts.dialedAddress = r.bend === 0 ? r.dialed : r.bend % 2 === 0 ? '93.184.216.34' : '2606:4700::1'
      if (r.bend === 1) facts.hostHeader = r.other
      if (r.bend === 2) facts.sni = r.other
      if (r.bend === 3) facts.absoluteUriHost = r.other
      return facts
    })
}

/** Request facts near the policy pool, for properties that need no table. */
export const requestArb: fc.Arbitrary<RequestFacts> = requestNear(emptyRouteTable)

/** Credential outcomes with secrets that cannot occur in the request pool. */
export const SECRET_PREFIX = 'SeCrEt~'
export const credentialsArb = fc.oneof(
  fc.constant(undefined),
  fc.string({ minLength: 1, maxLength: 20 }).map((e) => ({ _tag: 'Unavailable' as const, error: `source failed: ${e}` })),
  fc
    .tuple(
      fc.constantFrom('Authorization', 'x-api-key', 'X-Goog-Api-Key', 'Proxy-Authorization', 'bad name', 'Host'),
      fc.stringMatching(/^[A-Za-z0-9]{8,16}$/),
      fc.constantFrom('', '', '', '\r\nX-Evil: 1', '\u0000')
    )
    .map(([name, token, tail]) => ({ _tag: 'Available' as const, headers: { [name]: `${SECRET_PREFIX}${token}${tail}` } }))
)
