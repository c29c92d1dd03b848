import * as E from 'fp-ts/lib/Either.js'

import { redactUrl } from '../../core/index.js'
import { isPolicyUrl } from '../config/policyUrl.js'
import { loadOrCreateCa } from '../interception/certificates.js'
import { stderrLogger } from '../ports.js'
import { decisionLogSink } from './decisionLog.js'
import { configDirOf, startGuardedProxy } from './guardedProxy.js'
import type { Io } from './io.js'
import { openGuard } from './openGuard.js'
import type { CommonOptions } from './options.js'
import { placeholdersFor, readPlaceholderFile, writePlaceholderFile } from './placeholders.js'
import type { Guard } from '../guard/createGuard.js'
import { acceptFromPrimary, answerPrimary, isServeWorker, reportToPrimary, startWorkers, stopRequested, workerCa } from './workers.js'
import { localBackend, poolBackend, workerAnswers } from '../admin/adminBackends.js'
import { isLoopbackAddress, type RunningAdmin } from '../admin/adminServer.js'
import { proxyMetrics } from '../admin/metrics.js'
import { INSTANCE_VARIABLE, instanceId } from '../guard/instance.js'
import { openAdmin } from './serveAdmin.js'

const DEFAULT_PORT = 8080
/** Where `serve` listens unless `--listen` says otherwise: this machine only. */
const LOOPBACK = '127.0.0.1'

/**
 * `--listen` off loopback needs a policy that lists clients: whoever reaches an open proxy uses
 * the credentials it injects. The reason, when it does; undefined on loopback.
 */
const clientsRequired = (options: CommonOptions): string | undefined =>
  options.listen === undefined || isLoopbackAddress(options.listen)
    ? undefined
    : `--listen ${options.listen}: the policy lists no clients, so anyone who reaches this address could use the credentials it injects; list clients with tokens (docs/policy.md, Clients) or listen on 127.0.0.1`

const required = (options: CommonOptions): { readonly requireClients?: string } => {
  const reason = clientsRequired(options)
  return reason === undefined ? {} : { requireClients: reason }
}

/** The refusal to serve an open proxy beyond loopback (checked at the start; reloads are held to it by the guard). */
const openProxyRefused = (options: CommonOptions, guard: Guard): string | undefined => (guard.clients().length > 0 ? undefined : clientsRequired(options))

const signalled = (): Promise<NodeJS.Signals> =>
  new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'))
    process.once('SIGTERM', () => resolve('SIGTERM'))
  })

/** The policy as the log shows it: a URL without user info or query (where tokens live). */
const shownPolicy = (options: CommonOptions): string | undefined => (options.policy !== undefined && isPolicyUrl(options.policy) ? redactUrl(options.policy) : options.policy)

const announce = (options: CommonOptions, io: Io, where: { readonly url: string; readonly caCertPath: string }, mode: string, enforcement: string, extra: { readonly admin: RunningAdmin | undefined; readonly instance: string }): void => {
  const workers = options.workers > 1 ? options.workers : undefined
  const admin = extra.admin === undefined ? {} : { admin: extra.admin.url }
  if (options.json) io.out(JSON.stringify({ event: 'listening', proxy: where.url, caCert: where.caCertPath, mode, enforcement, policy: shownPolicy(options) ?? null, instance: extra.instance, ...admin, ...(workers === undefined ? {} : { workers }) }))
  else {
    io.out(`egress-guard proxy: ${where.url}${workers === undefined ? '' : ` (${workers} workers)`}`)
    io.out(`CA certificate:    ${where.caCertPath}`)
    if (extra.admin !== undefined) io.out(`admin:             ${extra.admin.url} (/metrics, /healthz, /readyz, /proxy/mode)`)
    if (options.instance !== undefined) io.out(`instance:          ${extra.instance}`)
    // Report-only is said where the mode is: nothing this proxy denies is refused.
    io.out(`mode:              ${mode}${enforcement === 'report' ? ', report only: denials are passed and recorded as proxy_would_deny' : ''} (${shownPolicy(options) ?? 'bundled catalog'})`)
  }
}

/**
 * `--placeholders FILE`: fresh placeholders for the routed providers' variables, written to FILE
 * (NAME=value lines, mode 0600) for clients to hold instead of real keys, and handed to the guard.
 * A worker reads the file its primary wrote, so every worker knows the same ones.
 */
const handOutPlaceholders = async (options: CommonOptions, io: Io, guard: Guard, write: boolean): Promise<string | undefined> => {
  if (options.placeholders === undefined) return undefined
  if (!write) {
    const read = await readPlaceholderFile(options.placeholders)
    if (E.isLeft(read)) return read.left
    guard.handOut(read.right)
    return undefined
  }
  const made = placeholdersFor(guard, io.env)
  try {
    await writePlaceholderFile(options.placeholders, made)
  } catch (error) {
    return `--placeholders \`${options.placeholders}\` cannot be written (${(error as NodeJS.ErrnoException).code ?? 'error'}); choose a writable path`
  }
  guard.handOut(made)
  return undefined
}

/** The primary of `serve --workers N` writes the placeholders its workers read, from a guard of its own that serves nothing. */
const writePlaceholdersForWorkers = async (options: CommonOptions, io: Io): Promise<string | undefined> => {
  if (options.placeholders === undefined) return undefined
  const opened = await openGuard(options, io.env, { live: false })
  if (E.isLeft(opened)) return opened.left.join('\n')
  try {
    return await handOutPlaceholders(options, io, opened.right.guard, true)
  } finally {
    await opened.right.stop()
  }
}

