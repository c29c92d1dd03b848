import type * as t from 'io-ts'

// io-ts errors as messages that name the path and the fix. Values are never echoed: a policy may
// hold inline credentials, and an error message must not carry them into logs.

const tagOf = (entry: t.ContextEntry | undefined): string | undefined => (entry?.type as { _tag?: string } | undefined)?._tag

// Union and intersection members appear in the context under their index: not a path step.
const isBranch = (context: t.Context, i: number): boolean => {
  const parent = tagOf(context[i - 1])
  return parent === 'UnionType' || parent === 'IntersectionType'
}

const pathOf = (context: t.Context): string => {
  let path = ''
  for (let i = 1; i < context.length; i++) {
    const key = context[i]?.key ?? ''
    if (isBranch(context, i) || key === '') continue
    path += /^\d+$/.test(key) ? `[${key}]` : path === '' ? key : `.${key}`
  }
  return path === '' ? '(top level)' : path
}

// The type a value failed: the union itself when every member failed.
const expectedOf = (context: t.Context): string => {
  const last = context.length - 1
  const entry = isBranch(context, last) ? context[last - 1] : context[last]
  return entry?.type.name ?? 'a valid value'
}

const describe = (value: unknown): string =>
  value === undefined ? 'nothing' : value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value === 'object' ? 'an object' : `a ${typeof value}`

/** One readable line per failing path: where, what was expected, what kind of value was found. */
export const formatErrors = (errors: t.Errors): ReadonlyArray<string> => {
  const lines = new Map<string, string>()
  for (const error of errors) {
    const where = pathOf(error.context)
    if (lines.has(where)) continue
    lines.set(where, error.message !== undefined ? `${where}: ${error.message}` : `${where}: expected ${expectedOf(error.context)}, got ${describe(error.value)}`)
  }
  return [...lines.values()]
}
