import * as E from 'fp-ts/lib/Either.js'

// The proxy libraries are optional peer dependencies: a command that needs one loads it
// only when it runs, and a missing one is named with the command that installs it.

/** The majors package.json's peer ranges accept, as `npm install` arguments. */
export const PINNED = { 'http-mitm-proxy': 'http-mitm-proxy@1', mockttp: 'mockttp@4' } as const

/** True when `error` is Node failing to find a module (ESM or CommonJS). */
const isMissingModule = (error: unknown): boolean => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}

/** Runs `load`; a missing module becomes Left(what to install), any other failure is thrown on. */
export const loadOptional = async <A>(load: () => Promise<A>, needs: string, libraries: ReadonlyArray<keyof typeof PINNED>, otherwise?: string): Promise<E.Either<string, A>> => {
  try {
    return E.right(await load())
  } catch (error) {
    if (!isMissingModule(error)) throw error
    return E.left(`${needs}: run \`npm install ${libraries.map((l) => PINNED[l]).join(' ')}\` next to egress-guard${otherwise === undefined ? '' : `, or ${otherwise}`}`)
  }
}
