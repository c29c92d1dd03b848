import { fork, type ChildProcess } from 'node:child_process'
import { createServer, type Server, type Socket } from 'node:net'

import { loadOrCreateCa, type CertificateAuthority } from '../interception/certificates.js'

// `serve --workers N`: the primary process owns the listening port, the CA and the leaf-certificate
// cache. It accepts each client connection, without reading from it, and hands it to the next of N
// worker processes, each a whole guarded proxy. Workers ask the primary for leaf certificates, so
// a host's certificate is issued once for all of them.
//
// node:cluster is not used: a proxy library listens on ports of its own inside each worker (one
// per intercepted host, on port 0), and cluster would share those between the workers too, handing
// a tunnel judged by one worker to another worker's server for some other host.

/** Messages between the primary and its workers. */
type ToPrimary =
  | { readonly type: 'egress-guard:leaf'; readonly id: number; readonly host: string }
  | { readonly type: 'egress-guard:answer'; readonly id: number; readonly answer: unknown }
  | { readonly type: 'egress-guard:ready'; readonly caCertPath: string; readonly mode: string; readonly enforcement: string }
  | { readonly type: 'egress-guard:failed'; readonly messages: ReadonlyArray<string> }
type ToWorker =
  | { readonly type: 'egress-guard:leaf'; readonly id: number; readonly cert?: string; readonly key?: string; readonly error?: string }
  | { readonly type: 'egress-guard:connection' }
  | { readonly type: 'egress-guard:ask'; readonly id: number; readonly question: unknown }
  | { readonly type: 'egress-guard:stop' }

/** The environment variable that marks a serve worker (set by the primary when it forks). */
export const WORKER_MARK = 'EGRESS_GUARD_SERVE_WORKER'

/** True inside a worker forked by `serve --workers`. */
export const isServeWorker = (env: NodeJS.ProcessEnv): boolean => env[WORKER_MARK] === '1' && typeof process.send === 'function'

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

/** In a worker: tells the primary it is ready (or could not start). */
export const reportToPrimary = (message: Extract<ToPrimary, { type: 'egress-guard:ready' | 'egress-guard:failed' }>): void => {
  process.send?.(message)
}

/** In a worker: hands every connection the primary sends to `accept`. */
export const acceptFromPrimary = (accept: (socket: Socket) => void): void => {
  process.on('message', (message: unknown, handle: unknown) => {
    if (!isMessage(message) || message.type !== 'egress-guard:connection' || handle === undefined) return
    const socket = handle as Socket
    socket.on('error', () => socket.destroy())
    accept(socket)
    socket.resume()
  })
}

/** In a worker: answers the primary's questions (the admin listener's, docs/spec.md §14) with `answer`. */
export const answerPrimary = (answer: (question: unknown) => Promise<unknown>): void => {
  process.on('message', (message: unknown) => {
    if (!isMessage(message) || message.type !== 'egress-guard:ask') return
    const { id, question } = message as Extract<ToWorker, { type: 'egress-guard:ask' }>
    answer(question).then(
      (reply) => process.send?.({ type: 'egress-guard:answer', id, answer: reply } satisfies ToPrimary),
      () => process.send?.({ type: 'egress-guard:answer', id, answer: undefined } satisfies ToPrimary)
    )
  })
}

/** In a worker: resolves when the primary asks it to stop, or goes away. */
export const stopRequested = (): Promise<void> =>
  new Promise((resolve) => {
    process.on('message', (message: unknown) => isMessage(message) && message.type === 'egress-guard:stop' && resolve())
    process.once('disconnect', () => resolve())
  })

