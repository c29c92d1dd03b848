import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'

import * as E from 'fp-ts/lib/Either.js'

import {
  BODY_SCAN_START,
  carriedSecret,
  decide,
  decideTunnel,
  denyExfiltration,
  denyRateLimited,
  denyTunnelRateLimited,
  denyTunnelExfiltration,
  enforced,
  enforcedTunnel,
  explainRoute,
  failClosed,
  refuseUnauthenticated,
  resolveRoute,
  scanBodyChunk,
  withoutSecrets,
  type AuditRecord,
  type CarriedText,
  type CredentialOutcome,
  type Enforcement,
  type RecordedRequest,
  type ProxyMode,
  type RequestFacts,
  type RouteResolution
} from '../../core/index.js'
import { shownHost, shownPath } from '../../core/Decision.js'
import { INSPECTED_BODY_BYTES, REDACTED } from '../../core/Secrets.js'
import type { LoadedPolicy, PolicyError } from '../config/PolicyFile.js'
import { NO_TELEMETRY, systemClock, stderrLogger, type AuditSink, type Clock, type CredentialSource, type Logger, type Telemetry } from '../ports.js'
import { fanOut } from './auditSinks.js'
import { createCredentialCache } from './CredentialCache.js'
import { authenticatedClient } from '../proxy/proxyAuthentication.js'
import { resolveClientTokens } from './clientTokens.js'
import { policyCredentialSource } from './credentialSources.js'
import { instanceId } from './instance.js'
import { guardMeters } from './guardMeters.js'
import { secretBook, type HandedOut, type SecretBook } from './secretBook.js'
import { snapshotOf, viewOf, denyTextFor, type Snapshot, type View } from './snapshot.js'
import type { Authentication, BodyCheck, Guard, ReloadResult, TunnelVerdict, Verdict } from './Guard.js'

export type { Authentication, BodyCheck, Guard, GuardStats, ReloadResult, TunnelVerdict, Verdict } from './Guard.js'

/** What the guard is built from. */
export interface GuardOptions {
  readonly policy: LoadedPolicy
  /** Where credentials come from; by default each connection's `credentials` reference. */
  readonly credentials?: CredentialSource
  readonly audit?: AuditSink | ReadonlyArray<AuditSink>
  readonly clock?: Clock
  /** Overrides the policy's mode (as `--mode` does). */
  readonly mode?: ProxyMode
  /** Overrides the policy's enforcement (as `--report` does). */
  readonly enforcement?: Enforcement
  /** The policy's client tokens, filled in (resolveClientTokens); a client without one can never authenticate. */
  readonly clientTokens?: ReadonlyMap<string, string>
  readonly refreshWindowMs?: number
  readonly credentialTimeoutMs?: number
  readonly log?: Logger
  /** The environment `${env:NAME}` references read (default `process.env`). */
  readonly env?: NodeJS.ProcessEnv
  /** Loads the policy again for `reload()`; without it, `reload()` rebuilds from the current policy. */
  readonly loadPolicy?: () => Promise<E.Either<PolicyError, LoadedPolicy>>
  /** What every record names as the instance that decided (docs/spec.md §14); by default this host's name and process id. */
  readonly instance?: string
  /** Where decision latencies go (the admin listener's metrics). */
  readonly telemetry?: Telemetry
  /** Set (to the reason) when every policy must list clients (`serve --listen` beyond loopback): a reload to a policy without them keeps the last good one. */
  readonly requireClients?: string
}

/** The policy lists no clients: anyone who reaches the proxy may use it. */
export const ANONYMOUS: Authentication = { _tag: 'Anonymous' }
/** No client authenticated: 407. */
export const REFUSED: Authentication = { _tag: 'Refused' }

/** A request as records carry it, to be decided again (docs/spec.md §12): normalised host, path without its query. */
const recorded = (request: Partial<RequestFacts>): RecordedRequest => ({
  scheme: typeof request.scheme === 'string' ? request.scheme : '',
  host: shownHost(request.host),
  port: typeof request.port === 'number' ? request.port : 0,
  method: typeof request.method === 'string' ? request.method : '',
  path: typeof request.path === 'string' ? shownPath(request.path) : '/'
})

