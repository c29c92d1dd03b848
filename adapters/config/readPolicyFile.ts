import { readFile } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

import { parsePolicyText, type LoadedPolicy, type PolicyError } from './PolicyFile.js'

/** Reads and decodes a JSON or YAML policy file. */
export const readPolicyFile = async (path: string): Promise<E.Either<PolicyError, LoadedPolicy>> => {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error'
    return E.left({ _tag: 'PolicyError', messages: [`${path}: cannot read the policy file (${code}); check the path and its permissions`] })
  }
  return parsePolicyText(text, path)
}