/** What the primary reports about its workers. */
export interface WorkerPool {
  /** Resolves once the port is open and every worker is ready, or with the first failure. */
  readonly ready: Promise<{ readonly _tag: 'Ready'; readonly url: string; readonly caCertPath: string; readonly mode: string; readonly enforcement: string } | { readonly _tag: 'Failed'; readonly messages: ReadonlyArray<string> }>
  /** Stops accepting, asks every worker to stop (flushing its audit records) and resolves when all have exited. */
  readonly stop: () => Promise<void>
  /** Asks every ready worker `question` (see answerPrimary): their answers, and how many workers there should be. A worker that does not answer within 5 s is left out. */
  readonly ask: (question: unknown) => Promise<{ readonly answers: ReadonlyArray<unknown>; readonly workers: number }>
}

/** Where the primary listens, how many workers it runs, and where their CA lives. */
export interface WorkerPoolOptions {
  readonly count: number
  readonly host: string
  readonly port: number
  readonly configDir: string
  readonly warn: (message: string) => void
  /** Questions a worker that replaced one that died is asked once it is ready (to catch up on a mode set live). */
  readonly welcome?: () => ReadonlyArray<unknown>
  /** The environment the workers get, beside the primary's. */
  readonly env?: NodeJS.ProcessEnv
}

/** The wait before a worker that died is replaced: doubled for each death in a row, at most 10 s. */
const respawnDelayMs = (deathsInARow: number): number => Math.min(10_000, 100 * 2 ** Math.max(0, deathsInARow - 1))

/**
 * In the primary: creates (or loads) the CA, forks `count` workers running the same command line,
 * and once all are ready, listens and hands each new connection to the next ready worker in turn.
 * A worker that dies while serving is replaced (after a growing wait if replacements keep dying),
 * and the log says so; no connection is handed to a worker until it reports ready.
 */
