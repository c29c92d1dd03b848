import { constants } from 'node:fs'
import { access } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'

import type { AuditSinkDeclaration } from '../config/PolicyFile.js'
import type { AuditSink, Logger } from '../ports.js'
import { httpSink, jsonLinesSink } from './auditSinks.js'
import { expandTemplate } from './credentialSources.js'
import { otlpLogsBody } from './otlpLogs.js'

/** The package version OTLP records name as the service's. */
export const SERVICE_VERSION = '0.1.0'

/** An audit file's directory must exist and be writable: otherwise every decision would go unrecorded. */
export const writableAuditFile = async (path: string, what: string): Promise<string | undefined> => {
  const where = dirname(resolve(path))
  try {
    await access(where, constants.W_OK)
    return undefined
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return `${what} \`${path}\`: ${code === 'ENOENT' ? `the directory \`${where}\` does not exist` : `the directory \`${where}\` is not writable`}; create it or choose another path`
  }
}

const headersOf = async (templates: Readonly<Record<string, string>> | undefined, env: NodeJS.ProcessEnv, where: string): Promise<E.Either<string, Record<string, string>>> => {
  const headers: Record<string, string> = {}
  for (const [name, template] of Object.entries(templates ?? {})) {
    const value = await expandTemplate(template, env)
    if (E.isLeft(value)) return E.left(`${where}.headers.${name}: ${value.left}`)
    headers[name] = value.right
  }
  return E.right(headers)
}

/**
 * Opens the sinks a policy's `audit` list names (docs/spec.md §14), or says which cannot be opened:
 * a file whose directory is missing, a header whose variable is unset. Nothing is opened on failure.
 */
export const openPolicySinks = async (declared: ReadonlyArray<AuditSinkDeclaration>, env: NodeJS.ProcessEnv, log: Logger, origin = 'policy'): Promise<E.Either<ReadonlyArray<string>, ReadonlyArray<AuditSink>>> => {
  const problems: Array<string> = []
  const makers: Array<() => AuditSink> = []
  for (const [i, sink] of declared.entries()) {
    const where = `${origin}: audit[${i}]`
    if ('file' in sink) {
      const unwritable = await writableAuditFile(sink.file, `${where}.file`)
      if (unwritable !== undefined) problems.push(unwritable)
      else makers.push(() => jsonLinesSink({ path: sink.file }, { log }))
      continue
    }
    const endpoint = 'http' in sink ? sink.http : sink.otlp
    const headers = await headersOf(endpoint.headers, env, `${where}.${'http' in sink ? 'http' : 'otlp'}`)
    if (E.isLeft(headers)) {
      problems.push(headers.left)
      continue
    }
    makers.push(() =>
      'http' in sink
        ? httpSink({ url: endpoint.url, headers: headers.right, log })
        : httpSink({ url: endpoint.url, headers: headers.right, log, name: 'OTLP logs endpoint', encode: (batch) => otlpLogsBody(batch, SERVICE_VERSION) })
    )
  }
  return problems.length > 0 ? E.left(problems) : E.right(makers.map((make) => make()))
}
