import * as E from 'fp-ts/lib/Either.js'

import { buildRouteTable, DEFAULT_MODE, scopeOf } from '../../core/index.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'
import { loadPolicy } from './policySource.js'

/** `egress-guard check`: validates a policy (or the catalog) and prints its route warnings; 1 on errors. */
export const check = async (options: CommonOptions, io: Io): Promise<number> => {
  const loaded = await loadPolicy(options, io.env)
  if (E.isLeft(loaded)) {
    if (options.json) io.out(JSON.stringify({ ok: false, errors: loaded.left }))
    else for (const message of loaded.left) io.err(`error: ${message}`)
    return 1
  }
  const mode = options.mode ?? loaded.right.file.mode ?? DEFAULT_MODE
  const { table } = buildRouteTable(loaded.right.input, scopeOf(mode))
  const configured = buildRouteTable(loaded.right.input, 'configured').table.routes.length
  const source = options.policy ?? 'the bundled catalog'
  if (options.json) {
    io.out(JSON.stringify({ ok: true, policy: source, mode, providers: loaded.right.file.providers.length, routes: table.routes.length, configuredRoutes: configured, warnings: loaded.right.warnings }))
    return 0
  }
  for (const w of loaded.right.warnings) io.out(`warning [${w.code}]${w.provider === undefined ? '' : ` ${w.provider}`}: ${w.detail}`)
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`
  io.out(`${source}: ${count(loaded.right.file.providers.length, 'provider')}, ${count(table.routes.length, 'route')} in mode ${mode} (${configured} when configured), ${count(loaded.right.warnings.length, 'warning')}`)
  return 0
}
