import * as E from 'fp-ts/lib/Either.js'

import type { Decision, RequestFacts } from '../../core/index.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'
import { knownClient, openGuard } from './openGuard.js'

const factsOf = (text: string, method: string): E.Either<string, RequestFacts> => {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return E.left(`\`${text}\` is not a URL: write it in full, e.g. https://api.openai.com/v1/models`)
  }
  const scheme = url.protocol.replace(/:$/, '')
  const port = url.port !== '' ? Number(url.port) : scheme === 'https' ? 443 : 80
  return E.right({ scheme, host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port, path: `${url.pathname}${url.search}`, method: method.toUpperCase() })
}

// Credential values never leave the proxy, not even in a dry run: only header names are shown.
const shownDecision = (decision: Decision): Record<string, unknown> =>
  decision._tag === 'Inject' ? { _tag: 'Inject', headers: Object.keys(decision.headers) } : { ...decision }

const decisionLine = (decision: Decision): string => {
  switch (decision._tag) {
    case 'Inject':
      return `inject ${Object.keys(decision.headers).join(', ')} (values from the credential source, not shown)`
    case 'Pass':
      return 'pass untouched'
    case 'Deny':
      return `deny ${decision.reason}: ${decision.closeTunnel ? 'close the tunnel' : `${decision.status} "${decision.body}"`}`
  }
}

/** `egress-guard explain <url>`: the resolution, decision and audit records a request would get, and why. */
export const explain = async (options: CommonOptions, io: Io): Promise<number> => {
  const [url, ...extra] = options.positionals
  if (url === undefined || extra.length > 0) {
    io.err('usage: egress-guard explain <url> [--method M] [--mode M] [--report] [--client NAME] [--policy F] [--json]')
    return 2
  }
  const facts = factsOf(url, options.method ?? 'GET')
  if (E.isLeft(facts)) {
    io.err(`error: ${facts.left}`)
    return 2
  }
  const opened = await openGuard(options, io.env, { log: () => undefined, live: false })
  if (E.isLeft(opened)) {
    for (const message of opened.left) io.err(`error: ${message}`)
    return 1
  }
  const { guard } = opened.right
  const client = knownClient(guard, options.client, io)
  if (client === false) return 2
  const request = client === undefined ? facts.right : { ...facts.right, client }
  const verdict = await guard.evaluate(request)
  const mode = verdict.mode
  const { resolution, routes } = guard.explain(request)
  const onHost = routes.filter((r) => r.ruledOut?.by !== 'host')
  if (options.json) {
    io.out(JSON.stringify({ request, mode, enforcement: guard.enforcement(), resolution, decision: shownDecision(verdict.decision), audit: verdict.audit, routes }))
    return 0
  }
  const report = guard.enforcement() === 'report' ? ', report only' : ''
  const who = client === undefined ? '' : `, client ${client}`
  io.out(`${facts.right.method} ${url}  (mode ${mode}${report}${who}, ${options.policy ?? 'bundled catalog'})`)
  io.out(`resolution: ${resolution._tag === 'Matched' ? `matched ${resolution.provider}/${resolution.connection}` : `miss (${resolution.reason})`}`)
  io.out(`decision:   ${decisionLine(verdict.decision)}`)
  io.out('audit:')
  for (const record of verdict.audit) io.out(`  ${JSON.stringify(record)}`)
  io.out(onHost.length === 0 ? 'routes:     no route is for this host' : 'routes for this host:')
  for (const r of onHost) io.out(`  ${r.ruledOut === undefined ? '✓' : '✗'} ${r.route}${r.ruledOut === undefined ? '' : `: ${r.ruledOut.why}`}`)
  const others = routes.length - onHost.length
  if (others > 0) io.out(`  (${others} other route${others === 1 ? '' : 's'} are for other hosts)`)
  return 0
}
