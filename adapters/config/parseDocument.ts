import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

import * as E from 'fp-ts/lib/Either.js'
import type * as Yaml from 'yaml'

/** The largest policy text read or parsed: a larger one is refused before any parsing. */
export const MAX_POLICY_BYTES = 4 * 1024 * 1024

/** Why a policy text is not a document; never quotes the text. */
export interface DocumentError {
  readonly _tag: 'DocumentError'
  /** Where, as `:line:col`, when the parser knows. */
  readonly where: string
  /** What, in words (`unexpected token`…). */
  readonly what: string
}

const OPTIONS = { prettyErrors: true, uniqueKeys: true } as const

// The YAML parser is loaded when a policy text is first parsed: `run` on the bundled catalog never
// needs it, and it costs every start that loads it.
const local = createRequire(typeof __filename === 'string' ? __filename : import.meta.url)
let yaml: typeof Yaml | undefined
const yamlNow = (): typeof Yaml => (yaml ??= local('yaml') as typeof Yaml)

const documentError = (error: unknown): DocumentError => {
  const parseError = error instanceof yamlNow().YAMLParseError ? error : undefined
  const linePos = parseError?.linePos
  return {
    _tag: 'DocumentError',
    where: linePos === undefined ? '' : `:${linePos[0].line}:${linePos[0].col}`,
    what: parseError === undefined ? 'unreadable document' : parseError.code.toLowerCase().replace(/_/g, ' ')
  }
}

/** Parses JSON or YAML text (YAML is a superset of JSON) on this thread. */
export const parseDocument = (text: string): E.Either<DocumentError, unknown> => {
  try {
    return E.right(yamlNow().parse(text, OPTIONS))
  } catch (error) {
    return E.left(documentError(error))
  }
}

// The worker parses only; the document comes back as a structured clone (plain data). It loads
// `yaml` from the path this module resolves, so it works wherever egress-guard is installed.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { parse, YAMLParseError } = require(workerData.yaml)
try {
  parentPort.postMessage({ ok: true, document: parse(workerData.text, workerData.options) })
} catch (error) {
  const yaml = error instanceof YAMLParseError
  const pos = yaml && error.linePos ? error.linePos[0] : undefined
  parentPort.postMessage({ ok: false, where: pos ? ':' + pos.line + ':' + pos.col : '', what: yaml ? error.code.toLowerCase().replace(/_/g, ' ') : 'unreadable document' })
}
`

/** A parse that takes longer than this (4 MiB takes about 3 s here) is given up. */
const PARSE_TIMEOUT_MS = 30_000

const yamlEntry = (): string => local.resolve('yaml')

/**
 * Parses JSON or YAML text on a worker thread, so that a large policy (a reload while the proxy
 * serves) never holds the event loop: YAML takes about 0.7 s a MiB here.
 */
export const parseDocumentOffThread = (text: string): Promise<E.Either<DocumentError, unknown>> =>
  new Promise((resolve) => {
    let worker: Worker
    try {
      worker = new Worker(WORKER, { eval: true, workerData: { text, yaml: yamlEntry(), options: OPTIONS } })
    } catch {
      resolve(parseDocument(text)) // no worker to be had: parse here rather than not at all
      return
    }
    // Settled once: by the answer, or by the worker failing, exiting without one, or taking too long.
    const timer = setTimeout(() => settle(E.left({ _tag: 'DocumentError', where: '', what: `parse took longer than ${PARSE_TIMEOUT_MS / 1000} s` })), PARSE_TIMEOUT_MS)
    timer.unref()
    const settle = (outcome: E.Either<DocumentError, unknown>): void => {
      clearTimeout(timer)
      resolve(outcome)
      void worker.terminate()
    }
    worker.once('message', (message: { ok: true; document: unknown } | { ok: false; where: string; what: string }) =>
      settle(message.ok ? E.right(message.document) : E.left({ _tag: 'DocumentError', where: message.where, what: message.what }))
    )
    worker.once('error', () => settle(E.left({ _tag: 'DocumentError', where: '', what: 'parser failed' })))
    worker.once('exit', () => settle(E.left({ _tag: 'DocumentError', where: '', what: 'parser stopped without an answer' })))
  })
