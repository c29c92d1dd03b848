import * as E from 'fp-ts/lib/Either.js'

import { createGuard, type Guard } from '../guard/createGuard.js'
import { isPolicyUrl } from '../config/policyUrl.js'
import { fileSource, openPolicy, urlSource } from '../guard/openPolicyFile.js'
import type { AuditSink, Logger, Telemetry } from '../ports.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'
import { loadPolicy } from './policySource.js'

/** A command's guard, with the upstream CAs its policy names and how to stop it. */
export interface OpenedGuard {
  readonly guard: Guard
  readonly upstreamCa: ReadonlyArray<string>
  /** Stops watching and polling, then flushes the audit sinks. */
  readonly stop: () => Promise<void>
}

/** What a command adds to the guard. */
export interface OpenGuardOptions {
  readonly sinks?: ReadonlyArray<AuditSink>
  readonly log?: Logger
  /**
   * Serving: a policy file is watched and its mode endpoint polled, and its upstream CAs read.
   * A dry run (`explain`, `check`) reads the policy once and starts nothing.
   */
  readonly live: boolean
  /** What every record names as the deciding instance (docs/spec.md §14). */
  readonly instance?: string
  /** Where decision latencies go (the admin listener's metrics). */
  readonly telemetry?: Telemetry
  /** Every policy, reloads included, must list clients, for this reason (`serve --listen` beyond loopback). */
  readonly requireClients?: string
}

/**
 * The one way a command opens its guard: `--policy FILE`, or the bundled catalog with keys from
 * the environment; `--mode` over the policy's mode, the policy's over the default; `--report`
 * over the policy's enforcement. Errors are
 * the messages to print.
 */
export const openGuard = async (options: Pick<CommonOptions, 'policy' | 'mode' | 'enforcement'> & Partial<Pick<CommonOptions, 'policyPollSeconds'>>, env: NodeJS.ProcessEnv, extra: OpenGuardOptions): Promise<E.Either<ReadonlyArray<string>, OpenedGuard>> => {
  const mode = { ...(options.mode === undefined ? {} : { mode: options.mode }), ...(options.enforcement === undefined ? {} : { enforcement: options.enforcement }) }
  const log = extra.log === undefined ? {} : { log: extra.log }
  const audit = extra.sinks === undefined ? {} : { audit: extra.sinks }
  const meters = {
    ...(extra.instance === undefined ? {} : { instance: extra.instance }),
    ...(extra.telemetry === undefined ? {} : { telemetry: extra.telemetry }),
    ...(extra.requireClients === undefined ? {} : { requireClients: extra.requireClients })
  }
  if (extra.live && options.policy !== undefined) {
    const source = isPolicyUrl(options.policy) ? urlSource(options.policy, (options.policyPollSeconds ?? 30) * 1000) : fileSource(options.policy)
    const opened = await openPolicy(source, { ...audit, ...log, env, ...mode, ...meters })
    return E.isLeft(opened) ? E.left(opened.left.messages) : E.right(opened.right)
  }
  const loaded = await loadPolicy(options, env)
  if (E.isLeft(loaded)) return loaded
  const guard = createGuard({ policy: loaded.right, ...mode, ...audit, env, ...log, ...meters })
  return E.right({ guard, upstreamCa: [], stop: () => guard.close() })
}

/** `--client NAME` checked against the policy's clients: the name, undefined without the option, or false after saying what is wrong. */
export const knownClient = (guard: Guard, client: string | undefined, io: Pick<Io, 'err'>): string | undefined | false => {
  if (client === undefined) return undefined
  const names = guard.clients()
  if (names.includes(client)) return client
  io.err(`error: --client \`${client.slice(0, 64)}\`: ${names.length === 0 ? 'the policy lists no clients' : `expected one of ${names.join(', ')}`}`)
  return false
}
