import { unavailable } from '../../core/Credentials.js'
import { usableCredentials, type CredentialOutcome } from '../../core/index.js'
import type { Clock, CredentialSource } from '../ports.js'

/** Options of the credential cache (docs/spec.md §7). */
export interface CredentialCacheOptions {
  readonly source: CredentialSource
  readonly clock: Clock
  /** Refresh this long before `expiresAt` (default 300 s). */
  readonly refreshWindowMs?: number
  /** A resolution slower than this is `Unavailable` (default 5 s). */
  readonly timeoutMs?: number
}

/** Cached, single-flight credential resolution. */
export interface CredentialCache {
  readonly get: (provider: string, connection: string) => Promise<CredentialOutcome>
  /** What `get` would answer at once from the cache; undefined when a resolution is needed. */
  readonly peek: (provider: string, connection: string) => CredentialOutcome | undefined
  /** Forgets everything, including resolutions still under way (the policy or source changed). */
  readonly clear: () => void
  /** Credentials cached now. */
  readonly size: () => number
}

interface Entry {
  readonly outcome: CredentialOutcome
  /** When to resolve again; `undefined` keeps it until the next `clear`. */
  readonly refreshAt: number | undefined
}

/** A cache in front of a credential source: until `expiresAt − refreshWindow`, one resolution per key at a time, failures not kept. */
export const createCredentialCache = ({ source, clock, refreshWindowMs = 300_000, timeoutMs = 5_000 }: CredentialCacheOptions): CredentialCache => {
  let generation = 0
  const entries = new Map<string, Entry>()
  const inFlight = new Map<string, Promise<CredentialOutcome>>()

  const resolveWithTimeout = async (provider: string, connection: string): Promise<CredentialOutcome> => {
    const controller = new AbortController()
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<CredentialOutcome>((resolve) => {
      timer = setTimeout(() => {
        controller.abort()
        resolve(unavailable(`credential source for \`${provider}/${connection}\` did not answer within ${timeoutMs} ms`))
      }, timeoutMs)
    })
    try {
      const resolved = source.resolve(provider, connection, controller.signal).catch(() =>
        unavailable(`credential source for \`${provider}/${connection}\` failed`)
      )
      return await Promise.race([resolved, timedOut])
    } catch {
      return unavailable(`credential source for \`${provider}/${connection}\` failed`)
    } finally {
      clearTimeout(timer)
    }
  }

  const peek = (provider: string, connection: string): CredentialOutcome | undefined => {
    const cached = entries.get(`${provider}\u0000${connection}`)
    return cached !== undefined && (cached.refreshAt === undefined || clock.now().getTime() < cached.refreshAt) ? cached.outcome : undefined
  }

  const get = (provider: string, connection: string): Promise<CredentialOutcome> => {
    const key = `${provider}\u0000${connection}`
    const cached = peek(provider, connection)
    if (cached !== undefined) return Promise.resolve(cached)
    const pending = inFlight.get(key)
    if (pending !== undefined) return pending
    const started = generation
    const resolution: Promise<CredentialOutcome> = resolveWithTimeout(provider, connection)
      .then((resolved) => {
        // Checked (and frozen) once here, so the check costs nothing on later requests. Whatever
        // fails it, even a source that answered null, is Unavailable with the check's error.
        const outcome = usableCredentials(resolved)
        // INVARIANT: only the resolution of the current generation is kept, and only a success.
        if (started === generation) {
          const refreshAt = outcome._tag === 'Available' && outcome.expiresAt !== undefined ? outcome.expiresAt.getTime() - refreshWindowMs : undefined
          if (outcome._tag === 'Available' && (refreshAt === undefined || clock.now().getTime() < refreshAt)) entries.set(key, { outcome, refreshAt })
          else entries.delete(key)
        }
        return outcome
      })
      .finally(() => {
        // Whatever happened above, the next miss starts a new resolution.
        if (inFlight.get(key) === resolution) inFlight.delete(key)
      })
    inFlight.set(key, resolution)
    return resolution
  }

  const clear = (): void => {
    generation++
    entries.clear()
    inFlight.clear()
  }

  return { get, peek, clear, size: () => entries.size }
}
