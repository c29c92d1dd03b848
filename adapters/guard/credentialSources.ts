import { spawn } from 'node:child_process'

import * as E from 'fp-ts/lib/Either.js'
import * as t from 'io-ts'

import { unavailable } from '../../core/Credentials.js'
import type { CredentialOutcome } from '../../core/index.js'
import type { CredentialRef, PolicyFile } from '../config/PolicyFile.js'
import { readRegularFile } from '../files/readRegularFile.js'
import type { CredentialSource } from '../ports.js'

// Every failure here becomes `Unavailable` with a message that names the reference (variable,
// file, command, endpoint) and never a value read from it.

/** The document a credential file, helper or endpoint returns: `{"headers": {...}, "expiresAt": "..."}`. */
const credentialDocument = t.intersection([
  t.type({ headers: t.record(t.string, t.string) }),
  t.partial({ expiresAt: t.union([t.string, t.null]) })
])

const MAX_DOCUMENT_BYTES = 64 * 1024

/** Reads a credential document; errors say what is wrong without quoting the text. */
export const parseCredentialDocument = (text: string, origin: string): CredentialOutcome => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return unavailable(`${origin} did not return JSON of the form {"headers": {...}, "expiresAt": "..."}`)
  }
  const decoded = credentialDocument.decode(json)
  if (E.isLeft(decoded)) return unavailable(`${origin} returned JSON without a "headers" object of strings`)
  const { headers, expiresAt } = decoded.right
  if (expiresAt === undefined || expiresAt === null) return { _tag: 'Available', headers }
  const when = new Date(expiresAt)
  if (Number.isNaN(when.getTime())) return unavailable(`${origin} returned an "expiresAt" that is not an ISO 8601 date`)
  return { _tag: 'Available', headers, expiresAt: when }
}

/** The variables a credential reference's header templates read (`${env:NAME}`). */
export const variablesRead = (ref: CredentialRef | undefined): ReadonlyArray<string> => {
  const templates = ref !== undefined && 'headers' in ref && ref.headers !== undefined ? Object.values(ref.headers) : []
  return templates.flatMap((template) => [...template.matchAll(TEMPLATE_REFERENCE)].flatMap(([, kind, name = '']) => (kind === 'env' && name !== '' ? [name] : [])))
}

/** A template's references: `${env:NAME}` and `${file:PATH}` (kind, then name). */
export const TEMPLATE_REFERENCE = /\$\{(env|file):([^}]+)\}/g
// `${base64:TEXT}`, where TEXT may hold `${env:…}` and `${file:…}`: what Basic auth needs
// (`Basic ${base64:x-access-token:${env:GITHUB_TOKEN}}`).
const BASE64 = /\$\{base64:((?:[^${}]|\$(?!\{)|\$\{(?:env|file):[^}]+\})*)\}/g

const expandPlaceholders = async (template: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<E.Either<string, string>> => {
  const parts: Array<string> = []
  let last = 0
  for (const match of template.matchAll(TEMPLATE_REFERENCE)) {
    const [whole, kind, name = ''] = match
    parts.push(template.slice(last, match.index))
    last = match.index + whole.length
    if (kind === 'env') {
      const value = env[name]
      if (value === undefined || value === '') return E.left(`environment variable \`${name}\` is not set`)
      parts.push(value)
    } else {
      const text = await readRegularFile(name, { maxBytes: MAX_DOCUMENT_BYTES, what: 'credential file', ...(signal === undefined ? {} : { signal }) })
      if (E.isLeft(text)) return E.left(text.left.message)
      parts.push(text.right.trim())
    }
  }
  parts.push(template.slice(last))
  return E.right(parts.join(''))
}

/** Expands `${env:NAME}`, `${file:PATH}` and `${base64:TEXT}` (TEXT expanded first) in a header template. */
export const expandTemplate = async (template: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<E.Either<string, string>> => {
  const parts: Array<string> = []
  let last = 0
  for (const match of template.matchAll(BASE64)) {
    const [whole, inner = ''] = match
    const before = await expandPlaceholders(template.slice(last, match.index), env, signal)
    if (E.isLeft(before)) return before
    const text = await expandPlaceholders(inner, env, signal)
    if (E.isLeft(text)) return text
    parts.push(before.right, Buffer.from(text.right, 'utf8').toString('base64'))
    last = match.index + whole.length
  }
  const rest = await expandPlaceholders(template.slice(last), env, signal)
  if (E.isLeft(rest)) return rest
  parts.push(rest.right)
  return E.right(parts.join(''))
}

const expandHeaders = async (templates: Readonly<Record<string, string>>, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<E.Either<string, Record<string, string>>> => {
  const headers: Record<string, string> = {}
  for (const [name, template] of Object.entries(templates)) {
    const value = await expandTemplate(template, env, signal)
    if (E.isLeft(value)) return value
    headers[name] = value.right
  }
  return E.right(headers)
}

/** How long a helper has to exit after SIGTERM before its process group is killed. */
export const HELPER_KILL_GRACE_MS = 2_000

/**
 * Runs a credential helper in a process group of its own, so a stop reaches what it started too:
 * SIGTERM when the resolution is abandoned (timeout) or its output is too large, SIGKILL after
 * HELPER_KILL_GRACE_MS if anything of it is still there.
 */
const runHelper = (command: ReadonlyArray<string>, signal: AbortSignal, env: NodeJS.ProcessEnv): Promise<CredentialOutcome> =>
  new Promise((resolve) => {
    const [file = '', ...args] = command
    const name = `credential helper \`${file}\``
    let stdout = ''
    let settled = false
    const done = (outcome: CredentialOutcome) => {
      if (!settled) resolve(outcome)
      settled = true
    }
    if (signal.aborted) return done(unavailable(`${name} was stopped`))
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'ignore'], env, detached: true })
    const group = (sig: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig)
      } catch {
        // Already gone.
      }
    }
    let stopped = false
    const stop = (): void => {
      if (stopped) return
      stopped = true
      group('SIGTERM')
      setTimeout(() => group('SIGKILL'), HELPER_KILL_GRACE_MS).unref()
    }
    const onAbort = (): void => {
      stop()
      done(unavailable(`${name} was stopped`))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk
      if (stdout.length > MAX_DOCUMENT_BYTES) {
        stop()
        done(unavailable(`${name} printed more than ${MAX_DOCUMENT_BYTES} bytes`))
      }
    })
    child.on('error', (error: NodeJS.ErrnoException) => done(unavailable(`${name} could not be started (${error.code ?? 'error'})`)))
    child.on('close', (code) => {
      signal.removeEventListener('abort', onAbort)
      done(code === 0 ? parseCredentialDocument(stdout, name) : unavailable(`${name} exited with code ${code}`))
    })
  })

