import * as E from 'fp-ts/lib/Either.js'

import { DEFAULT_MODE } from '../../core/index.js'
import { startDecisionService } from '../decision-service/decisionService.js'
import { jsonLinesSink } from '../guard/auditSinks.js'
import { createGuard, type Guard } from '../guard/createGuard.js'
import { openPolicyFile } from '../guard/openPolicyFile.js'
import { stderrLogger, type AuditSink } from '../ports.js'
import { catalogPolicy } from './catalog.js'
import { decisionLogSink } from './decisionLog.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'

/** `egress-guard decision-service`: the guard over HTTP until SIGINT or SIGTERM. */
export const decisionService = async (options: CommonOptions, io: Io): Promise<number> => {
  const token = options.token ?? io.env['EGRESS_GUARD_TOKEN'] ?? ''
  if (token.length < 16) {
    io.err('error: the decision service hands out credentials, so callers must present a token: give --token T or set EGRESS_GUARD_TOKEN (at least 16 characters)')
    return 2
  }
  const sinks: Array<AuditSink> = [decisionLogSink(io.out, options.json), ...(options.audit === undefined ? [] : [jsonLinesSink({ path: options.audit })])]
  let guard: Guard
  let stop: () => Promise<void>
  if (options.policy !== undefined) {
    const opened = await openPolicyFile(options.policy, { audit: sinks, env: io.env, ...(options.mode === undefined ? {} : { mode: options.mode }) })
    if (E.isLeft(opened)) {
      for (const message of opened.left.messages) io.err(`error: ${message}`)
      return 1
    }
    guard = opened.right.guard
    stop = opened.right.stop
  } else {
    guard = createGuard({ policy: catalogPolicy(io.env), mode: options.mode ?? DEFAULT_MODE, audit: sinks, env: io.env, log: stderrLogger })
    stop = () => guard.close()
  }
  const service = await startDecisionService({ guard, port: options.port ?? 8181, token })
  if (options.json) io.out(JSON.stringify({ event: 'listening', url: service.url, mode: guard.mode() }))
  else io.out(`egress-guard decision service: ${service.url} (mode ${guard.mode()}; callers present the token)`)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  await service.close()
  await stop()
  return 0
}
