import { readFile } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

import type { AuditRecord, RecordedRequest } from '../../core/index.js'
import type { LoadedPolicy } from '../config/PolicyFile.js'
import type { Io } from './io.js'
import type { CommonOptions } from './options.js'
import { loadPolicy } from './policySource.js'

// An audit file (JSON lines, as jsonLinesSink writes them) read back for `replay` and `learn`:
// its records grouped into decisions. Bad input is an error naming the line, never a crash.

/** One recorded decision: its request, client and records, and the line its first record is on. */
export interface RecordedDecision {
  readonly line: number
  readonly request: RecordedRequest
  readonly client: string | null
  readonly records: ReadonlyArray<AuditRecord>
}

/** An audit file's decisions, and how many records were not decisions to replay (a refusal for want of proxy authentication). */
export interface AuditFile {
  readonly decisions: ReadonlyArray<RecordedDecision>
  readonly records: number
  readonly skipped: number
}

const EVENTS = new Set(['proxy_inject', 'proxy_miss', 'proxy_no_credentials', 'proxy_deny', 'proxy_would_deny'])

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === 'object' && u !== null && !Array.isArray(u)

const requestOf = (u: unknown): RecordedRequest | undefined => {
  if (!isObject(u) || typeof u['scheme'] !== 'string' || typeof u['host'] !== 'string' || typeof u['port'] !== 'number' || typeof u['method'] !== 'string') return undefined
  if (u['path'] !== undefined && typeof u['path'] !== 'string') return undefined
  return { scheme: u['scheme'], host: u['host'], port: u['port'], method: u['method'], ...(typeof u['path'] === 'string' ? { path: u['path'] } : {}) }
}

/** Parses an audit file's text. */
export const parseAuditText = (text: string, name: string): E.Either<string, AuditFile> => {
  const lines = text.split('\n')
  const cutOff = !text.endsWith('\n') && text !== ''
  const byId = new Map<string, { line: number; request: RecordedRequest; client: string | null; records: Array<AuditRecord> }>()
  let records = 0
  let skipped = 0
  for (const [i, raw] of lines.entries()) {
    const line = i + 1
    if (raw.trim() === '') continue
    let entry: unknown
    try {
      entry = JSON.parse(raw)
    } catch {
      const last = i === lines.length - 1
      return E.left(last && cutOff ? `${name}:${line}: the last line is cut off (was the file still being written?); remove it or wait for the proxy to flush` : `${name}:${line}: not a JSON record; an audit file holds one JSON object per line`)
    }
    if (!isObject(entry) || typeof entry['decisionId'] !== 'string' || typeof entry['event'] !== 'string' || !EVENTS.has(entry['event']) || !isObject(entry['metadata'])) {
      return E.left(`${name}:${line}: not an egress-guard audit record (it needs decisionId, event and metadata)`)
    }
    if (!('request' in entry)) {
      return E.left(`${name}:${line}: a record of an older shape, without \`request\`: it cannot be decided again; replay records written by this version or later`)
    }
    records++
    if (entry['request'] === null) {
      skipped++
      continue
    }
    const request = requestOf(entry['request'])
    if (request === undefined) return E.left(`${name}:${line}: \`request\` needs scheme, host, port and method (and path for a request)`)
    const record: AuditRecord = {
      event: entry['event'] as AuditRecord['event'],
      source: 'external',
      provider: typeof entry['provider'] === 'string' ? entry['provider'] : null,
      connection: typeof entry['connection'] === 'string' ? entry['connection'] : null,
      metadata: entry['metadata'] as Record<string, string>
    }
    const id = entry['decisionId']
    const known = byId.get(id)
    if (known === undefined) byId.set(id, { line, request, client: typeof entry['client'] === 'string' ? entry['client'] : null, records: [record] })
    else known.records.push(record)
  }
  return E.right({ decisions: [...byId.values()], records, skipped })
}

/** Reads and parses an audit file. */
export const readAuditFile = async (path: string): Promise<E.Either<string, AuditFile>> => {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    return E.left(`cannot read the audit file \`${path}\` (${(error as NodeJS.ErrnoException).code ?? 'error'}); give the path of a JSON-lines audit file`)
  }
  return parseAuditText(text, path)
}

/**
 * What `replay` and `learn` start from: the audit file named by the one argument, and the policy
 * (`--policy`, or the bundled catalog). Undefined after saying what is wrong (exit 2: bad input).
 */
export const auditAndPolicy = async (options: Pick<CommonOptions, 'positionals' | 'policy'>, io: Io, usage: string): Promise<{ readonly audit: AuditFile; readonly policy: LoadedPolicy } | undefined> => {
  const [path, ...extra] = options.positionals
  if (path === undefined || extra.length > 0) {
    io.err(`usage: ${usage}`)
    return undefined
  }
  const audit = await readAuditFile(path)
  if (E.isLeft(audit)) {
    io.err(`error: ${audit.left}`)
    return undefined
  }
  const loaded = await loadPolicy(options, io.env)
  if (E.isLeft(loaded)) {
    for (const message of loaded.left) io.err(`error: ${message}`)
    return undefined
  }
  return { audit: audit.right, policy: loaded.right }
}
