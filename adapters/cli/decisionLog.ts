import type { AuditEntry, AuditSink } from '../ports.js'

/** One readable line per audit record (`--json`: the record itself), for `serve`'s log. */
export const decisionLine = (entry: AuditEntry): string => {
  const who = entry.provider === null ? '-' : `${entry.provider}/${entry.connection ?? ''}`
  const m = entry.metadata
  const target = `${m['method'] ?? ''} ${m['host'] ?? ''}${m['path'] ?? ''}`.trim()
  const why = m['reason'] ?? m['error'] ?? ''
  return [entry.time.slice(11, 19), entry.event.replace(/^proxy_/, '').padEnd(14), who.padEnd(20), target, why === '' ? '' : `(${why})`].join(' ').trimEnd()
}

/** A sink that writes each record as a line through `write` (never blocks: writing is synchronous). */
export const decisionLogSink = (write: (line: string) => void, json: boolean): AuditSink => ({
  write: (entry) => write(json ? JSON.stringify(entry) : decisionLine(entry)),
  flush: async () => undefined,
  close: async () => undefined,
  dropped: () => 0
})
