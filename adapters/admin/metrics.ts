import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

import type { Guard } from '../guard/Guard.js'
import type { AuditSink, RunningProxy, Telemetry } from '../ports.js'

// The proxy's Prometheus metrics (docs/spec.md §14), with prom-client: decisions counted from the
// audit records themselves (so a metric never disagrees with the log), latencies pushed by the
// guard and the engine, and gauges read from the guard and the proxy when Prometheus scrapes.

/** The metric names, for docs and tests. */
export const METRIC_NAMES = [
  'egress_guard_decisions_total',
  'egress_guard_decision_duration_seconds',
  'egress_guard_upstream_duration_seconds',
  'egress_guard_open_connections',
  'egress_guard_open_tunnels',
  'egress_guard_intercepted_hosts',
  'egress_guard_credential_cache_entries',
  'egress_guard_credential_cache_hits_total',
  'egress_guard_credential_resolutions_total',
  'egress_guard_credential_resolution_failures_total',
  'egress_guard_audit_queued',
  'egress_guard_audit_dropped_total',
  'egress_guard_rate_limit_buckets',
  'egress_guard_mode'
] as const

/** A proxy's metrics: the registry to scrape, and what feeds it. */
export interface ProxyMetrics {
  readonly registry: Registry
  /** Latencies, pushed by the guard and the engine. */
  readonly telemetry: Telemetry
  /** Counts each audit record as a decision (by event, reason, provider and client). */
  readonly sink: AuditSink
  /** Reads the gauges from this guard and proxy at each scrape. */
  readonly watch: (guard: Guard, proxy: Pick<RunningProxy, 'open'>) => void
}

// A decision takes microseconds, or a credential resolution's seconds; an upstream answers in
// milliseconds, or a reasoning model's minutes.
const DECISION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

/** A counter that follows a total read at each scrape (the guard keeps its own totals). */
const followedCounter = (registry: Registry, name: string, help: string, read: () => number | undefined): void => {
  let last = 0
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read() ?? last
      if (now > last) this.inc(now - last)
      last = Math.max(last, now)
    }
  })
}

/** A gauge read at each scrape. */
const readGauge = (registry: Registry, name: string, help: string, read: () => number | undefined): void => {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      const value = read()
      if (value !== undefined) this.set(value)
    }
  })
}

/** Creates the metrics of one proxy process, with Node's process metrics beside them. */
export const proxyMetrics = (): ProxyMetrics => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  let guard: Guard | undefined
  let proxy: Pick<RunningProxy, 'open'> | undefined

  const decisions = new Counter({
    name: 'egress_guard_decisions_total',
    help: 'Audit records written, by event (proxy_inject, proxy_miss, proxy_no_credentials, proxy_deny, proxy_would_deny), reason, provider and client',
    labelNames: ['event', 'reason', 'provider', 'client'] as const,
    registers: [registry]
  })
  const decided = new Histogram({ name: 'egress_guard_decision_duration_seconds', help: 'Time to decide a request, credential resolution included', buckets: DECISION_BUCKETS, registers: [registry] })
  const answered = new Histogram({ name: 'egress_guard_upstream_duration_seconds', help: 'Time from sending a request upstream to its response head (node engine)', buckets: UPSTREAM_BUCKETS, registers: [registry] })
  const open = () => proxy?.open()
  const stats = () => guard?.stats()
  readGauge(registry, 'egress_guard_open_connections', 'Client connections open now', () => open()?.connections)
  readGauge(registry, 'egress_guard_open_tunnels', 'Client connections carrying a CONNECT tunnel (intercepted or untouched)', () => open()?.tunnels)
  readGauge(registry, 'egress_guard_intercepted_hosts', 'Distinct hosts intercepted since the start (counted up to 65,536)', () => stats()?.interceptedHosts)
  readGauge(registry, 'egress_guard_credential_cache_entries', 'Credentials cached now', () => stats()?.credentials.entries)
  followedCounter(registry, 'egress_guard_credential_cache_hits_total', 'Decisions whose credentials came from the cache', () => stats()?.credentials.hits)
  followedCounter(registry, 'egress_guard_credential_resolutions_total', 'Credential resolutions started (cache misses)', () => stats()?.credentials.resolutions)
  followedCounter(registry, 'egress_guard_credential_resolution_failures_total', 'Credential resolutions that failed or timed out', () => stats()?.credentials.failures)
  readGauge(registry, 'egress_guard_audit_queued', 'Audit records waiting in the sinks', () => stats()?.audit.queued)
  followedCounter(registry, 'egress_guard_audit_dropped_total', 'Audit records dropped (a full queue, or a sink that failed)', () => stats()?.audit.dropped)
  readGauge(registry, 'egress_guard_rate_limit_buckets', 'Rate-limit buckets kept in memory', () => stats()?.rateLimitBuckets)
  new Gauge({
    name: 'egress_guard_mode',
    help: 'The mode in force: 1 for it, 0 for the others (the highest over workers)',
    aggregator: 'max',
    labelNames: ['mode'] as const,
    registers: [registry],
    collect() {
      const now = guard?.mode()
      for (const mode of ['connected_allow', 'connected_deny', 'configured_allow', 'configured_deny']) this.set({ mode }, mode === now ? 1 : 0)
    }
  })

  return {
    registry,
    telemetry: { decided: (seconds) => decided.observe(seconds), answered: (seconds) => answered.observe(seconds) },
    sink: {
      write: (entry) => decisions.inc({ event: entry.event, reason: entry.metadata['reason'] ?? '', provider: entry.provider ?? '', client: entry.client ?? '' }),
      flush: async () => undefined,
      close: async () => undefined,
      dropped: () => 0
    },
    watch: (watchedGuard, watchedProxy) => {
      guard = watchedGuard
      proxy = watchedProxy
    }
  }
}
