import { existsSync } from 'node:fs'

import { decidedOnContent, outcomeOf, replayRequest, sameOutcome, type Outcome } from '../../core/Replay.js'
import type { CredentialRef, LoadedPolicy } from '../config/PolicyFile.js'
import { TEMPLATE_REFERENCE } from '../guard/credentialSources.js'
import { snapshotOf, viewOf } from '../guard/snapshot.js'
import { auditAndPolicy, type RecordedDecision } from './auditFile.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'

// `egress-guard replay AUDIT`: every recorded request decided again under a policy and mode,
// without resolving a secret, and every changed outcome listed (docs/spec.md §12). Exit 0 when
// nothing changes, 1 when something does, 2 on bad input.

/** Whether a credential reference would resolve to something present, without resolving it: helpers and endpoints are taken to answer. */
const referencePresent = (ref: CredentialRef | undefined, env: NodeJS.ProcessEnv): boolean => {
  if (ref === undefined) return false
  const filled = (template: string): boolean =>
    [...template.matchAll(TEMPLATE_REFERENCE)].every(([, kind, name = '']) => (kind === 'env' ? (env[name] ?? '') !== '' : existsSync(name)))
  if ('url' in ref) return true
  if ('headers' in ref) return Object.values(ref.headers).every(filled)
  if ('file' in ref) return existsSync(ref.file)
  return true
}

/**
 * Whether a connection has credentials: as its records said when they said it (an injection, or
 * a connection without them), else as its reference would resolve.
 */
const credentialsOf = (decisions: ReadonlyArray<RecordedDecision>, policy: LoadedPolicy, env: NodeJS.ProcessEnv): ((provider: string, connection: string) => boolean) => {
  const seen = new Map<string, boolean>()
  for (const decision of decisions) {
    for (const record of decision.records) {
      const key = `${record.provider ?? ''}/${record.connection ?? ''}`
      if (record.event === 'proxy_inject') seen.set(key, true)
      else if (record.event === 'proxy_no_credentials' && !seen.has(key)) seen.set(key, false)
    }
  }
  const references = new Map<string, CredentialRef | undefined>((policy.file.connections ?? []).map((c) => [`${c.provider}/${c.name}`, c.credentials]))
  return (provider, connection) => {
    const key = `${provider}/${connection}`
    return seen.get(key) ?? referencePresent(references.get(key), env)
  }
}

const shown = (o: Outcome): string =>
  [o.decision, o.reason, o.provider === null ? null : `${o.provider}/${o.connection ?? ''}`].filter((part) => part !== null).join(' ')

/** A change: the request, what it was, what it is now. */
interface Change {
  readonly decision: RecordedDecision
  readonly was: Outcome
  readonly now: Outcome
}

/** `egress-guard replay AUDIT [--policy P] [--mode M] [--json]`. */
export const replay = async (options: CommonOptions, io: Io): Promise<number> => {
  const opened = await auditAndPolicy(options, io, 'egress-guard replay <audit.jsonl> [--policy FILE] [--mode MODE] [--json]')
  if (opened === undefined) return 2
  const { audit, policy } = opened
  const snapshot = snapshotOf(policy, options.mode, undefined, new Map())
  const { decisions } = audit
  const hasCredentials = credentialsOf(decisions, policy, io.env)
  const changes: Array<Change> = []
  for (const decision of decisions) {
    const tunnel = decision.request.method === 'CONNECT' && decision.request.path === undefined
    const was = outcomeOf(decision.records, tunnel)
    if (was === undefined || decidedOnContent(was)) continue
    const view = viewOf(snapshot, decision.client ?? undefined)
    const now = replayRequest({ table: view.table, mode: view.mode, request: decision.request, hasCredentials })
    if (!sameOutcome(was, now)) changes.push({ decision, was, now })
  }
  if (options.json) {
    io.out(JSON.stringify({ total: decisions.length, changed: changes.length, changes: changes.map((c) => ({ request: c.decision.request, client: c.decision.client, was: c.was, now: c.now })) }))
    return changes.length === 0 ? 0 : 1
  }
  const counts = new Map<string, number>()
  for (const change of changes) {
    const { request } = change.decision
    const target = request.path === undefined ? `CONNECT ${request.host}:${request.port}` : `${request.method} ${request.scheme}://${request.host}:${request.port}${request.path}`
    io.out(`${target}${change.decision.client === null ? '' : ` (client ${change.decision.client})`}: ${shown(change.was)} → ${shown(change.now)}`)
    const kind = `${change.was.decision} → ${change.now.decision}`
    counts.set(kind, (counts.get(kind) ?? 0) + 1)
  }
  const skipped = audit.skipped === 0 ? '' : `; ${audit.skipped} refusals for want of proxy authentication not replayed`
  io.out(`${changes.length} of ${decisions.length} decisions change under ${options.policy ?? 'the bundled catalog'} in mode ${options.mode ?? snapshot.mode}${skipped}`)
  for (const [kind, n] of counts) io.out(`  ${kind}: ${n}`)
  return changes.length === 0 ? 0 : 1
}
