import { chmodSync, createWriteStream, type WriteStream } from 'node:fs'

import { redactUrl } from '../../core/index.js'

import type { AuditEntry, AuditSink, Logger } from '../ports.js'

/** Bounds shared by the sinks. */
export interface SinkOptions {
  /** Entries waiting for delivery before new ones are dropped (and counted). Default 10,000. */
  readonly maxQueue?: number
  /** How long an entry may wait to be written with the next ones (default 20 ms); `flush` and `close` write at once. */
  readonly batchMs?: number
  readonly log?: Logger
}

/** Entries written together at most, whatever the wait. */
const MAX_BATCH = 512

/** JSON lines to a file (appended, created 0600) or to a stream such as stdout; never blocks a request. */
export const jsonLinesSink = (target: { readonly path: string } | { readonly stream: NodeJS.WritableStream }, options: SinkOptions = {}): AuditSink => {
  const maxQueue = options.maxQueue ?? 10_000
  const batchMs = options.batchMs ?? 20
  const file: WriteStream | undefined = 'path' in target ? createWriteStream(target.path, { flags: 'a', mode: 0o600 }) : undefined
  // An audit file that already existed keeps no looser permissions than a new one.
  file?.once('open', () => {
    try {
      chmodSync((target as { readonly path: string }).path, 0o600)
    } catch {
      // not ours to change (another owner): the records are still written
    }
  })
  const stream: NodeJS.WritableStream = file ?? (target as { readonly stream: NodeJS.WritableStream }).stream
  let pending = 0
  let dropped = 0
  let broken = false
  let waiters: Array<() => void> = []
  const settle = () => {
    if (pending === 0) {
      for (const w of waiters) w()
      waiters = []
    }
  }
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (!broken) options.log?.('error', `audit sink${'path' in target ? ` ${target.path}` : ''} failed (${error.code ?? 'error'}); further records are dropped and counted`)
    broken = true
    dropped += pending
    pending = 0
    settle()
  })
  // Entries are written together: one write (one system call, one trip through libuv's thread
  // pool for a file) per batch, not per request. A batch goes out when it is `batchMs` old or
  // holds MAX_BATCH entries, whichever comes first.
  let batch: Array<string> = []
  let timer: NodeJS.Timeout | undefined
  const writeBatch = () => {
    clearTimeout(timer)
    timer = undefined
    const lines = batch
    batch = []
    if (broken || lines.length === 0) return
    stream.write(lines.join(''), () => {
      pending = Math.max(0, pending - lines.length)
      settle()
    })
  }
  return {
    write: (entry) => {
      if (broken || pending >= maxQueue) {
        dropped++
        return
      }
      pending++
      batch.push(`${JSON.stringify(entry)}\n`)
      if (batch.length >= MAX_BATCH) writeBatch()
      else timer ??= setTimeout(writeBatch, batchMs)
    },
    flush: () => {
      writeBatch()
      return pending === 0 ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve))
    },
    close: async () => {
      writeBatch()
      if (pending > 0) await new Promise<void>((resolve) => waiters.push(resolve))
      if (file !== undefined) await new Promise<void>((resolve) => file.end(resolve))
    },
    dropped: () => dropped,
    queued: () => pending,
    accepting: () => !broken && pending < maxQueue
  }
}

/** An endpoint that answered, but not 2xx: its status is safe to log (a fetch error's text may hold the URL). */
class EndpointRefused extends Error {
  constructor(status: number) {
    super(`HTTP ${status}`)
  }
}

/** Options of the HTTP sink. */
export interface HttpSinkOptions extends SinkOptions {
  readonly url: string
  readonly headers?: Readonly<Record<string, string>>
  /** Entries per POST (default 100). */
  readonly batchSize?: number
  /** Wait after a failed delivery before trying again (default 1 s). */
  readonly retryMs?: number
  /** The body of one POST (default: the entries as a JSON array) and its content type. */
  readonly encode?: (batch: ReadonlyArray<AuditEntry>) => string
  /** What the endpoint is called in log lines (default `audit endpoint`). */
  readonly name?: string
}

/** POSTs batches of entries (as a JSON array, or as `encode` makes them); keeps them queued while the endpoint is down. */
export const httpSink = (options: HttpSinkOptions): AuditSink => {
  const encode = options.encode ?? ((batch: ReadonlyArray<AuditEntry>) => JSON.stringify(batch))
  const name = options.name ?? 'audit endpoint'
  const maxQueue = options.maxQueue ?? 10_000
  const batchSize = options.batchSize ?? 100
  const retryMs = options.retryMs ?? 1_000
  const queue: Array<AuditEntry> = []
  let dropped = 0
  let sending: Promise<void> | undefined
  let closed = false
  let failing = false

  const deliver = async (): Promise<void> => {
    while (queue.length > 0) {
      const batch = queue.slice(0, batchSize)
      try {
        const response = await fetch(options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...options.headers },
          body: encode(batch),
          signal: AbortSignal.timeout(10_000)
        })
        await response.arrayBuffer()
        if (!response.ok) throw new EndpointRefused(response.status)
        queue.splice(0, batch.length)
        if (failing) options.log?.('info', `${name} ${redactUrl(options.url)} is back; delivering ${queue.length} queued records`)
        failing = false
      } catch (error) {
        if (!failing) options.log?.('warn', `${name} ${redactUrl(options.url)} failed (${error instanceof EndpointRefused ? error.message : error instanceof Error ? error.name : 'error'}); records stay queued (at most ${maxQueue})`)
        failing = true
        if (closed) return
        await new Promise((resolve) => setTimeout(resolve, retryMs).unref())
      }
    }
  }
  const kick = () => {
    sending ??= deliver().finally(() => {
      sending = undefined
      if (queue.length > 0 && !closed) kick()
    })
  }
  return {
    write: (entry) => {
      if (closed || queue.length >= maxQueue) {
        dropped++
        return
      }
      queue.push(entry)
      kick()
    },
    // Waits while deliveries succeed; returns at once when the endpoint is failing.
    flush: async () => {
      while (sending !== undefined && queue.length > 0 && !failing) await Promise.race([sending, new Promise((resolve) => setTimeout(resolve, retryMs).unref())])
    },
    close: async () => {
      closed = true
      await sending
      dropped += queue.length
      queue.length = 0
    },
    dropped: () => dropped,
    queued: () => queue.length,
    accepting: () => !closed && queue.length < maxQueue
  }
}

/** Writes each entry to every sink. */
export const fanOut = (sinks: ReadonlyArray<AuditSink>): AuditSink => ({
  write: (entry) => {
    for (const sink of sinks) sink.write(entry)
  },
  flush: async () => {
    await Promise.all(sinks.map((s) => s.flush()))
  },
  close: async () => {
    await Promise.all(sinks.map((s) => s.close()))
  },
  dropped: () => sinks.reduce((n, s) => n + s.dropped(), 0),
  queued: () => sinks.reduce((n, s) => n + (s.queued?.() ?? 0), 0),
  accepting: () => sinks.every((s) => s.accepting?.() ?? true)
})
