import cluster, { type Worker } from 'node:cluster'

import { loadOrCreateCa, type CertificateAuthority } from '../interception/certificates.js'

// `serve --workers N`: the primary process owns the CA and the leaf-certificate cache and accepts
// nothing itself; node:cluster hands each connection to one of N workers, each a whole guarded
// proxy on the same port. Workers ask the primary for leaf certificates, so a host's certificate
// is issued once for all of them.

/** Messages between the primary and its workers. */
type ToPrimary =
  | { readonly type: 'egress-guard:leaf'; readonly id: number; readonly host: string }
  | { readonly type: 'egress-guard:ready'; readonly url: string; readonly caCertPath: string; readonly mode: string }
  | { readonly type: 'egress-guard:failed'; readonly messages: ReadonlyArray<string> }
type ToWorker =
  | { readonly type: 'egress-guard:leaf'; readonly id: number; readonly cert?: string; readonly key?: string; readonly error?: string }
  | { readonly type: 'egress-guard:stop' }

/** The environment variable that marks a serve worker (set by the primary when it forks). */
export const WORKER_MARK = 'EGRESS_GUARD_SERVE_WORKER'

/** True inside a worker forked by `serve --workers`. */
export const isServeWorker = (env: NodeJS.ProcessEnv): boolean => cluster.isWorker && env[WORKER_MARK] === '1'

const isMessage = (value: unknown): value is { readonly type: string } =>
  typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'

/** In a worker: the primary's CA, with leaf certificates issued (and cached) by the primary. */
export const workerCa = (primaryCa: Pick<CertificateAuthority, 'certPath' | 'certPem' | 'keyPath'>): CertificateAuthority => {
  let next = 0
  const waiting = new Map<number, { resolve: (leaf: { cert: string; key: string }) => void; reject: (error: Error) => void }>()
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== 'egress-guard:leaf') return
    const answer = message as Extract<ToWorker, { type: 'egress-guard:leaf' }>
    const pending = waiting.get(answer.id)
    waiting.delete(answer.id)
    if (answer.cert !== undefined && answer.key !== undefined) pending?.resolve({ cert: answer.cert, key: answer.key })
    else pending?.reject(new Error(answer.error ?? 'the primary issued no certificate'))
  })
  return {
    ...primaryCa,
    leafFor: (host) =>
      new Promise((resolve, reject) => {
        const id = next++
        waiting.set(id, { resolve, reject })
        process.send?.({ type: 'egress-guard:leaf', id, host } satisfies ToPrimary)
      })
  }
}

/** In a worker: tells the primary it listens (or could not start). */
export const reportToPrimary = (message: Extract<ToPrimary, { type: 'egress-guard:ready' | 'egress-guard:failed' }>): void => {
  process.send?.(message)
}

/** In a worker: resolves when the primary asks it to stop. */
export const stopRequested = (): Promise<void> =>
  new Promise((resolve) => process.on('message', (message: unknown) => isMessage(message) && message.type === 'egress-guard:stop' && resolve()))

/** What the primary reports about its workers. */
export interface WorkerPool {
  /** Resolves with the first worker's address once all are listening, or with the first failure. */
  readonly ready: Promise<{ readonly _tag: 'Ready'; readonly url: string; readonly caCertPath: string; readonly mode: string } | { readonly _tag: 'Failed'; readonly messages: ReadonlyArray<string> }>
  /** Asks every worker to stop (flushing its audit records) and resolves when all have exited. */
  readonly stop: () => Promise<void>
}

/**
 * In the primary: creates (or loads) the CA, then forks `count` workers running the same command
 * line. A worker that dies while serving is replaced, and the log says so.
 */
export const startWorkers = async (count: number, configDir: string, warn: (message: string) => void): Promise<WorkerPool> => {
  const ca = await loadOrCreateCa(configDir)
  let stopping = false
  let readyCount = 0
  let settle: (value: Awaited<WorkerPool['ready']>) => void = () => undefined
  const ready = new Promise<Awaited<WorkerPool['ready']>>((resolve) => (settle = resolve))
  let first: { url: string; caCertPath: string; mode: string } | undefined

  const onMessage = (worker: Worker, message: unknown): void => {
    if (!isMessage(message)) return
    const m = message as ToPrimary
    if (m.type === 'egress-guard:leaf') {
      ca.leafFor(m.host).then(
        (leaf) => worker.send({ type: 'egress-guard:leaf', id: m.id, cert: leaf.cert, key: leaf.key } satisfies ToWorker),
        (error: Error) => worker.send({ type: 'egress-guard:leaf', id: m.id, error: error.message } satisfies ToWorker)
      )
    } else if (m.type === 'egress-guard:ready') {
      first ??= { url: m.url, caCertPath: m.caCertPath, mode: m.mode }
      if (++readyCount === count) settle({ _tag: 'Ready', ...first })
    } else if (m.type === 'egress-guard:failed') {
      settle({ _tag: 'Failed', messages: m.messages })
    }
  }

  const fork = (): Worker => {
    const worker = cluster.fork({ [WORKER_MARK]: '1' })
    worker.on('message', (message: unknown) => onMessage(worker, message))
    worker.on('exit', (code, signal) => {
      if (stopping) return
      if (readyCount < count) {
        settle({ _tag: 'Failed', messages: [`a worker exited while starting (${signal ?? `code ${code}`})`] })
        return
      }
      warn(`a worker exited (${signal ?? `code ${code}`}); starting a new one`)
      fork()
    })
    return worker
  }
  // Round-robin across workers (the default everywhere but Windows), set explicitly.
  cluster.schedulingPolicy = cluster.SCHED_RR
  for (let i = 0; i < count; i++) fork()

  return {
    ready,
    stop: async () => {
      stopping = true
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
      await Promise.all(
        workers.map(
          (worker) =>
            new Promise<void>((resolve) => {
              if (worker.isDead()) return resolve()
              worker.once('exit', () => resolve())
              worker.send({ type: 'egress-guard:stop' } satisfies ToWorker)
              // A worker that does not finish within ten seconds is killed.
              setTimeout(() => worker.kill('SIGKILL'), 10_000).unref()
            })
        )
      )
    }
  }
}