export const startWorkers = async ({ count, host, port, configDir, warn, welcome, env }: WorkerPoolOptions): Promise<WorkerPool> => {
  const ca = await loadOrCreateCa(configDir)
  let stopping = false
  let started = false
  let settle: (value: Awaited<WorkerPool['ready']>) => void = () => undefined
  const ready = new Promise<Awaited<WorkerPool['ready']>>((resolve) => (settle = resolve))
  let first: { caCertPath: string; mode: string; enforcement: string } | undefined
  const workers: Array<ChildProcess> = []
  // INVARIANT: a connection goes only to a worker whose slot is marked ready here.
  const readySlots: Array<boolean> = []
  let deathsInARow = 0
  let next = 0
  // Questions asked of the workers, waiting for their answers.
  let asked = 0
  const answers = new Map<number, (answer: unknown) => void>()
  const askOne = (worker: ChildProcess, question: unknown): Promise<unknown> =>
    new Promise((resolve) => {
      const id = asked++
      const timer = setTimeout(() => {
        answers.delete(id)
        resolve(undefined)
      }, 5_000)
      timer.unref()
      answers.set(id, (answer) => {
        clearTimeout(timer)
        answers.delete(id)
        resolve(answer)
      })
      worker.send({ type: 'egress-guard:ask', id, question } satisfies ToWorker, (error) => error && answers.get(id)?.(undefined))
    })

  const onMessage = (slot: number, worker: ChildProcess, message: unknown): void => {
    if (!isMessage(message)) return
    const m = message as ToPrimary
    if (m.type === 'egress-guard:leaf') {
      ca.leafFor(m.host).then(
        (leaf) => worker.connected && worker.send({ type: 'egress-guard:leaf', id: m.id, cert: leaf.cert, key: leaf.key } satisfies ToWorker),
        (error: Error) => worker.connected && worker.send({ type: 'egress-guard:leaf', id: m.id, error: error.message } satisfies ToWorker)
      )
    } else if (m.type === 'egress-guard:answer') {
      answers.get(m.id)?.(m.answer)
    } else if (m.type === 'egress-guard:ready') {
      first ??= { caCertPath: m.caCertPath, mode: m.mode, enforcement: m.enforcement }
      readySlots[slot] = true
      if (started) {
        deathsInARow = 0
        for (const question of welcome?.() ?? []) void askOne(worker, question)
        warn('the new worker is ready')
      } else if (readySlots.filter(Boolean).length === count) listen()
    } else if (m.type === 'egress-guard:failed') {
      if (started) warn(`a new worker could not start: ${m.messages.join('; ')}`)
      else settle({ _tag: 'Failed', messages: m.messages })
    }
  }

  const spawnWorker = (slot: number): void => {
    const worker = fork(process.argv[1] ?? '', process.argv.slice(2), { env: { ...process.env, ...env, [WORKER_MARK]: '1' }, stdio: 'inherit' })
    workers[slot] = worker
    readySlots[slot] = false
    worker.on('message', (message: unknown) => onMessage(slot, worker, message))
    worker.on('error', () => undefined)
    worker.once('exit', (code, signal) => {
      readySlots[slot] = false
      if (stopping) return
      if (!started) {
        settle({ _tag: 'Failed', messages: [`a worker exited while starting (${signal ?? `code ${code}`})`] })
        return
      }
      const delay = respawnDelayMs(++deathsInARow)
      warn(`a worker exited (${signal ?? `code ${code}`}); starting a new one in ${delay} ms`)
      setTimeout(() => stopping || spawnWorker(slot), delay).unref()
    })
  }

  // Hands a connection to the next ready worker. A worker that cannot take it (it died and its exit
  // is not known yet) is passed over, and the next one is tried. The primary keeps its own copy of
  // the socket until the hand-over is done: without `keepOpen`, Node closes it as it sends, and a
  // send that then fails would leave nothing to hand to the next worker (the client saw a reset).
  const handOver = (socket: Socket, tries: number): void => {
    for (; tries < count; tries++) {
      const slot = next++ % count
      const worker = workers[slot]
      if (readySlots[slot] === true && worker?.connected === true) {
        worker.send({ type: 'egress-guard:connection' } satisfies ToWorker, socket, { keepOpen: true }, (error) => {
          if (error) handOver(socket, tries + 1)
          // INVARIANT: closing the primary's copy leaves the worker's open; the primary never reads or writes it.
          else socket.destroy()
        })
        return
      }
    }
    socket.destroy() // no worker can take it (all are restarting)
  }
  // INVARIANT: the primary never reads from a client connection; the worker it hands it to does.
  const server: Server = createServer({ pauseOnConnect: true }, (socket) => handOver(socket, 0))
  server.on('error', (error: NodeJS.ErrnoException) => settle({ _tag: 'Failed', messages: [`cannot listen on ${host}:${port}: ${error.code === 'EADDRINUSE' ? 'the port is in use; choose another with --port' : error.message}`] }))
  const listen = (): void =>
    void server.listen(port, host, () => {
      started = true
      const address = server.address()
      const bound = typeof address === 'object' && address !== null ? address.port : port
      settle({ _tag: 'Ready', url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`, caCertPath: first?.caCertPath ?? ca.certPath, mode: first?.mode ?? '', enforcement: first?.enforcement ?? 'enforce' })
    })

  for (let slot = 0; slot < count; slot++) spawnWorker(slot)

  return {
    ready,
    ask: async (question) => {
      const ready = workers.filter((worker, slot) => readySlots[slot] === true && worker.connected)
      const replies = await Promise.all(ready.map((worker) => askOne(worker, question)))
      return { answers: replies.filter((answer) => answer !== undefined), workers: count }
    },
    stop: async () => {
      stopping = true
      // Stops accepting at once. Not awaited: its callback waits for every connection already
      // handed to a worker to close, and the workers close those when they stop, below.
      if (server.listening) server.close()
      await Promise.all(
        workers.map(
          (worker) =>
            new Promise<void>((resolve) => {
              if (worker.exitCode !== null || worker.signalCode !== null) return resolve()
              worker.once('exit', () => resolve())
              if (worker.connected) worker.send({ type: 'egress-guard:stop' } satisfies ToWorker)
              // A worker that does not finish within ten seconds is killed.
              setTimeout(() => worker.kill('SIGKILL'), 10_000).unref()
            })
        )
      )
    }
  }
}