/** Builds a guard: `evaluate` is facts → resolveRoute → credentials → decide → audit, from core functions only. */
export const createGuard = (options: GuardOptions): Guard => {
  const clock = options.clock ?? systemClock
  const log = options.log ?? stderrLogger
  const sinks = options.audit === undefined ? [] : Array.isArray(options.audit) ? options.audit : [options.audit as AuditSink]
  const audit = fanOut(sinks)
  let modeOverride = options.mode
  let snapshot = snapshotOf(options.policy, modeOverride, options.enforcement, options.clientTokens ?? new Map())
  if (snapshot.hasClients && snapshot.tokens.size < snapshot.clients.size) log('error', 'the policy lists clients whose tokens were not given: they can never authenticate (use openPolicyFile, which resolves them)')
  let source = options.credentials ?? policyCredentialSource(options.policy.file, options.env)
  const cacheOptions = {
    clock,
    ...(options.refreshWindowMs === undefined ? {} : { refreshWindowMs: options.refreshWindowMs }),
    ...(options.credentialTimeoutMs === undefined ? {} : { timeoutMs: options.credentialTimeoutMs })
  }
  let cache = createCredentialCache({ source, ...cacheOptions })
  const env = options.env ?? process.env
  const instance = options.instance ?? instanceId()
  const telemetry = options.telemetry ?? NO_TELEMETRY
  const meters = guardMeters(options.policy.file.limits)
  let handedOut: ReadonlyArray<HandedOut> = []
  let book: SecretBook = secretBook(options.policy.file, handedOut, env)

  // Every record names its client, or null (docs/spec.md §9), and the mode it was decided under.
  const record = (records: ReadonlyArray<AuditRecord>, current: Snapshot, mode: ProxyMode, decisionId: string, client: string | undefined, request: RecordedRequest | null): void => {
    if (records.length === 0) return
    const time = clock.now().toISOString()
    const { enforcement, policyHash } = current
    const who = client ?? null
    for (const r of records) {
      audit.write({ time, instance, mode, enforcement, client: who, decisionId, policyHash, request, event: r.event, source: r.source, provider: r.provider, connection: r.connection, metadata: r.metadata })
    }
  }

  // Counts policy changes, after which an open tunnel's credentials are checked again (its client's
  // token may have been revoked, or clients added).
  let generation = 0
  const swap = (next: Snapshot, policyChanged: boolean): void => {
    // INVARIANT: one assignment; in-flight decisions keep the snapshot they started with.
    snapshot = next
    if (policyChanged) generation++
    if (policyChanged && options.credentials === undefined) source = policyCredentialSource(next.policy.file, options.env)
    if (policyChanged) book = secretBook(next.policy.file, handedOut, env)
    if (policyChanged) meters.follow(next.policy.file.limits)
    cache = createCredentialCache({ source, ...cacheOptions }) // nothing cached survives a change
  }

  // A failure is not a policy's verdict: report-only enforcement does not pass what could not be judged.
  const failClosedVerdict = (request: Partial<RequestFacts> | undefined, current: Snapshot): Verdict => {
    const client = typeof request?.client === 'string' ? request.client : undefined
    const { mode } = viewOf(current, client)
    const decisionId = randomUUID()
    const decided = failClosed({ mode, request })
    record(decided.audit, current, mode, decisionId, client, recorded(request ?? {}))
    return { ...decided, decisionId, mode, enforcement: current.enforcement }
  }

  // The tripwire first (docs/spec.md §13): a known secret bound anywhere but a route of a provider
  // it belongs to is denied whatever the mode and enforcement; then the policy's decision.
  const conclude = (current: Snapshot, view: View, facts: RequestFacts, resolution: RouteResolution, credentials: CredentialOutcome | undefined, carried: ReadonlyArray<CarriedText> | undefined): Verdict => {
    const decisionId = randomUUID()
    const provider = resolution._tag === 'Matched' ? resolution.provider : undefined
    const secrets = book
    // Learned first: the credentials may show the provider owns a secret the book knew as another's.
    if (provider !== undefined) secrets.learn(provider, credentials)
    const inspecting = secrets.any()
    const found = carried === undefined || !inspecting ? undefined : carriedSecret(secrets.foreignTo(provider), carried)
    // INVARIANT: records show the request without any secret it carries (its own provider's too).
    const request = inspecting ? withoutSecrets(secrets.foreignTo(undefined), facts) : facts
    const decided = enforced(
      current.enforcement,
      found !== undefined
        ? denyExfiltration(found, request)
        : decide({
            mode: view.mode,
            request,
            resolution,
            ...(credentials === undefined ? {} : { credentials }),
            denyText: denyTextFor(current, provider)
          })
    )
    record(decided.audit, current, view.mode, decisionId, request.client, recorded(request))
    const verdict: Verdict = { decision: decided.decision, audit: decided.audit, decisionId, mode: view.mode, enforcement: current.enforcement }
    if (decided.decision._tag === 'Deny' || !inspecting) return verdict
    const body = bodyCheck(current, view, request, secrets, provider, decisionId)
    return decided.decision._tag === 'Inject' && provider !== undefined ? { ...verdict, secrets: secrets.forInjection(provider, decided.decision.headers), body } : { ...verdict, body }
  }

  // A request that goes on has its body searched as it streams; a secret it may not carry stops
  // it, recorded under the same decision id.
  const bodyCheck = (current: Snapshot, view: View, request: RequestFacts, secrets: SecretBook, provider: string | undefined, decisionId: string): BodyCheck => {
    const matcher = secrets.foreignTo(provider)
    let scan = BODY_SCAN_START
    return {
      next: (chunk, last) => {
        const step = scanBodyChunk(matcher, scan, chunk, last)
        if (step._tag === 'Go') {
          scan = step.scan
          return { _tag: 'Go', send: step.send }
        }
        const stopped = denyExfiltration(step.carried, request)
        record(stopped.audit, current, view.mode, decisionId, request.client, recorded(request))
        return { _tag: 'Stopped', verdict: { ...stopped, decisionId, mode: view.mode, enforcement: current.enforcement } }
      },
      done: () => scan.seen >= INSPECTED_BODY_BYTES && scan.held === ''
    }
  }

  const failed = (request: RequestFacts, current: Snapshot): Verdict => {
    log('error', 'a decision failed inside the guard; answered fail-closed')
    return failClosedVerdict(request, current)
  }

  // A rate limit (docs/spec.md §14), checked before any credential is resolved: the request's
  // tokens are taken (whatever its decision), and a request over a limit is refused 429, recorded
  // without any secret it carries. One the tripwire stops (`trips`, asked only then) goes on to be
  // decided, and recorded, as what it is.
  const limited = (current: Snapshot, view: View, request: RequestFacts, trips: () => boolean): Verdict | undefined => {
    const wait = meters.take(request.client, request.host, () => clock.now().getTime())
    if (wait === undefined || trips()) return undefined
    const decisionId = randomUUID()
    const shown = book.any() ? withoutSecrets(book.foreignTo(undefined), request) : request
    const decided = denyRateLimited(shown, wait)
    record(decided.audit, current, view.mode, decisionId, request.client, recorded(shown))
    return { ...decided, decisionId, mode: view.mode, enforcement: current.enforcement }
  }

  // The tripwire's question for a request over a limit, before its credentials (conclude asks it
  // again after learning them): does it carry a secret that does not belong where it resolved?
  const tripsOn = (resolution: RouteResolution, carried: ReadonlyArray<CarriedText> | undefined) => (): boolean =>
    carried !== undefined && book.any() && carriedSecret(book.foreignTo(resolution._tag === 'Matched' ? resolution.provider : undefined), carried) !== undefined

  const timed = (started: number, verdict: Verdict): Verdict => {
    telemetry.decided((performance.now() - started) / 1000)
    return verdict
  }

  const evaluateNow = (request: RequestFacts, carried?: ReadonlyArray<CarriedText>): Verdict | undefined => {
    const started = performance.now()
    const current = snapshot
    try {
      const view = viewOf(current, request.client)
      const resolution = resolveRoute(view.table, request)
      const cached = resolution._tag === 'Matched' ? cache.peek(resolution.provider, resolution.connection) : undefined
      // INVARIANT: a request is counted once: not here when `evaluate` must be awaited instead.
      if (resolution._tag === 'Matched' && cached === undefined) return undefined
      if (cached !== undefined) meters.cacheHit()
      return timed(started, limited(current, view, request, tripsOn(resolution, carried)) ?? conclude(current, view, request, resolution, cached, carried))
    } catch {
      return failed(request, current)
    }
  }

  const evaluate = async (request: RequestFacts, carried?: ReadonlyArray<CarriedText>): Promise<Verdict> => {
    const started = performance.now()
    const current = snapshot
    const credentialCache = cache
    try {
      const view = viewOf(current, request.client)
      const resolution = resolveRoute(view.table, request)
      const over = limited(current, view, request, tripsOn(resolution, carried))
      if (over !== undefined) return timed(started, over)
      if (resolution._tag !== 'Matched') return timed(started, conclude(current, view, request, resolution, undefined, carried))
      // Resolved first when not cached (this route's first request, or they expired).
      const outcome = credentialCache.peek(resolution.provider, resolution.connection) ?? (await resolveCounted(credentialCache, resolution.provider, resolution.connection))
      return timed(started, conclude(current, view, request, resolution, outcome, carried))
    } catch {
      return failed(request, current)
    }
  }

  const resolveCounted = async (credentialCache: typeof cache, provider: string, connection: string): Promise<CredentialOutcome> => {
    const outcome = await credentialCache.get(provider, connection)
    meters.resolved(outcome)
    return outcome
  }

  // A destination's name that carries a known secret (`<key>.evil.test`), found before the name is looked up.
  const hostCarries = (host: string) => (book.any() ? carriedSecret(book.foreignTo(undefined), [{ location: 'host', text: host, caseless: true }]) : undefined)

  const evaluateTunnel = (host: string, port: number, client?: string): TunnelVerdict => {
    const current = snapshot
    const { mode, table } = viewOf(current, client)
    const decisionId = randomUUID()
    const inspectAll = current.policy.file.inspect === 'all'
    const carried = hostCarries(host)
    const judged = carried !== undefined ? denyTunnelExfiltration(carried) : enforcedTunnel(current.enforcement, decideTunnel({ mode, table, host, port, inspectAll }), inspectAll)
    // A tunnel counts as one request; an intercepted one does not, its requests do.
    const wait = judged.decision._tag === 'Intercept' ? undefined : meters.take(client, host, () => clock.now().getTime())
    const decided = wait !== undefined && judged.decision._tag === 'Tunnel' ? denyTunnelRateLimited(host, wait) : judged
    if (decided.decision._tag === 'Intercept') meters.intercepted(host)
    record(decided.audit, current, mode, decisionId, client, { scheme: 'https', host: carried === undefined ? shownHost(host) : REDACTED, port, method: 'CONNECT' })
    return { ...decided, decisionId, mode, enforcement: current.enforcement }
  }

  const screenHost = (host: string, port: number, method: string, client?: string): Verdict | undefined => {
    const carried = hostCarries(host)
    if (carried === undefined) return undefined
    const current = snapshot
    const { mode } = viewOf(current, client)
    const decisionId = randomUUID()
    const decided = denyExfiltration(carried, { scheme: 'http', host: REDACTED, port, method, path: '/' })
    record(decided.audit, current, mode, decisionId, client, { scheme: 'http', host: REDACTED, port, method, path: '/' })
    return { ...decided, decisionId, mode, enforcement: current.enforcement }
  }

  const authenticate = (proxyAuthorization: string | ReadonlyArray<string> | undefined): Authentication => {
    const current = snapshot
    if (!current.hasClients) return ANONYMOUS
    const name = authenticatedClient(proxyAuthorization, current.digests)
    return name === undefined ? REFUSED : { _tag: 'Client', name }
  }

  // Reloads started, so that one that finishes late (a large policy parses slowly) never replaces
  // the result of a reload started after it.
  let reloadsStarted = 0
  const reload = async (): Promise<ReloadResult> => {
    const started = ++reloadsStarted
    const read = options.loadPolicy === undefined ? E.right(snapshot.policy) : await options.loadPolicy()
    if (started !== reloadsStarted) return { _tag: 'Superseded' }
    // A proxy listening beyond loopback never takes a policy without clients (see `requireClients`).
    const loaded = E.isRight(read) && options.requireClients !== undefined && (read.right.file.clients ?? []).length === 0 ? E.left<PolicyError, LoadedPolicy>({ _tag: 'PolicyError', messages: [options.requireClients] }) : read
    if (E.isLeft(loaded)) {
      log('error', `policy reload failed; keeping the last good policy:\n  ${loaded.left.messages.join('\n  ')}`)
      return { _tag: 'KeptLastGood', messages: loaded.left.messages }
    }
    const tokens = await resolveClientTokens(loaded.right.file.clients ?? [], options.env ?? process.env)
    if (started !== reloadsStarted) return { _tag: 'Superseded' }
    if (E.isLeft(tokens)) {
      log('error', `policy reload failed; keeping the last good policy:\n  ${tokens.left.join('\n  ')}`)
      return { _tag: 'KeptLastGood', messages: tokens.left }
    }
    const next = snapshotOf(loaded.right, modeOverride, options.enforcement, tokens.right)
    swap(next, true)
    log('info', `policy reloaded: mode ${next.mode}, ${next.table.routes.length} routes, ${loaded.right.warnings.length} warnings`)
    return { _tag: 'Reloaded', mode: next.mode, routes: next.table.routes.length, warnings: loaded.right.warnings }
  }

  // Any change of the override is carried out: it overrides the clients' own modes too, even when
  // the policy's mode stays the same.
  const setMode = (mode: ProxyMode | undefined): void => {
    if (mode === modeOverride) return
    modeOverride = mode
    const next = snapshotOf(snapshot.policy, modeOverride, options.enforcement, snapshot.tokens)
    swap(next, false)
    log('info', `mode is now ${next.mode}${mode === undefined ? " (the policy's)" : ''}`)
  }

  return {
    evaluate,
    evaluateNow,
    inspects: () => book.any(),
    handOut: (placeholders) => {
      handedOut = [...placeholders]
      book = secretBook(snapshot.policy.file, handedOut, env)
    },
    evaluateTunnel,
    screenHost,
    failClosed: (request) => failClosedVerdict(request, snapshot),
    refuseUnauthenticated: (host) => {
      // A name that carries a secret is not recorded (the client did not authenticate, but may hold one).
      const refused = refuseUnauthenticated(hostCarries(host) === undefined ? host : REDACTED)
      record(refused.audit, snapshot, snapshot.mode, randomUUID(), undefined, null)
      return refused.decision
    },
    reload,
    setMode,
    mode: (client) => viewOf(snapshot, client).mode,
    enforcement: () => snapshot.enforcement,
    policy: () => snapshot.policy,
    table: (client) => viewOf(snapshot, client).table,
    explain: (request) => explainRoute(viewOf(snapshot, request.client).table, request),
    clients: () => [...snapshot.clients.keys()],
    authenticate,
    generation: () => generation,
    dropped: () => audit.dropped(),
    stats: () => meters.stats(instance, cache.size(), { queued: audit.queued?.() ?? 0, dropped: audit.dropped(), accepting: audit.accepting?.() ?? true }),
    close: () => audit.close()
  }
}
