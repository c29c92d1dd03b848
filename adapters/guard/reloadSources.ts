import { watch } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'

import { parseMode, redactUrl } from '../../core/index.js'
import { stderrLogger, type Logger } from '../ports.js'
import type { Guard } from './createGuard.js'

/** Something that can be stopped. */
export interface Stoppable {
  readonly stop: () => void
}

/**
 * Reloads the guard when the policy file changes. The directory is watched, so editors that
 * replace the file (write a temporary file, rename it over) are seen too.
 */
export const watchPolicyFile = (path: string, guard: Guard, options: { readonly debounceMs?: number; readonly log?: Logger } = {}): Stoppable => {
  const file = resolve(path)
  const name = basename(file)
  let timer: NodeJS.Timeout | undefined
  const watcher = watch(dirname(file), (_event, changed) => {
    if (changed !== null && changed.toString() !== name) return
    clearTimeout(timer)
    timer = setTimeout(() => void guard.reload(), options.debounceMs ?? 100)
  })
  watcher.on('error', () => (options.log ?? stderrLogger)('error', `cannot watch ${file} any longer; policy changes need a restart or reload()`))
  return {
    stop: () => {
      clearTimeout(timer)
      watcher.close()
    }
  }
}

/** Polls `GET <url>` for `{"mode": "..."}` and switches the guard's mode; garbage keeps the current mode. */
export const pollModeEndpoint = (url: string, guard: Guard, options: { readonly intervalMs?: number; readonly log?: Logger } = {}): Stoppable & { readonly poll: () => Promise<void> } => {
  const log = options.log ?? stderrLogger
  let complaint: string | undefined
  const complain = (message: string) => {
    if (message !== complaint) log('warn', `mode endpoint ${redactUrl(url)}: ${message}; keeping mode ${guard.mode()}`)
    complaint = message
  }
  const poll = async (): Promise<void> => {
    try {
      const response = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(5_000) })
      if (!response.ok) return complain(`answered HTTP ${response.status}`)
      const body: unknown = await response.json().catch(() => undefined)
      const mode = parseMode(typeof body === 'object' && body !== null ? (body as { mode?: unknown }).mode : undefined)
      if (E.isLeft(mode)) return complain(`did not answer {"mode": "..."} with a valid mode (${mode.left.message})`)
      complaint = undefined
      guard.setMode(mode.right)
    } catch (error) {
      complain(`could not be reached (${error instanceof Error ? error.name : 'error'})`)
    }
  }
  const timer = setInterval(() => void poll(), options.intervalMs ?? 5_000)
  timer.unref()
  void poll()
  return { stop: () => clearInterval(timer), poll }
}
