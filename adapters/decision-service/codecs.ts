import * as E from 'fp-ts/lib/Either.js'
import * as t from 'io-ts'

import type { RequestFacts } from '../../core/index.js'
import { formatErrors } from '../config/reporter.js'

// The wire shapes of the decision service, decoded at the edge with io-ts. Unknown keys are
// rejected, so a caller's typo (`hostheader`) is an error rather than a silently ignored fact.

const port = new t.Type<number, number, unknown>(
  'a port number from 1 to 65535',
  (u): u is number => Number.isInteger(u) && (u as number) >= 1 && (u as number) <= 65535,
  (u, c) => (Number.isInteger(u) && (u as number) >= 1 && (u as number) <= 65535 ? t.success(u as number) : t.failure(u, c)),
  t.identity
)

const exact = <R extends t.Props, O extends t.Props>(required: R, optional: O, name: string) => {
  const codec = t.intersection([t.type(required), t.partial(optional)], name)
  const known = new Set([...Object.keys(required), ...Object.keys(optional)])
  return (u: unknown): E.Either<ReadonlyArray<string>, t.TypeOf<typeof codec>> => {
    if (typeof u !== 'object' || u === null || Array.isArray(u)) return E.left([`expected ${name} (a JSON object)`])
    const extra = Object.keys(u).filter((k) => !known.has(k))
    if (extra.length > 0) return E.left(extra.map((k) => `${k}: unknown key \`${k}\`: expected one of ${[...known].map((x) => `\`${x}\``).join(', ')}`))
    const decoded = codec.decode(u)
    return E.isLeft(decoded) ? E.left(formatErrors(decoded.left)) : E.right(decoded.right)
  }
}

/** Decodes `POST /v1/decide`: the request facts of docs/spec.md §8, with the `client` the caller authenticated (§9). */
export const decodeFacts: (u: unknown) => E.Either<ReadonlyArray<string>, RequestFacts> = exact(
  { scheme: t.string, host: t.string, port, path: t.string, method: t.string },
  { hostHeader: t.string, sni: t.string, absoluteUriHost: t.string, dialedAddress: t.string, client: t.string },
  'request facts'
) as (u: unknown) => E.Either<ReadonlyArray<string>, RequestFacts>

/** Decodes `POST /v1/tunnel`: a CONNECT authority. */
export const decodeTunnel = exact({ host: t.string, port }, { client: t.string }, 'a tunnel query')