const fetchEndpoint = async (url: string, templates: Readonly<Record<string, string>> | undefined, signal: AbortSignal, env: NodeJS.ProcessEnv): Promise<CredentialOutcome> => {
  const shown = `credential endpoint \`${new URL(url).origin}${new URL(url).pathname}\``
  const headers = templates === undefined ? E.right({}) : await expandHeaders(templates, env, signal)
  if (E.isLeft(headers)) return unavailable(`${shown}: ${headers.left}`)
  try {
    const response = await fetch(url, { headers: { accept: 'application/json', ...headers.right }, signal, redirect: 'error' })
    if (!response.ok) return unavailable(`${shown} answered HTTP ${response.status}`)
    const text = await response.text()
    return text.length > MAX_DOCUMENT_BYTES ? unavailable(`${shown} returned more than ${MAX_DOCUMENT_BYTES} bytes`) : parseCredentialDocument(text, shown)
  } catch (error) {
    return unavailable(signal.aborted ? `${shown} was stopped` : `${shown} could not be reached (${(error as { cause?: { code?: string } }).cause?.code ?? 'error'})`)
  }
}

/** Resolves one credential reference. */
export const resolveReference = async (ref: CredentialRef, signal: AbortSignal, env: NodeJS.ProcessEnv = process.env): Promise<CredentialOutcome> => {
  if ('exec' in ref) return runHelper(ref.exec, signal, env)
  if ('url' in ref) return fetchEndpoint(ref.url, ref.headers, signal, env)
  if ('file' in ref) {
    const text = await readRegularFile(ref.file, { maxBytes: MAX_DOCUMENT_BYTES, what: 'credential file', signal })
    return E.isLeft(text) ? unavailable(text.left.message) : parseCredentialDocument(text.right, `credential file \`${ref.file}\``)
  }
  const headers = await expandHeaders(ref.headers, env, signal)
  return E.isLeft(headers) ? unavailable(headers.left) : { _tag: 'Available', headers: headers.right }
}

/** The credential source a policy file describes: each connection's `credentials` reference. */
export const policyCredentialSource = (file: PolicyFile, env: NodeJS.ProcessEnv = process.env): CredentialSource => {
  const refs = new Map<string, CredentialRef>()
  for (const c of file.connections ?? []) if (c.credentials !== undefined) refs.set(`${c.provider}\u0000${c.name}`, c.credentials)
  const envVars = new Map(file.providers.flatMap((p) => (p.envVar === undefined ? [] : [[p.name, p.envVar] as const])))
  return {
    resolve: async (provider, connection, signal) => {
      const ref = refs.get(`${provider}\u0000${connection}`)
      if (ref !== undefined) return resolveReference(ref, signal, env)
      const variable = envVars.get(provider)
      return unavailable(
        variable === undefined
          ? `connection \`${connection}\` of provider \`${provider}\` has no credentials configured`
          : `provider \`${provider}\` has no credentials: set ${variable}`
      )
    }
  }
}
