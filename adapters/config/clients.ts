import * as t from 'io-ts'

import type { ProxyMode } from '../../core/index.js'
import { closed, modeCodec, nonEmptyString } from './codecs.js'

// Who may use the proxy (docs/spec.md §9): each client has a name, a token (a template, as for a
// credential header), and optionally its own mode and the provider/connection pairs routed for it.

const pattern = (name: string, re: RegExp, hint: string) =>
  new t.Type<string, string, unknown>(
    name,
    (u): u is string => typeof u === 'string' && re.test(u),
    (u, c) => (typeof u === 'string' && re.test(u) ? t.success(u) : t.failure(u, c, hint)),
    t.identity
  )

const CLIENT_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/
const PAIR = /^[^/\s]+\/[^/\s]+$/

/** A client as the policy file declares it. */
export const clientCodec = closed(
  'a client',
  { name: pattern('a client name', CLIENT_NAME, 'a client name is 1 to 63 of a-z, 0-9, `_`, `.` and `-`, starting with a letter or digit'), token: nonEmptyString },
  { mode: modeCodec, connections: t.array(pattern('a provider/connection pair', PAIR, 'write `provider/connection`, e.g. `github/work`')) }
)

/** A declared client. */
export interface ClientDeclaration {
  readonly name: string
  readonly token: string
  readonly mode?: ProxyMode
  readonly connections?: ReadonlyArray<string>
}

/** The providers a client's `connections` routes, each to its connection; undefined when it lists none (every default connection). */
export const selectionOf = (client: Pick<ClientDeclaration, 'connections'>): ReadonlyMap<string, string> | undefined =>
  client.connections === undefined ? undefined : new Map(client.connections.map((pair) => [pair.slice(0, pair.indexOf('/')), pair.slice(pair.indexOf('/') + 1)] as const))

/** What is wrong with the clients of a policy: a name used twice, a pair that names no connection, two connections of one provider. */
export const clientProblems = (clients: ReadonlyArray<ClientDeclaration>, connections: ReadonlyArray<{ readonly provider: string; readonly name: string }>): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const known = new Set(connections.map((c) => `${c.provider}/${c.name}`))
  const seen = new Set<string>()
  for (const [i, client] of clients.entries()) {
    if (seen.has(client.name)) problems.push(`clients[${i}]: the name \`${client.name}\` is used twice; give each client its own`)
    seen.add(client.name)
    const providers = new Set<string>()
    for (const pair of client.connections ?? []) {
      if (!known.has(pair)) problems.push(`clients[${i}].connections: \`${pair}\` is not a connection of this policy; name one of \`connections\` as provider/name`)
      const provider = pair.slice(0, pair.indexOf('/'))
      if (providers.has(provider)) problems.push(`clients[${i}].connections: two connections of \`${provider}\`; a client uses one connection per provider`)
      providers.add(provider)
    }
  }
  return problems
}
