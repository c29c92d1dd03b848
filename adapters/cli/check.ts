import * as E from 'fp-ts/lib/Either.js'

import { buildRouteTable } from '../../core/index.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'
import { knownClient, openGuard } from './openGuard.js'

/** `egress-guard check`: validates a policy (or the catalog) and prints its route warnings; 1 on errors. */
export const check = async (options: CommonOptions, io: Io): Promise<number> => {
  const opened = await openGuard(options, io.env, { log: () => undefined, live: false })
  if (E.isLeft(opened)) {
    if (options.json) io.out(JSON.stringify({ ok: false, errors: opened.left }))
    else for (const message of opened.left) io.err(`error: ${message}`)
    return 1
  }
  const { guard } = opened.right
  const client = knownClient(guard, options.client, io)
  if (client === false) return 2
  // A client's mode is that of its requests; its routes, the table they are resolved against.
  const mode = guard.mode(client)
  const policy = guard.policy()
  const routes = guard.table(client).routes.length
  // The table every configured provider would get, whatever the mode: a count for people.
  const configured = buildRouteTable(policy.input, 'configured').table.routes.length
  const source = options.policy ?? 'the bundled catalog'
  if (options.json) {
    io.out(JSON.stringify({ ok: true, policy: source, mode, enforcement: guard.enforcement(), client: client ?? null, providers: policy.file.providers.length, routes, configuredRoutes: configured, warnings: policy.warnings }))
    return 0
  }
  for (const w of policy.warnings) io.out(`warning [${w.code}]${w.provider === undefined ? '' : ` ${w.provider}`}: ${w.detail}`)
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`
  const who = client === undefined ? '' : ` for client ${client}`
  io.out(`${source}: ${count(policy.file.providers.length, 'provider')}, ${count(routes, 'route')}${who} in mode ${mode}${guard.enforcement() === 'report' ? ' (report only)' : ''} (${configured} when configured), ${count(policy.warnings.length, 'warning')}`)
  return 0
}
