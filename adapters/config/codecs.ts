import * as E from 'fp-ts/lib/Either.js'
import * as t from 'io-ts'

import { parseEnforcement, parseMode, PROXY_MODES, type Enforcement, type ProxyMode } from '../../core/index.js'

// The io-ts building blocks of the policy file's codecs: closed objects (an unknown key is an
// error naming the known ones), URLs, endpoints, modes and enforcements.

/** A string with something in it. */
export const nonEmptyString = new t.Type<string, string, unknown>(
  'a non-empty string',
  (u): u is string => typeof u === 'string' && u.trim() !== '',
  (u, c) => (typeof u === 'string' && u.trim() !== '' ? t.success(u) : t.failure(u, c)),
  t.identity
)

/** A whole number from 1 to `max`. */
export const positiveCount = (what: string, max: number) =>
  new t.Type<number, number, unknown>(
    `a whole number of ${what} from 1 to ${max}`,
    (u): u is number => Number.isInteger(u) && (u as number) >= 1 && (u as number) <= max,
    (u, c) => (Number.isInteger(u) && (u as number) >= 1 && (u as number) <= max ? t.success(u as number) : t.failure(u, c, `\`${what}\` must be a whole number from 1 to ${max}`)),
    t.identity
  )

/** A number above 0 and at most `max`. */
export const positiveNumber = (what: string, max: number) =>
  new t.Type<number, number, unknown>(
    `a number of ${what} above 0`,
    (u): u is number => typeof u === 'number' && u > 0 && u <= max,
    (u, c) => (typeof u === 'number' && Number.isFinite(u) && u > 0 && u <= max ? t.success(u) : t.failure(u, c, `\`${what}\` must be a number above 0 and at most ${max}`)),
    t.identity
  )

/** An absolute http(s) URL. */
export const absoluteUrl = (what: string) =>
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

/** Why `u` is not an endpoint that may carry credentials or steer the proxy (https, or plain http on loopback only); undefined when it is. */
export const insecureEndpoint = (u: string, what: string): string | undefined => {
  let url: URL
  try {
    url = new URL(u)
  } catch {
    return `expected an absolute ${what} URL such as https://example.com/path`
  }
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)
  if (url.protocol === 'https:' || (url.protocol === 'http:' && loopback)) return undefined
  return `the ${what} must be https (plain http only on 127.0.0.1, ::1 or localhost): anyone on the path could read or change what it answers`
}

/** An endpoint that carries credentials or steers the mode: https, or plain http on loopback only. */
export const secureEndpoint = (what: string) =>
  new t.Type<string, string, unknown>(
    `an https ${what} URL (http only on loopback)`,
    (u): u is string => typeof u === 'string',
    (u, c) => {
      if (typeof u !== 'string') return t.failure(u, c)
      const problem = insecureEndpoint(u, what)
      return problem === undefined ? t.success(u) : t.failure(u, c, problem)
    },
    t.identity
  )

/** One of the four modes. */
export const modeCodec = new t.Type<ProxyMode, string, unknown>(
  'a mode',
  (u): u is ProxyMode => typeof u === 'string' && (PROXY_MODES as ReadonlyArray<string>).includes(u),
  (u, c) => {
    const mode = parseMode(u)
    return E.isRight(mode) ? t.success(mode.right) : t.failure(u, c, mode.left.message)
  },
  t.identity
)

/** `enforce` or `report`. */
export const enforcementCodec = new t.Type<Enforcement, string, unknown>(
  'an enforcement',
  (u): u is Enforcement => u === 'enforce' || u === 'report',
  (u, c) => {
    const enforcement = parseEnforcement(u)
    return E.isRight(enforcement) ? t.success(enforcement.right) : t.failure(u, c, enforcement.left.message)
  },
  t.identity
)

/** `routed` (the default: intercept hosts with routes) or `all` (intercept every CONNECT but passthrough hosts, docs/spec.md §13). */
export const inspectCodec = new t.Type<'routed' | 'all', string, unknown>(
  'an inspect setting',
  (u): u is 'routed' | 'all' => u === 'routed' || u === 'all',
  (u, c) =>
    u === 'routed' || u === 'all'
      ? t.success(u)
      : t.failure(u, c, `unknown inspect setting \`${typeof u === 'string' ? u.slice(0, 64) : typeof u}\`: expected routed (intercept hosts with routes) or all (every host but passthrough ones, so the tripwire sees them)`),
  t.identity
)

/** An object with required and optional keys; any other key is an error naming the allowed ones. */
export const closed = <R extends t.Props, O extends t.Props>(name: string, required: R, optional: O) => {
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
