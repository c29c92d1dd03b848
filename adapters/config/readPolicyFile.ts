import * as E from 'fp-ts/lib/Either.js'

import { readRegularFile } from '../files/readRegularFile.js'
import { MAX_POLICY_BYTES } from './parseDocument.js'
import { parsePolicyText, parsePolicyTextOffThread, type LoadedPolicy, type PolicyError } from './PolicyFile.js'

/** How long a policy read may wait for its turn (another read stuck on a hung mount). */
const POLICY_READ_TIMEOUT_MS = 10_000

/**
 * Reads and decodes a JSON or YAML policy file of at most 4 MiB (a regular file: never a pipe or
 * device). `offThread` parses it on a worker thread, as reloads do, so serving never waits on it.
 */
export const readPolicyFile = async (path: string, options: { readonly offThread?: boolean } = {}): Promise<E.Either<PolicyError, LoadedPolicy>> => {
  const text = await readRegularFile(path, { maxBytes: MAX_POLICY_BYTES, what: 'policy file', lane: 'policy', signal: AbortSignal.timeout(POLICY_READ_TIMEOUT_MS) })
  if (E.isLeft(text)) return E.left({ _tag: 'PolicyError', messages: [text.left.message] })
  return options.offThread === true ? parsePolicyTextOffThread(text.right, path) : parsePolicyText(text.right, path)
}
