import { homedir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'

import type { ProxyCredentials, ProxyMode } from '../../core/index.js'
import { jsonLinesSink } from '../guard/auditSinks.js'
import { writableAuditFile } from '../guard/policySinks.js'
import type { Guard } from '../guard/createGuard.js'
import type { CertificateAuthority } from '../interception/certificates.js'
import type { AuditSink, Logger, RunningProxy } from '../ports.js'
import type { EngineOptions } from '../proxy/engineOptions.js'
import type { ProxyMetrics } from '../admin/metrics.js'
import type { Io } from './io.js'
import type { CommonOptions, Engine } from './options.js'
import { openGuard } from './openGuard.js'
import { loadOptional } from './optionalLibraries.js'
import { readCaFiles } from './policySource.js'

/** A proxy started from the command line's options. */
export interface GuardedProxy {
  readonly proxy: RunningProxy
  readonly guard: Guard
  readonly mode: () => ProxyMode
  readonly stop: () => Promise<void>
}

/** Where the CA lives: `--config-dir`, `$EGRESS_GUARD_CONFIG_DIR`, or `$XDG_CONFIG_HOME/egress-guard`. */
export const configDirOf = (options: Pick<CommonOptions, 'configDir'>, env: NodeJS.ProcessEnv): string =>
  options.configDir ?? env['EGRESS_GUARD_CONFIG_DIR'] ?? join(env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config'), 'egress-guard')

type StartProxy = (options: EngineOptions) => Promise<RunningProxy>

/** Loads an engine's adapter only when it is used, so no proxy library is needed for another engine. */
const loadEngine = async (engine: Engine): Promise<E.Either<string, StartProxy>> =>
  engine === 'node' ? E.right((await import('../node/nodeProxy.js')).startNodeProxy) : loadOptional<StartProxy>(
    async () => (engine === 'mockttp' ? (await import('../mockttp/mockttpProxy.js')).startMockttpProxy : (await import('../http-mitm-proxy/httpMitmProxy.js')).startHttpMitmProxy),
    `the ${engine} engine needs its proxy library`,
    [engine],
    'choose another with --engine'
  )

/** Starts guard and proxy from `--policy` (watched for changes) or the bundled catalog. */
export const startGuardedProxy = async (
  options: CommonOptions,
  io: Io,
  extra: {
    readonly sinks?: ReadonlyArray<AuditSink>
    readonly log: Logger
    /** The address to listen on (loopback by default). */
    readonly host?: string
    readonly port?: number
    readonly ca?: CertificateAuthority
    /** The `Proxy-Authorization` every client must send (run's private proxy). */
    readonly proxyAuthentication?: ProxyCredentials
    /** The metrics the admin listener serves (docs/spec.md §14): fed by the guard, its records and the engine. */
    readonly metrics?: ProxyMetrics
    /** What every record names as the deciding instance. */
    readonly instance?: string
    /** Every policy, reloads included, must list clients, for this reason. */
    readonly requireClients?: string
  }
): Promise<E.Either<ReadonlyArray<string>, GuardedProxy>> => {
  const start = await loadEngine(options.engine)
  if (E.isLeft(start)) return E.left([start.left])
  const cliCa = await readCaFiles(options.upstreamCa)
  if (E.isLeft(cliCa)) return E.left([cliCa.left])
  // An audit file that cannot be written would leave every decision unrecorded: refuse to start.
  const unwritable = options.audit === undefined ? undefined : await writableAuditFile(options.audit, '--audit')
  if (unwritable !== undefined) return E.left([unwritable])
  const sinks = [...(extra.sinks ?? []), ...(extra.metrics === undefined ? [] : [extra.metrics.sink]), ...(options.audit === undefined ? [] : [jsonLinesSink({ path: options.audit }, { log: extra.log })])]
  const telemetry = extra.metrics === undefined ? {} : { telemetry: extra.metrics.telemetry }
  const opened = await openGuard(options, io.env, { sinks, log: extra.log, live: true, ...telemetry, ...(extra.instance === undefined ? {} : { instance: extra.instance }), ...(extra.requireClients === undefined ? {} : { requireClients: extra.requireClients }) })
  if (E.isLeft(opened)) return opened
  const { guard, upstreamCa: policyCa, stop: stopGuard } = opened.right
  try {
    const proxy = await start.right({
      guard,
      configDir: configDirOf(options, io.env),
      ...(extra.ca === undefined ? {} : { ca: extra.ca }),
      ...(extra.host === undefined ? {} : { host: extra.host }),
      port: extra.port ?? options.port ?? 0,
      upstreamCa: [...policyCa, ...cliCa.right],
      connectTo: options.connectTo,
      ...(extra.proxyAuthentication === undefined ? {} : { proxyAuthentication: extra.proxyAuthentication }),
      ...telemetry,
      log: extra.log
    })
    extra.metrics?.watch(guard, proxy)
    return E.right({
      proxy,
      guard,
      mode: () => guard.mode(),
      stop: async () => {
        // INVARIANT: the guard stops (and its audit records are flushed) whatever the proxy's close does.
        try {
          await proxy.close()
        } finally {
          await stopGuard()
        }
      }
    })
  } catch (error) {
    await stopGuard()
    const code = (error as NodeJS.ErrnoException).code
    return E.left([`cannot start the proxy: ${code === 'EADDRINUSE' ? 'the port is in use; choose another with --port' : code === 'EACCES' ? 'permission denied (the config directory, or a port below 1024)' : (error as Error).message}`])
  }
}
