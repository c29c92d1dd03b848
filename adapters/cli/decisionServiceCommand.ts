import * as E from 'fp-ts/lib/Either.js'

import { startDecisionService } from '../decision-service/decisionService.js'
import { jsonLinesSink } from '../guard/auditSinks.js'
import { stderrLogger, type AuditSink } from '../ports.js'
import { decisionLogSink } from './decisionLog.js'
import type { Io } from './io.js'
import { openGuard } from './openGuard.js'
import type { CommonOptions } from './options.js'

/** `egress-guard decision-service`: the guard over HTTP until SIGINT or SIGTERM. */
export const decisionService = async (options: CommonOptions, io: Io): Promise<number> => {
  const token = options.token ?? io.env['EGRESS_GUARD_TOKEN'] ?? ''
  if (token.length < 16) {
    io.err('error: the decision service hands out credentials, so callers must present a token: give --token T or set EGRESS_GUARD_TOKEN (at least 16 characters)')
    return 2
  }
  const sinks: Array<AuditSink> = [decisionLogSink(io.out, options.json), ...(options.audit === undefined ? [] : [jsonLinesSink({ path: options.audit })])]
  const opened = await openGuard(options, io.env, { sinks, log: stderrLogger, live: true })
  if (E.isLeft(opened)) {
    for (const message of opened.left) io.err(`error: ${message}`)
    return 1
  }
  const { guard, stop } = opened.right
  const service = await startDecisionService({ guard, port: options.port ?? 8181, token })
  if (options.json) io.out(JSON.stringify({ event: 'listening', url: service.url, mode: guard.mode(), enforcement: guard.enforcement() }))
  else io.out(`egress-guard decision service: ${service.url} (mode ${guard.mode()}${guard.enforcement() === 'report' ? ', report only' : ''}; callers present the token)`)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  await service.close()
  await stop()
  return 0
}
