import { readFile } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

import type { Enforcement, ProxyMode } from '../../core/index.js'
import type { PolicyError } from '../config/PolicyFile.js'
import { readPolicyFile } from '../config/readPolicyFile.js'
import { stderrLogger, type AuditSink, type Logger, type Telemetry } from '../ports.js'
import { holdsCertificate } from '../upstream/upstreamTrust.js'
import { resolveClientTokens } from './clientTokens.js'
import { createGuard, type Guard } from './createGuard.js'
import { openPolicySinks } from './policySinks.js'
import { pollModeEndpoint, watchPolicyFile } from './reloadSources.js'

/** A guard running from a policy file, with everything the file asks for started. */
export interface OpenedPolicy {
  readonly guard: Guard
  /** The PEM text of the policy's `upstream.ca` files. */
  readonly upstreamCa: ReadonlyArray<string>
  /** Stops the file watcher and the mode poller, and closes the audit sinks. */
  readonly stop: () => Promise<void>
}

/** Options for opening a policy file. */
export interface OpenPolicyOptions {
  readonly mode?: ProxyMode
  /** Overrides the policy's enforcement (`--report`). */
  readonly enforcement?: Enforcement
  readonly audit?: ReadonlyArray<AuditSink>
  readonly log?: Logger
  readonly env?: NodeJS.ProcessEnv
  /** Reload when the file changes (default true). */
  readonly watch?: boolean
  readonly credentialTimeoutMs?: number
  /** What every record names as the deciding instance (docs/spec.md §14). */
  readonly instance?: string
  readonly telemetry?: Telemetry
}

/**
 * Loads a policy file into a guard that reloads when the file changes, follows the policy's
 * `modeEndpoint` if it has one, and reads its `upstream.ca` files.
 */
export const openPolicyFile = async (path: string, options: OpenPolicyOptions = {}): Promise<E.Either<PolicyError, OpenedPolicy>> => {
  const log = options.log ?? stderrLogger
  const loaded = await readPolicyFile(path)
  if (E.isLeft(loaded)) return loaded
  const upstreamCa: Array<string> = []
  for (const [i, caPath] of (loaded.right.file.upstream?.ca ?? []).entries()) {
    let pem: string
    try {
      pem = await readFile(caPath, 'utf8')
    } catch {
      return E.left({ _tag: 'PolicyError', messages: [`${path}: upstream.ca[${i}]: cannot read \`${caPath}\`; give the path of a PEM certificate`] })
    }
    // A file without a certificate would start a proxy whose every upstream request fails (502).
    if (!holdsCertificate(pem)) return E.left({ _tag: 'PolicyError', messages: [`${path}: upstream.ca[${i}]: \`${caPath}\` holds no PEM certificate; give a file with -----BEGIN CERTIFICATE----- blocks`] })
    upstreamCa.push(pem)
  }
  // Client tokens are filled in before the proxy opens, so no client is ever refused while they load.
  const tokens = await resolveClientTokens(loaded.right.file.clients ?? [], options.env ?? process.env)
  if (E.isLeft(tokens)) return E.left({ _tag: 'PolicyError', messages: tokens.left.map((m) => `${path}: ${m}`) })
  // The policy's own sinks (docs/spec.md §14) go beside the command's; read once, at the start.
  const policySinks = await openPolicySinks(loaded.right.file.audit ?? [], options.env ?? process.env, log, path)
  if (E.isLeft(policySinks)) return E.left({ _tag: 'PolicyError', messages: policySinks.left })
  const audit = [...(options.audit ?? []), ...policySinks.right]
  const guard = createGuard({
    policy: loaded.right,
    clientTokens: tokens.right,
    loadPolicy: () => readPolicyFile(path, { offThread: true }),
    log,
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.enforcement === undefined ? {} : { enforcement: options.enforcement }),
    audit,
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.credentialTimeoutMs === undefined ? {} : { credentialTimeoutMs: options.credentialTimeoutMs }),
    ...(options.instance === undefined ? {} : { instance: options.instance }),
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry })
  })
  const watcher = options.watch === false ? undefined : watchPolicyFile(path, guard, { log })
  const endpoint = loaded.right.file.modeEndpoint
  const poller = endpoint === undefined ? undefined : pollModeEndpoint(endpoint.url, guard, { log, ...(endpoint.intervalMs === undefined ? {} : { intervalMs: endpoint.intervalMs }) })
  return E.right({
    guard,
    upstreamCa,
    stop: async () => {
      watcher?.stop()
      poller?.stop()
      await guard.close()
    }
  })
}
