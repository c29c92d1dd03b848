import * as E from 'fp-ts/lib/Either.js'

import { stderrLogger } from '../ports.js'
import { decisionLogSink } from './decisionLog.js'
import { startGuardedProxy } from './guardedProxy.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'

/** `egress-guard serve`: runs the proxy until SIGINT or SIGTERM, logging each decision. */
export const serve = async (options: CommonOptions, io: Io): Promise<number> => {
  if (options.positionals.length > 0) {
    io.err(`error: serve takes no arguments, got \`${options.positionals.join(' ')}\``)
    return 2
  }
  const started = await startGuardedProxy(options, io, { sinks: [decisionLogSink(io.out, options.json)], log: stderrLogger, port: options.port ?? 8080 })
  if (E.isLeft(started)) {
    for (const message of started.left) io.err(`error: ${message}`)
    return 1
  }
  const { proxy, mode, stop } = started.right
  if (options.json) io.out(JSON.stringify({ event: 'listening', proxy: proxy.url, caCert: proxy.caCertPath, mode: mode(), policy: options.policy ?? null }))
  else {
    io.out(`egress-guard proxy: ${proxy.url}`)
    io.out(`CA certificate:    ${proxy.caCertPath}`)
    io.out(`mode:              ${mode()} (${options.policy ?? 'bundled catalog'})`)
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'))
    process.once('SIGTERM', () => resolve('SIGTERM'))
  })
  await stop()
  if (options.json) io.out(JSON.stringify({ event: 'stopped', signal }))
  else io.out(`stopped (${signal}); audit records flushed`)
  return 0
}
