import * as E from 'fp-ts/lib/Either.js'
import * as t from 'io-ts'

import { buildRouteTable, compileRules, parseEnforcement, parseMode, PROXY_MODES, WARNING_SEVERITY, type Enforcement, type PolicyInput, type ProxyMode, type RouteWarning } from '../../core/index.js'
import { MAX_POLICY_BYTES, parseDocument, parseDocumentOffThread, type DocumentError } from './parseDocument.js'
import { formatErrors } from './reporter.js'

// -------------------------------------------------------------------------------------
// codecs
// -------------------------------------------------------------------------------------

const nonEmptyString = new t.Type<string, string, unknown>(
  'a non-empty string',
  (u): u is string => typeof u === 'string' && u.trim() !== '',
  (u, c) => (typeof u === 'string' && u.trim() !== '' ? t.success(u) : t.failure(u, c)),
  t.identity
)

const absoluteUrl = (what: string) =>
  new t.Type<string, string, unknown>(
    `an absolute ${what} URL`,
    (u): u is string => typeof u === 'string',
    (u, c) => {
      if (typeof u !== 'string') return t.failure(u, c)
      try {
        const url = new URL(u)
        return url.protocol === 'https:' || url.protocol === 'http:' ? t.success(u) : t.failure(u, c, `expected an http(s) URL for the ${what}`)
      } catch {
        return t.failure(u, c, `expected an absolute ${what} URL such as https://example.com/path`)
      }
    },
    t.identity
  )

// Endpoints that carry credentials or steer the mode: https, or plain http on loopback only.
const secureEndpoint = (what: string) =>
  new t.Type<string, string, unknown>(
    `an https ${what} URL (http only on loopback)`,
    (u): u is string => typeof u === 'string',
    (u, c) => {
      if (typeof u !== 'string') return t.failure(u, c)
      try {
        const url = new URL(u)
        const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)
        if (url.protocol === 'https:' || (url.protocol === 'http:' && loopback)) return t.success(u)
        return t.failure(u, c, `the ${what} must be https (plain http only on 127.0.0.1, ::1 or localhost): anyone on the path could read or change what it answers`)
      } catch {
        return t.failure(u, c, `expected an absolute ${what} URL such as https://example.com/path`)
      }
    },
    t.identity
  )

const modeCodec = new t.Type<ProxyMode, string, unknown>(
  'a mode',
  (u): u is ProxyMode => typeof u === 'string' && (PROXY_MODES as ReadonlyArray<string>).includes(u),
  (u, c) => {
    const mode = parseMode(u)
    return E.isRight(mode) ? t.success(mode.right) : t.failure(u, c, mode.left.message)
  },
  t.identity
)

const enforcementCodec = new t.Type<Enforcement, string, unknown>(
  'an enforcement',
  (u): u is Enforcement => u === 'enforce' || u === 'report',
  (u, c) => {
    const enforcement = parseEnforcement(u)
    return E.isRight(enforcement) ? t.success(enforcement.right) : t.failure(u, c, enforcement.left.message)
  },
  t.identity
)

/** An object with required and optional keys; any other key is an error naming the allowed ones. */
const closed = <R extends t.Props, O extends t.Props>(name: string, required: R, optional: O) => {
  const inner = t.intersection([t.type(required), t.partial(optional)])
  const requiredPart = t.type(required)
  const optionalPart = t.partial(optional)
  const known = [...Object.keys(required), ...Object.keys(optional)]
  return new t.Type<t.TypeOf<typeof inner>, t.OutputOf<typeof inner>, unknown>(
    name,
    inner.is,
    (u, c) => {
      if (typeof u !== 'object' || u === null || Array.isArray(u)) return t.failure(u, c)
      const unknownKeys = Object.keys(u).filter((k) => !known.includes(k))
      if (unknownKeys.length > 0) {
        return t.failures(
          unknownKeys.map((k) => ({
            value: (u as Record<string, unknown>)[k],
            context: [...c, { key: k, type: t.never, actual: undefined }],
            message: `unknown key \`${k}\`: expected one of ${known.map((x) => `\`${x}\``).join(', ')}`
          }))
        )
      }
      // Both parts validate against the same context, so error paths hold only real keys.
      const left = requiredPart.validate(u, c)
      const right = optionalPart.validate(u, c)
      if (E.isLeft(left) || E.isLeft(right)) return t.failures([...(E.isLeft(left) ? left.left : []), ...(E.isLeft(right) ? right.left : [])])
      return t.success({ ...left.right, ...right.right } as t.TypeOf<typeof inner>)
    },
    inner.encode
  )
}

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
  // envVar: the variable the provider's SDK reads its key from; `run` fills it with a placeholder.
  { apiUrl: apiUrls, oauth, loginCommand: nonEmptyString, envVar: nonEmptyString }
)
// Where a connection's credential may be used (docs/spec.md §10): methods, and canonical path patterns
// in which `*` is one segment and a final `**` the rest; checked further by the core's compileRules.
const allow = closed('allow rules', {}, { methods: t.array(nonEmptyString, 'a list of HTTP methods'), paths: t.array(nonEmptyString, 'a list of path patterns') })

const connection = closed(
  'a connection',
  { provider: nonEmptyString, name: nonEmptyString },
  { isDefault: t.boolean, apiUrl: apiUrls, credentials: credentialRef, allow }
)

/** The policy file, as decoded. */
export const policyFileCodec = closed(
  'a policy',
  { providers: t.array(provider) },
  {
    mode: modeCodec,
    enforcement: enforcementCodec,
    connections: t.array(connection),
    passthrough: t.array(nonEmptyString),
    denyText: closed('deny text options', {}, { loginCommand: nonEmptyString, dashboardUrl: absoluteUrl('dashboard') }),
    upstream: closed('upstream options', {}, { ca: t.array(nonEmptyString) }),
    modeEndpoint: closed('a mode endpoint', { url: secureEndpoint('mode endpoint') }, { intervalMs: t.number })
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
  const errors = [...warnings.filter((w) => WARNING_SEVERITY[w.code] === 'error' && w.code !== 'invalid_rule'), ...ruleErrors]
  if (errors.length > 0) return E.left(policyError(errors.map((w) => w.detail)))
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
