import * as E from 'fp-ts/lib/Either.js'
import * as t from 'io-ts'

import { buildRouteTable, compileRules, WARNING_SEVERITY, type PolicyInput, type RouteWarning } from '../../core/index.js'
import { clientCodec, clientProblems } from './clients.js'
import { absoluteUrl, closed, enforcementCodec, inspectCodec, modeCodec, nonEmptyString, positiveCount, positiveNumber, secureEndpoint } from './codecs.js'
import { MAX_POLICY_BYTES, parseDocument, parseDocumentOffThread, type DocumentError } from './parseDocument.js'
import { formatErrors } from './reporter.js'

// -------------------------------------------------------------------------------------
// codecs
// -------------------------------------------------------------------------------------

const keyPrefixCodec = new t.Type<string, string, unknown>(
  'a key prefix',
  (u): u is string => typeof u === 'string' && /^[A-Za-z0-9_-]{1,16}$/.test(u),
  (u, c) => (typeof u === 'string' && /^[A-Za-z0-9_-]{1,16}$/.test(u) ? t.success(u) : t.failure(u, c, 'a key prefix is 1 to 16 of A-Z, a-z, 0-9, `_` and `-`, such as `sk-`')),
  t.identity
)

const apiUrls = t.union([nonEmptyString, t.array(nonEmptyString)], 'a URL, host or `regex:` pattern, or a list of them')
const headerTemplates = t.record(t.string, t.string, 'an object of header names to values')

const oauth = closed('OAuth URLs', {}, {
  authorizationUrl: absoluteUrl('authorization'),
  tokenUrl: absoluteUrl('token'),
  revocationUrl: absoluteUrl('revocation'),
  deviceAuthorizationUrl: absoluteUrl('device authorization')
})

/** Credentials as a reference: header templates, a JSON file, a helper command, or an HTTP endpoint. */
const credentialVariants = {
  headers: closed('header credentials', { headers: headerTemplates }, {}),
  file: closed('a credential file', { file: nonEmptyString }, {}),
  exec: closed('a credential helper', { exec: t.array(nonEmptyString, 'a command and its arguments as a list') }, {}),
  url: closed('a credential endpoint', { url: secureEndpoint('credential endpoint') }, { headers: headerTemplates })
}

type CredentialRefOf<K extends keyof typeof credentialVariants> = t.TypeOf<(typeof credentialVariants)[K]>

/** A connection's credential reference. */
export type CredentialRef = CredentialRefOf<'headers'> | CredentialRefOf<'file'> | CredentialRefOf<'exec'> | CredentialRefOf<'url'>

const credentialRef = new t.Type<CredentialRef, unknown, unknown>(
  'a credential reference',
  (u): u is CredentialRef => Object.values(credentialVariants).some((v) => v.is(u)),
  (u, c) => {
    const kinds = typeof u === 'object' && u !== null ? (Object.keys(credentialVariants) as Array<keyof typeof credentialVariants>).filter((k) => k in u) : []
    const kind = kinds.length === 1 || (kinds.length === 2 && kinds.includes('url') && kinds.includes('headers')) ? (kinds.includes('url') ? 'url' : kinds[0]) : undefined
    if (kind === undefined) {
      return t.failure(u, c, 'expected exactly one of `headers` (templates such as "Bearer ${env:API_KEY}"), `file`, `exec` or `url`')
    }
    if (kind === 'exec' && Array.isArray((u as { exec?: unknown }).exec) && (u as { exec: Array<unknown> }).exec.length === 0) {
      return t.failure(u, c, '`exec` needs the command and its arguments, e.g. ["my-helper", "get", "openai"]')
    }
    return credentialVariants[kind].validate(u, c) as t.Validation<CredentialRef>
  },
  t.identity
)

