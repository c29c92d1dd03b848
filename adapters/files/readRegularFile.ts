import { constants } from 'node:fs'
import { open } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

// Credential and policy files are read on Node's I/O pool, which has four threads for the whole
// process (certificates, audit writes and DNS use it too). A read that never returns (a FIFO with
// no writer, a device, a hung mount) holds its thread for good. So: the file is opened without
// blocking and refused unless it is a regular file; it is read up to a bound; and at most two
// credential reads and one policy read are under way at a time, so a hung mount can never hold
// the whole pool.

/** Why a file was not read; `message` names the path and what to do, never the contents. */
export interface FileReadError {
  readonly _tag: 'FileReadError'
  readonly message: string
}

/** Reads of one kind that may hold pool threads at once; the others wait their turn (or their abort). */
const READS_AT_ONCE = { credentials: 2, policy: 1 } as const

/** A count of reads under way, with those waiting for a turn. */
const lane = (max: number) => {
  let reading = 0
  const waiting: Array<() => void> = []
  return {
    release: (): void => {
      reading--
      waiting.shift()?.()
    },
    acquire: (signal: AbortSignal | undefined): Promise<boolean> => {
      if (reading < max) {
        reading++
        return Promise.resolve(true)
      }
      return new Promise((resolve) => {
        const turn = (): void => {
          signal?.removeEventListener('abort', give)
          reading++
          resolve(true)
        }
        const give = (): void => {
          const at = waiting.indexOf(turn)
          if (at >= 0) waiting.splice(at, 1)
          resolve(false)
        }
        waiting.push(turn)
        signal?.addEventListener('abort', give, { once: true })
      })
    }
  }
}

// INVARIANT: at most 2 + 1 of the pool's 4 threads can ever wait on a hung file.
const lanes = { credentials: lane(READS_AT_ONCE.credentials), policy: lane(READS_AT_ONCE.policy) }

const failure = (message: string): E.Either<FileReadError, never> => E.left({ _tag: 'FileReadError', message })

/**
 * Reads a regular file of at most `maxBytes` as UTF-8. Refuses FIFOs, sockets and devices without
 * waiting on them; a read still waiting for its turn when `signal` aborts gives up.
 */
export const readRegularFile = async (
  path: string,
  options: { readonly maxBytes: number; readonly what: string; readonly signal?: AbortSignal; readonly lane?: keyof typeof READS_AT_ONCE }
): Promise<E.Either<FileReadError, string>> => {
  const shown = `${options.what} \`${path}\``
  const { acquire, release } = lanes[options.lane ?? 'credentials']
  if (!(await acquire(options.signal))) return failure(`${shown} was not read in time`)
  try {
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
    const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
    try {
      const stat = await handle.stat()
      if (!stat.isFile()) return failure(`${shown} is not a regular file (a pipe, socket or device is never read); point it at a file`)
      if (stat.size > options.maxBytes) return failure(`${shown} is larger than ${options.maxBytes} bytes`)
      const buffer = Buffer.alloc(options.maxBytes + 1)
      let length = 0
      for (;;) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null)
        if (bytesRead === 0) break
        length += bytesRead
        if (length > options.maxBytes) return failure(`${shown} is larger than ${options.maxBytes} bytes`)
      }
      return E.right(buffer.subarray(0, length).toString('utf8'))
    } finally {
      await handle.close()
    }
  } catch (error) {
    return failure(`${shown} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); check the path and its permissions`)
  } finally {
    release()
  }
}
