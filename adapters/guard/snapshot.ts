import { createHash } from 'node:crypto'

import { buildRouteTable, scopeOf, type DenyText, type Enforcement, type ProxyMode, type RouteTable } from '../../core/index.js'
import { DEFAULT_ENFORCEMENT } from '../../core/Enforcement.js'
import { DEFAULT_MODE } from '../../core/Mode.js'
import { emptyRouteTable } from '../../core/RouteTable.js'
import { selectionOf } from '../config/clients.js'
import type { LoadedPolicy } from '../config/PolicyFile.js'
import { digest } from '../proxy/proxyAuthentication.js'

// Everything one decision reads, built once per policy, mode or token change and swapped as a
// whole, so a request never sees half a reload: the policy's own view (mode and route table) and
// each client's (docs/spec.md §9).

/** A mode and the route table it is decided against. */
export interface View {
  readonly mode: ProxyMode
  readonly table: RouteTable
}

/** What a decision reads. */
export interface Snapshot extends View {
  readonly policy: LoadedPolicy
  readonly enforcement: Enforcement
  /** The `no_credentials` pointers of each provider that has its own login command. */
  readonly denyTexts: ReadonlyMap<string, DenyText>
  /** The policy's own pointers, for every other provider. */
  readonly denyText: DenyText
  /** Each declared client's view. */
  readonly clients: ReadonlyMap<string, View>
  /** Each client's token, by name: only those that resolved. Empty when the policy lists no clients. */
  readonly tokens: ReadonlyMap<string, string>
  /** The digests of those tokens, the form authentication compares. */
  readonly digests: ReadonlyMap<string, Buffer>
  /** The policy lists clients: every proxy request must authenticate as one. */
  readonly hasClients: boolean
  /** The SHA-256 of the decoded policy, which every record carries (docs/spec.md §12). */
  readonly policyHash: string
}

/**
 * Builds a snapshot. The mode is `override` (`--mode`, the mode endpoint), else the client's own,
 * else the policy's, else the default; the enforcement likewise without the client step.
 */
export const snapshotOf = (policy: LoadedPolicy, override: ProxyMode | undefined, enforcementOverride: Enforcement | undefined, tokens: ReadonlyMap<string, string>): Snapshot => {
  const mode = override ?? policy.file.mode ?? DEFAULT_MODE
  const enforcement = enforcementOverride ?? policy.file.enforcement ?? DEFAULT_ENFORCEMENT
  const base = policy.file.denyText ?? {}
  const dashboard = base.dashboardUrl === undefined ? {} : { dashboardUrl: base.dashboardUrl }
  const denyText: DenyText = { ...(base.loginCommand === undefined ? {} : { loginCommand: base.loginCommand }), ...dashboard }
  const denyTexts = new Map<string, DenyText>()
  for (const p of policy.file.providers) if (p.loginCommand !== undefined) denyTexts.set(p.name, { loginCommand: p.loginCommand, ...dashboard })
  const clients = new Map<string, View>()
  for (const client of policy.file.clients ?? []) {
    const clientMode = override ?? client.mode ?? mode
    clients.set(client.name, { mode: clientMode, table: buildRouteTable(policy.input, scopeOf(clientMode), selectionOf(client)).table })
  }
  const hasClients = clients.size > 0
  const kept = hasClients ? tokens : new Map<string, string>()
  const digests = new Map([...kept].map(([name, token]) => [name, digest(token)] as const))
  const policyHash = createHash('sha256').update(JSON.stringify(policy.file)).digest('hex')
  return { policy, mode, enforcement, table: buildRouteTable(policy.input, scopeOf(mode)).table, denyTexts, denyText, clients, tokens: kept, digests, hasClients, policyHash }
}

/**
 * The view a request is decided in: its client's, or the policy's own for a request without a
 * client (the policy lists none, or `run`'s own credentials authenticated it). A client the policy
 * does not list gets no routes at all, so nothing is ever injected for it.
 */
export const viewOf = (snapshot: Snapshot, client: string | undefined): View =>
  client === undefined ? snapshot : (snapshot.clients.get(client) ?? { mode: snapshot.mode, table: emptyRouteTable })

/** The `no_credentials` pointers for a provider. */
export const denyTextFor = (snapshot: Snapshot, provider: string | undefined): DenyText =>
  (provider === undefined ? undefined : snapshot.denyTexts.get(provider)) ?? snapshot.denyText
