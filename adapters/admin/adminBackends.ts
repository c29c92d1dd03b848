import { constants } from 'node:fs'
import { access } from 'node:fs/promises'

import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client'

import { parseMode, type ProxyMode } from '../../core/index.js'
import type { Guard } from '../guard/Guard.js'
import type { RunningProxy } from '../ports.js'
import type { AdminBackend, Readiness } from './adminServer.js'
import type { ProxyMetrics } from './metrics.js'

// What the admin listener asks of a proxy: in one process, the guard and proxy themselves; under
// `serve --workers N`, the primary asks every worker and adds their answers up.

/** One process's guard, proxy and metrics. */
export interface ServedProxy {
  readonly guard: Guard
  readonly proxy: Pick<RunningProxy, 'caCertPath' | 'open'>
  readonly metrics: ProxyMetrics
}

/** Readiness of one process: the policy loaded, the CA file readable, every audit sink taking records. */
const readinessOf = async ({ guard, proxy }: ServedProxy): Promise<Readiness> => {
  const ca = await access(proxy.caCertPath, constants.R_OK).then(
    () => true,
    () => false
  )
  const checks = { policy: guard.policy() !== undefined, ca, sinks: guard.stats().audit.accepting }
  return { ready: Object.values(checks).every(Boolean), checks }
}

/** The admin backend of a proxy served by this process. */
export const localBackend = (served: ServedProxy): AdminBackend => ({
  metrics: async () => ({ contentType: served.metrics.registry.contentType, text: await served.metrics.registry.metrics() }),
  readiness: () => readinessOf(served),
  mode: async () => served.guard.mode(),
  setMode: async (mode) => served.guard.setMode(mode)
})

/** A question the primary asks its workers. */
type Question = { readonly ask: 'report' } | { readonly ask: 'state' } | { readonly ask: 'set-mode'; readonly mode: ProxyMode }

/** A worker's state: its readiness and its mode; with its metrics as JSON (to be added up) when asked for a report. */
interface Report {
  readonly metrics?: ReadonlyArray<MetricObjectWithValues<MetricValue<string>>>
  readonly readiness: Readiness
  readonly mode: ProxyMode
}

/** In a worker: answers the primary's questions about this process's proxy. */
export const workerAnswers =
  (served: ServedProxy) =>
  async (question: unknown): Promise<Report | undefined> => {
    const q = question as Partial<Question> | undefined
    if (q?.ask === 'set-mode') {
      const mode = parseMode((q as { mode?: unknown }).mode)
      if (mode._tag === 'Right') served.guard.setMode(mode.right)
    } else if (q?.ask !== 'report' && q?.ask !== 'state') return undefined
    // Only a scrape needs the metrics: readiness and the mode are cheap to answer.
    const metrics = q.ask === 'report' ? { metrics: await served.metrics.registry.getMetricsAsJSON() } : {}
    return { ...metrics, readiness: await readinessOf(served), mode: served.guard.mode() }
  }

/** Something that asks every ready worker a question (WorkerPool.ask). */
export type AskWorkers = (question: Question) => Promise<{ readonly answers: ReadonlyArray<unknown>; readonly workers: number }>

/**
 * The primary's admin backend under `serve --workers N`: metrics added up over the workers
 * (prom-client's aggregation: counters, histograms and gauges summed), ready when every worker is,
 * a mode set live sent to every worker (and, through `modeSet`, to any worker that replaces one).
 */
export const poolBackend = (ask: AskWorkers): AdminBackend & { readonly modeSet: () => ProxyMode | undefined } => {
  let modeSet: ProxyMode | undefined
  const reports = async (question: 'report' | 'state') => {
    const { answers, workers } = await ask({ ask: question })
    return { reports: answers as ReadonlyArray<Report>, workers }
  }
  return {
    modeSet: () => modeSet,
    metrics: async () => {
      const { reports: all } = await reports('report')
      const registry = AggregatorRegistry.aggregate(all.map((r) => (r.metrics ?? []) as Array<MetricObjectWithValues<MetricValue<string>>>))
      return { contentType: registry.contentType, text: await registry.metrics() }
    },
    readiness: async () => {
      const { reports: all, workers } = await reports('state')
      const checks = {
        workers: all.length === workers,
        policy: all.length > 0 && all.every((r) => r.readiness.checks['policy'] === true),
        ca: all.length > 0 && all.every((r) => r.readiness.checks['ca'] === true),
        sinks: all.length > 0 && all.every((r) => r.readiness.checks['sinks'] === true)
      }
      return { ready: Object.values(checks).every(Boolean), checks }
    },
    mode: async () => {
      const { reports: all } = await reports('state')
      return all[0]?.mode
    },
    setMode: async (mode) => {
      modeSet = mode
      await ask({ ask: 'set-mode', mode })
    }
  }
}
