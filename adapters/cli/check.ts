import * as E from 'fp-ts/lib/Either.js'

import { buildRouteTable } from '../../core/index.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'
import { openGuard } from './openGuard.js'

/** `egress-guard check`: validates a policy (or the catalog) and prints its route warnings; 1 on errors. */
export const check = async (options: CommonOptions, io: Io): Promise<number> => {
  const opened = await openGuard(options, io.env, { log: () => undefined, live: false })
  if (E.isLeft(opened)) {
    if (options.json) io.out(JSON.stringify({ ok: false, errors: opened.left }))
    else for (const message of opened.left) io.err(`error: ${message}`)
    return 1
  }
  const { guard } = opened.right
  const mode = guard.mode()
  const policy = guard.policy()
  const routes = guard.table().routes.length
  // The table every configured provider would get, whatever the mode: a count for people.
  const configured = buildRouteTable(policy.input, 'configured').table.routes.length
  const source = options.policy ?? 'the bundled catalog'
  if (options.json) {
    io.out(JSON.stringify({ ok: true, policy: source, mode, enforcement: guard.enforcement(), providers: policy.file.providers.length, routes, configuredRoutes: configured, warnings: policy.warnings }))
    return 0
  }
  for (const w of policy.warnings) io.out(`warning [${w.code}]${w.provider === undefined ? '' : ` ${w.provider}`}: ${w.detail}`)
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`
  io.out(`${source}: ${count(policy.file.providers.length, 'provider')}, ${count(routes, 'route')} in mode ${mode}${guard.enforcement() === 'report' ? ' (report only)' : ''} (${configured} when configured), ${count(policy.warnings.length, 'warning')}`)
  return 0
}
