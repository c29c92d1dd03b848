import { readFile } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

import { redactUrl, type Enforcement, type ProxyMode } from '../../core/index.js'
import { parsePolicyText, parsePolicyTextOffThread, type LoadedPolicy, type PolicyError } from '../config/PolicyFile.js'
import { fetchPolicy } from '../config/policyUrl.js'
import { readPolicyFile } from '../config/readPolicyFile.js'
import { stderrLogger, type AuditSink, type Logger, type Telemetry } from '../ports.js'
import { holdsCertificate } from '../upstream/upstreamTrust.js'
import { resolveClientTokens } from './clientTokens.js'
import { createGuard, type Guard } from './createGuard.js'
import { openPolicySinks } from './policySinks.js'
import { pollModeEndpoint, watchPolicyFile, type Stoppable } from './reloadSources.js'

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
  /** Every policy must list clients, for this reason (createGuard's `requireClients`). */
  readonly requireClients?: string
}

/** Where a serving guard's policy comes from, and how changes to it are followed. */
export interface PolicySource {
  /** How messages name it (a path, a URL without its secrets). */
  readonly origin: string
  /** The first load, before anything is served. */
  readonly load: () => Promise<E.Either<PolicyError, LoadedPolicy>>
  /** A later load, for the guard's `reload()`. */
  readonly reload: () => Promise<E.Either<PolicyError, LoadedPolicy>>
  /** Reloads the guard when the policy changes. */
  readonly follow: (guard: Guard, log: Logger) => Stoppable
}

/** A policy file, watched for changes (parsed off the main thread on reload). */
export const fileSource = (path: string): PolicySource => ({
  origin: path,
  load: () => readPolicyFile(path),
  reload: () => readPolicyFile(path, { offThread: true }),
  follow: (guard, log) => watchPolicyFile(path, guard, { log })
})

/**
 * A policy at an https URL (docs/spec.md §14), polled every `intervalMs` with the ETag of the last
 * one: a change reloads the guard; a failed fetch, or a policy that does not decode, keeps the
 * last good policy, and the log says so (once per kind of failure).
 */
export const urlSource = (url: string, intervalMs: number, timeoutMs?: number): PolicySource => {
  let latest: { readonly text: string; readonly etag: string | undefined } | undefined
  const origin = redactUrl(url)
  const parsed = async (offThread: boolean): Promise<E.Either<PolicyError, LoadedPolicy>> =>
    latest === undefined ? E.left({ _tag: 'PolicyError', messages: [`${origin}: no policy fetched yet`] }) : offThread ? parsePolicyTextOffThread(latest.text, origin) : parsePolicyText(latest.text, origin)
  return {
    origin,
    load: async () => {
      const fetched = await fetchPolicy(url, undefined, timeoutMs)
      if (fetched._tag !== 'Fetched') return E.left({ _tag: 'PolicyError', messages: [`--policy ${fetched._tag === 'Failed' ? fetched.message : `${origin} answered 304 to a request without an ETag`}; check the URL and that this host can reach it`] })
      latest = fetched
      return parsed(false)
    },
    reload: () => parsed(true),
    follow: (guard, log) => {
      let complaint: string | undefined
      const poll = async (): Promise<void> => {
        const fetched = await fetchPolicy(url, latest?.etag, timeoutMs)
        if (fetched._tag === 'Failed') {
          if (fetched.message !== complaint) log('warn', `policy ${fetched.message}; keeping the last good policy`)
          complaint = fetched.message
          return
        }
        if (complaint !== undefined) log('info', `policy ${origin} can be fetched again`)
        complaint = undefined
        if (fetched._tag === 'NotModified' || fetched.text === latest?.text) return
        latest = fetched
        await guard.reload()
      }
      let polling = false
      const timer = setInterval(() => {
        if (polling) return
        polling = true
        void poll().finally(() => (polling = false))
      }, intervalMs)
      timer.unref()
      return { stop: () => clearInterval(timer) }
    }
  }
}

/**
 * Loads a policy file into a guard that reloads when the file changes, follows the policy's
 * `modeEndpoint` if it has one, and reads its `upstream.ca` files.
 */
export const openPolicyFile = (path: string, options: OpenPolicyOptions = {}): Promise<E.Either<PolicyError, OpenedPolicy>> => openPolicy(fileSource(path), options)

/** The same as `openPolicyFile`, for any source of the policy (a file, an https URL). */
export const openPolicy = async (source: PolicySource, options: OpenPolicyOptions = {}): Promise<E.Either<PolicyError, OpenedPolicy>> => {
  const log = options.log ?? stderrLogger
  const path = source.origin
  const loaded = await source.load()
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
    loadPolicy: source.reload,
    log,
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.enforcement === undefined ? {} : { enforcement: options.enforcement }),
    audit,
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.credentialTimeoutMs === undefined ? {} : { credentialTimeoutMs: options.credentialTimeoutMs }),
    ...(options.instance === undefined ? {} : { instance: options.instance }),
    ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    ...(options.requireClients === undefined ? {} : { requireClients: options.requireClients })
  })
  const watcher = options.watch === false ? undefined : source.follow(guard, log)
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
