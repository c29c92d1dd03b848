import { readFile } from 'node:fs/promises'

import { isSeq, parseDocument, stringify, YAMLSeq, Scalar } from 'yaml'

import { outcomeOf } from '../../core/Replay.js'
import { auditAndPolicy } from './auditFile.js'
import { catalogPolicy } from './catalog.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'

// `egress-guard learn AUDIT [--policy P]`: the policy, with a `passthrough` entry for every host
// the audit shows passed as `no_match` (in an allow mode, or as a `proxy_would_deny` under
// report), each commented with its count (docs/spec.md §12). Replayed in a deny mode with the
// learned policy, those requests are not denied. What a passthrough entry cannot allow (plain
// http to a routed host, a host mismatch, a local destination, …) is listed in a comment.

/** `egress-guard learn AUDIT [--policy FILE]`: prints the learned policy as YAML. */
export const learn = async (options: CommonOptions, io: Io): Promise<number> => {
  // The policy is checked as any command checks it before it is extended.
  const opened = await auditAndPolicy(options, io, 'egress-guard learn <audit.jsonl> [--policy FILE]')
  if (opened === undefined) return 2
  const passed = new Map<string, number>()
  const stillDenied = new Map<string, number>()
  for (const decision of opened.audit.decisions) {
    const tunnel = decision.request.method === 'CONNECT' && decision.request.path === undefined
    const was = outcomeOf(decision.records, tunnel)
    if (was === undefined) continue
    const wouldDeny = decision.records.some((r) => r.event === 'proxy_would_deny')
    const wasPassed = was.decision === 'pass' || was.decision === 'tunnel' || wouldDeny
    if (!wasPassed || was.reason === null || was.reason === 'passthrough' || was.reason === 'auth_endpoint') continue
    if (was.reason === 'no_match') passed.set(decision.request.host, (passed.get(decision.request.host) ?? 0) + 1)
    else stillDenied.set(`${was.reason} ${decision.request.host}`, (stillDenied.get(`${was.reason} ${decision.request.host}`) ?? 0) + 1)
  }
  const text = options.policy === undefined ? stringify(catalogPolicy(io.env).file) : await readFile(options.policy, 'utf8')
  const document = parseDocument(text)
  const existing = document.get('passthrough')
  const list = isSeq(existing) ? existing : new YAMLSeq()
  const known = new Set(list.items.map((item) => String(item instanceof Scalar ? item.value : item)))
  for (const [host, count] of [...passed].sort(([a], [b]) => a.localeCompare(b))) {
    if (known.has(host)) continue
    const entry = new Scalar(host)
    entry.comment = ` learned: ${count} request${count === 1 ? '' : 's'} passed as no_match`
    list.items.push(entry)
  }
  if (!isSeq(existing) && list.items.length > 0) document.set('passthrough', list)
  if (stillDenied.size > 0) {
    const lines = [...stillDenied].map(([what, n]) => ` ${what}: ${n}`)
    document.comment = [document.comment ?? '', ' Passed before, and still denied in a deny mode with this policy (no passthrough entry can allow them):', ...lines].filter((l) => l !== '').join('\n')
  }
  io.out(document.toString().trimEnd())
  return 0
}