const announceStop = (options: CommonOptions, io: Io, signal: NodeJS.Signals): void => {
  if (options.json) io.out(JSON.stringify({ event: 'stopped', signal }))
  else io.out(`stopped (${signal}); audit records flushed`)
}

/** One worker of `serve --workers N`: a whole guarded proxy, serving the connections the primary hands it. */
const serveAsWorker = async (options: CommonOptions, io: Io): Promise<number> => {
  const ca = workerCa(await loadOrCreateCa(configDirOf(options, io.env)))
  const metrics = options.admin === undefined ? undefined : proxyMetrics()
  // Its own port is ephemeral and loopback; the clients' connections come from the primary.
  const started = await startGuardedProxy(options, io, { sinks: [decisionLogSink(io.out, options.json)], log: stderrLogger, port: 0, ca, instance: instanceId(io.env), ...required(options), ...(metrics === undefined ? {} : { metrics }) })
  if (E.isLeft(started)) {
    reportToPrimary({ type: 'egress-guard:failed', messages: started.left })
    return 1
  }
  const unread = openProxyRefused(options, started.right.guard) ?? (await handOutPlaceholders(options, io, started.right.guard, false))
  if (unread !== undefined) {
    reportToPrimary({ type: 'egress-guard:failed', messages: [unread] })
    await started.right.stop()
    return 1
  }
  if (metrics !== undefined) answerPrimary(workerAnswers({ guard: started.right.guard, proxy: started.right.proxy, metrics }))
  acceptFromPrimary(started.right.proxy.accept)
  reportToPrimary({ type: 'egress-guard:ready', caCertPath: started.right.proxy.caCertPath, mode: started.right.mode(), enforcement: started.right.guard.enforcement() })
  await Promise.race([stopRequested(), signalled()])
  await started.right.stop()
  return 0
}

/** The primary of `serve --workers N`: owns the port and the CA, forks the workers, and stops them on a signal. */
const serveWithWorkers = async (options: CommonOptions, io: Io): Promise<number> => {
  const unwritten = await writePlaceholdersForWorkers(options, io)
  if (unwritten !== undefined) {
    io.err(`error: ${unwritten}`)
    return 1
  }
  const instance = options.instance ?? instanceId(io.env)
  let backend: ReturnType<typeof poolBackend> | undefined
  const pool = await startWorkers({
    count: options.workers,
    host: options.listen ?? LOOPBACK,
    port: options.port ?? DEFAULT_PORT,
    configDir: configDirOf(options, io.env),
    warn: (message) => stderrLogger('warn', message),
    // Every worker's records name this one instance.
    env: { [INSTANCE_VARIABLE]: instance },
    welcome: () => {
      const mode = backend?.modeSet()
      return mode === undefined ? [] : [{ ask: 'set-mode', mode }]
    }
  })
  backend = poolBackend((question) => pool.ask(question))
  const stopping = signalled()
  const ready = await Promise.race([pool.ready, stopping.then(() => undefined)])
  if (ready === undefined || ready._tag === 'Failed') {
    for (const message of ready?._tag === 'Failed' ? ready.messages : []) io.err(`error: ${message}`)
    await pool.stop()
    return ready === undefined ? 0 : 1
  }
  const admin = await openAdmin(options, io.env, backend)
  if (E.isLeft(admin)) {
    io.err(`error: ${admin.left}`)
    await pool.stop()
    return 1
  }
  announce(options, io, ready, ready.mode, ready.enforcement, { admin: admin.right, instance })
  const signal = await stopping
  await admin.right?.close()
  await pool.stop()
  announceStop(options, io, signal)
  return 0
}

/** `egress-guard serve`: runs the proxy until SIGINT or SIGTERM, logging each decision. */
export const serve = async (options: CommonOptions, io: Io): Promise<number> => {
  if (options.positionals.length > 0) {
    io.err(`error: serve takes no arguments, got \`${options.positionals.join(' ')}\``)
    return 2
  }
  if (isServeWorker(io.env)) return serveAsWorker(options, io)
  if (options.workers > 1) return serveWithWorkers(options, io)
  const instance = options.instance ?? instanceId(io.env)
  const metrics = options.admin === undefined ? undefined : proxyMetrics()
  const started = await startGuardedProxy(options, io, { sinks: [decisionLogSink(io.out, options.json)], log: stderrLogger, host: options.listen ?? LOOPBACK, port: options.port ?? DEFAULT_PORT, instance, ...required(options), ...(metrics === undefined ? {} : { metrics }) })
  if (E.isLeft(started)) {
    for (const message of started.left) io.err(`error: ${message}`)
    return 1
  }
  const { proxy, mode, guard, stop } = started.right
  const unwritten = openProxyRefused(options, guard) ?? (await handOutPlaceholders(options, io, guard, true))
  const admin = unwritten !== undefined || metrics === undefined ? E.right(undefined) : await openAdmin(options, io.env, localBackend({ guard, proxy, metrics }))
  const failed = unwritten ?? (E.isLeft(admin) ? admin.left : undefined)
  if (failed !== undefined || E.isLeft(admin)) {
    io.err(`error: ${failed}`)
    await stop()
    return 1
  }
  announce(options, io, proxy, mode(), guard.enforcement(), { admin: admin.right, instance })
  const signal = await signalled()
  await admin.right?.close()
  await stop()
  announceStop(options, io, signal)
  return 0
}
