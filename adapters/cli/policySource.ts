import { readFile } from 'node:fs/promises'

import * as E from 'fp-ts/lib/Either.js'

import type { LoadedPolicy } from '../config/PolicyFile.js'
import { readPolicyFile } from '../config/readPolicyFile.js'
import { catalogPolicy } from './catalog.js'
import type { CommonOptions } from './options.js'

/** The policy a command works on: `--policy FILE`, or the bundled catalog with keys from the environment. */
export const loadPolicy = async (options: Pick<CommonOptions, 'policy'>, env: NodeJS.ProcessEnv): Promise<E.Either<ReadonlyArray<string>, LoadedPolicy>> => {
  if (options.policy === undefined) return E.right(catalogPolicy(env))
  const loaded = await readPolicyFile(options.policy)
  return E.isLeft(loaded) ? E.left(loaded.left.messages) : loaded
}

/** Reads the `--upstream-ca` files (PEM). */
export const readCaFiles = async (paths: ReadonlyArray<string>): Promise<E.Either<string, ReadonlyArray<string>>> => {
  const pems: Array<string> = []
  for (const path of paths) {
    try {
      pems.push(await readFile(path, 'utf8'))
    } catch (error) {
      return E.left(`--upstream-ca \`${path}\`: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'}); give the path of a PEM certificate`)
    }
  }
  return E.right(pems)
}