const provider = closed(
  'a provider',
  { name: nonEmptyString },
  // envVar: the variable the provider's SDK reads its key from; `run` fills it with a placeholder,
  // which starts with keyPrefix (the prefix the provider's keys carry, such as `sk-`) for SDKs that check it.
  { apiUrl: apiUrls, oauth, loginCommand: nonEmptyString, envVar: nonEmptyString, keyPrefix: keyPrefixCodec }
)
// Where a connection's credential may be used (docs/spec.md §10): methods, and canonical path patterns
// in which `*` is one segment and a final `**` the rest; checked further by the core's compileRules.
const allow = closed('allow rules', {}, { methods: t.array(nonEmptyString, 'a list of HTTP methods'), paths: t.array(nonEmptyString, 'a list of path patterns') })

const connection = closed(
  'a connection',
  { provider: nonEmptyString, name: nonEmptyString },
  { isDefault: t.boolean, apiUrl: apiUrls, credentials: credentialRef, allow }
)

// A rate (docs/spec.md §14): a whole number of requests per a positive number of seconds.
const rate = closed('a rate', { requests: positiveCount('requests', 1_000_000_000), perSeconds: positiveNumber('perSeconds', 31_536_000) }, {})
const limits = closed('rate limits', {}, { perClient: rate, perHost: rate })

// Where audit records go besides `--audit FILE` (docs/spec.md §14): JSON lines to a file, a JSON
// array POSTed to an endpoint, OTLP/HTTP JSON logs to a collector. Header values may read
// `${env:NAME}` and `${file:PATH}`, so a collector's token need not be written here.
const sinkEndpoint = (what: string) => closed(`an ${what} endpoint`, { url: secureEndpoint(what) }, { headers: headerTemplates })
const auditSink = t.union([closed('a file sink', { file: nonEmptyString }, {}), closed('an HTTP sink', { http: sinkEndpoint('audit') }, {}), closed('an OTLP sink', { otlp: sinkEndpoint('OTLP logs') }, {})], 'one of {file: PATH}, {http: {url, headers?}} or {otlp: {url, headers?}}')

/** A sink the policy names for its audit records. */
export type AuditSinkDeclaration = t.TypeOf<typeof auditSink>

/** The policy file, as decoded. */
export const policyFileCodec = closed(
  'a policy',
  { providers: t.array(provider) },
  {
    mode: modeCodec,
    enforcement: enforcementCodec,
    // `all`: intercept every CONNECT but passthrough hosts, so the tripwire sees all it can (docs/spec.md §13).
    inspect: inspectCodec,
    connections: t.array(connection),
    passthrough: t.array(nonEmptyString),
    denyText: closed('deny text options', {}, { loginCommand: nonEmptyString, dashboardUrl: absoluteUrl('dashboard') }),
    upstream: closed('upstream options', {}, { ca: t.array(nonEmptyString) }),
    modeEndpoint: closed('a mode endpoint', { url: secureEndpoint('mode endpoint') }, { intervalMs: t.number }),
    clients: t.array(clientCodec),
    // Token buckets per client and per destination host (docs/spec.md §14).
    limits,
    audit: t.array(auditSink, 'a list of audit sinks')
  }
)

/** A decoded policy file. */
export type PolicyFile = t.TypeOf<typeof policyFileCodec>

// -------------------------------------------------------------------------------------
// loading
// -------------------------------------------------------------------------------------

/** Why a policy could not be loaded; every message names where and what to change. */
export interface PolicyError {
  readonly _tag: 'PolicyError'
  readonly messages: ReadonlyArray<string>
}

/** A policy that loaded, with what the core needs and the warnings worth showing. */
export interface LoadedPolicy {
  readonly file: PolicyFile
  readonly input: PolicyInput
  readonly warnings: ReadonlyArray<RouteWarning>
}

const policyError = (messages: ReadonlyArray<string>): PolicyError => ({ _tag: 'PolicyError', messages })

