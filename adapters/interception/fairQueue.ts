// Work that a flood of new hosts could monopolise (issuing leaf certificates) runs through a fair
// queue: at most `concurrency` tasks at a time, groups served in turn, first come first served
// within a group. A flood of new hosts under one domain then delays another domain's first leaf by
// one turn, not by the whole flood.

/** A fair, bounded queue of asynchronous tasks. */
export interface FairQueue {
  /** Runs `task` in its group's turn; rejects at once when `maxWaiting` tasks already wait. */
  readonly run: <T>(group: string, task: () => Promise<T>) => Promise<T>
  /** Tasks waiting for their turn. */
  readonly waiting: () => number
}

/**
 * The group a host's work belongs to: its last two labels (`f1.g7.flood.test` → `flood.test`), so
 * that deeper names cannot make a group each; the host itself for IP literals and single labels.
 * Two labels over-group under public suffixes such as `co.uk`, which only makes the budget
 * stricter there.
 */
export const hostGroup = (host: string): string => {
  if (host.includes(':') || /^[0-9.]+$/.test(host)) return host
  const labels = host.replace(/\.$/, '').split('.')
  return labels.length <= 2 ? labels.join('.') : labels.slice(-2).join('.')
}

/** Makes a fair queue running at most `concurrency` tasks at once, with at most `maxWaiting` waiting. */
export const fairQueue = (options: { readonly concurrency: number; readonly maxWaiting: number }): FairQueue => {
  // Groups with waiting tasks, in the order they are served; a group served goes to the back.
  const groups = new Map<string, Array<() => void>>()
  let running = 0
  let waiting = 0
  const pump = (): void => {
    while (running < options.concurrency && groups.size > 0) {
      const [group, queue] = groups.entries().next().value as [string, Array<() => void>]
      const start = queue.shift()
      groups.delete(group)
      if (queue.length > 0) groups.set(group, queue)
      if (start === undefined) continue
      waiting--
      running++
      start()
    }
  }
  return {
    run: <T>(group: string, task: () => Promise<T>): Promise<T> => {
      if (waiting >= options.maxWaiting) return Promise.reject(new Error(`more than ${options.maxWaiting} tasks are waiting`))
      return new Promise<T>((resolve, reject) => {
        const queue = groups.get(group) ?? []
        queue.push(() => {
          let started: Promise<T>
          try {
            started = task()
          } catch (error) {
            started = Promise.reject(error)
          }
          started.then(resolve, reject).finally(() => {
            running--
            pump()
          })
        })
        waiting++
        if (!groups.has(group)) groups.set(group, queue)
        pump()
      })
    },
    waiting: () => waiting
  }
}
