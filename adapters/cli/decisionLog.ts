import type { AuditEntry, AuditSink } from '../ports.js'

/** One readable line per audit record (`--json`: the record itself), for `serve`'s log. */
export const decisionLine = (entry: AuditEntry): string => {
  const who = entry.provider === null ? '-' : `${entry.provider}/${entry.connection ?? ''}`
  const m = entry.metadata
  const target = `${m['method'] ?? ''} ${m['host'] ?? ''}${m['path'] ?? ''}`.trim()
  const why = m['reason'] ?? m['error'] ?? ''
  return [entry.time.slice(11, 19), entry.event.replace(/^proxy_/, '').padEnd(14), who.padEnd(20), target, why === '' ? '' : `(${why})`].join(' ').trimEnd()
}

/**
 * A sink that writes each record as a line through `write`. Lines are gathered for up to
 * `batchMs` and written together (one write per batch, not per request); `flush` and `close`
 * write at once. Writing is synchronous, so nothing queues beyond one batch.
 */
export const decisionLogSink = (write: (text: string) => void, json: boolean, batchMs = 20): AuditSink => {
  let lines: Array<string> = []
  let timer: NodeJS.Timeout | undefined
  const writeOut = (): void => {
    clearTimeout(timer)
    timer = undefined
    if (lines.length === 0) return
    const text = lines.join('\n')
    lines = []
    write(text)
  }
  return {
    write: (entry) => {
      lines.push(json ? JSON.stringify(entry) : decisionLine(entry))
      timer ??= setTimeout(writeOut, batchMs)
    },
    flush: async () => writeOut(),
    close: async () => writeOut(),
    dropped: () => 0
  }
}