/** The core's view of a policy file. */
export const toPolicyInput = (file: PolicyFile): PolicyInput => ({
  providers: file.providers.map((p) => ({
    name: p.name,
    ...(p.apiUrl === undefined ? {} : { apiUrl: p.apiUrl }),
    ...(p.oauth === undefined ? {} : { oauth: p.oauth })
  })),
  connections: (file.connections ?? []).map((c) => ({
    provider: c.provider,
    name: c.name,
    ...(c.isDefault === undefined ? {} : { isDefault: c.isDefault }),
    ...(c.apiUrl === undefined ? {} : { apiUrl: c.apiUrl }),
    ...(c.allow === undefined ? {} : { allow: c.allow })
  })),
  ...(file.passthrough === undefined ? {} : { passthrough: file.passthrough })
})

/** Decodes an already-parsed policy document and checks what only the route table can see. */
export const decodePolicy = (document: unknown): E.Either<PolicyError, LoadedPolicy> => {
  const decoded = policyFileCodec.decode(document)
  if (E.isLeft(decoded)) return E.left(policyError(formatErrors(decoded.left)))
  const file = decoded.right
  const input = toPolicyInput(file)
  const { warnings } = buildRouteTable(input, 'configured')
  // Every connection's rules are checked, not only those of the default connections the table routes.
  const ruleErrors = (file.connections ?? []).flatMap((c, i) => {
    const compiled = compileRules(c.allow)
    return E.isLeft(compiled) ? [{ code: 'invalid_rule' as const, provider: c.provider, detail: `connections[${i}].allow: ${compiled.left}` }] : []
  })
  // The table's `invalid_rule` warnings name only routed connections; ruleErrors name them all.
  const errors = [...warnings.filter((w) => WARNING_SEVERITY[w.code] === 'error' && w.code !== 'invalid_rule'), ...ruleErrors].map((w) => w.detail)
  // A connection is named by its provider and name (a client selects it so): each pair once.
  const pairs = (file.connections ?? []).map((c) => `${c.provider}/${c.name}`)
  for (const [i, pair] of pairs.entries()) if (pairs.indexOf(pair) !== i) errors.push(`connections[${i}]: \`${pair}\` is configured twice; give each connection of a provider its own name`)
  errors.push(...clientProblems(file.clients ?? [], file.connections ?? []))
  if (errors.length > 0) return E.left(policyError(errors))
  return E.right({ file, input, warnings })
}

const fromDocument = (parsed: E.Either<DocumentError, unknown>, origin: string): E.Either<PolicyError, LoadedPolicy> => {
  if (E.isLeft(parsed)) return E.left(policyError([`${origin}${parsed.left.where}: not valid JSON or YAML (${parsed.left.what}); fix the syntax there`]))
  const document = parsed.right
  if (document === null || document === undefined) return E.left(policyError([`${origin}: the file is empty; a policy needs at least \`providers: []\``]))
  const decoded = decodePolicy(document)
  return E.isLeft(decoded) ? E.left(policyError(decoded.left.messages.map((m) => `${origin}: ${m}`))) : decoded
}

const tooLarge = (text: string, origin: string): PolicyError | undefined =>
  text.length > MAX_POLICY_BYTES || Buffer.byteLength(text) > MAX_POLICY_BYTES
    ? policyError([`${origin}: the policy is larger than ${MAX_POLICY_BYTES / 1024 / 1024} MiB; keep it under that (move long lists to regex routes)`])
    : undefined

/** Parses JSON or YAML text (YAML is a superset of JSON) and decodes it; errors never quote the text. */
export const parsePolicyText = (text: string, origin = 'policy'): E.Either<PolicyError, LoadedPolicy> => {
  const large = tooLarge(text, origin)
  return large === undefined ? fromDocument(parseDocument(text), origin) : E.left(large)
}

/** The same as `parsePolicyText`, with the text parsed on a worker thread (reloads while serving). */
export const parsePolicyTextOffThread = async (text: string, origin = 'policy'): Promise<E.Either<PolicyError, LoadedPolicy>> => {
  const large = tooLarge(text, origin)
  return large === undefined ? fromDocument(await parseDocumentOffThread(text), origin) : E.left(large)
}
