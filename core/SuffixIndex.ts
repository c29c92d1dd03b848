// -------------------------------------------------------------------------------------
// model
// -------------------------------------------------------------------------------------

interface Node<A> {
  readonly children: Map<number, Node<A>>
  readonly values: Array<A>
}

/**
 * Values keyed by a literal suffix, looked up by every suffix of a string in one backward walk:
 * cost grows with the length of the host, not with the number of values.
 */
export interface SuffixIndex<A> {
  readonly root: Node<A>
  /** How many values the index holds. */
  readonly size: number
}

// -------------------------------------------------------------------------------------
// constructors
// -------------------------------------------------------------------------------------

const node = <A>(): Node<A> => ({ children: new Map(), values: [] })

/** Builds an index from `[suffix, value]` pairs; the empty suffix is found for every key. */
export const buildSuffixIndex = <A>(entries: ReadonlyArray<readonly [string, A]>): SuffixIndex<A> => {
  const root = node<A>()
  for (const [suffix, value] of entries) {
    let at = root
    for (let i = suffix.length - 1; i >= 0; i--) {
      const code = suffix.charCodeAt(i)
      let next = at.children.get(code)
      if (next === undefined) {
        next = node<A>()
        at.children.set(code, next)
      }
      at = next
    }
    at.values.push(value)
  }
  return { root, size: entries.length }
}

// -------------------------------------------------------------------------------------
// destructors
// -------------------------------------------------------------------------------------

const NONE: ReadonlyArray<never> = []

/** Every value whose suffix `key` ends with, shortest suffix first; a shared empty array when none. */
export const valuesWithSuffixOf = <A>(index: SuffixIndex<A>, key: string): ReadonlyArray<A> => {
  let found: Array<A> | undefined
  let at: Node<A> | undefined = index.root
  for (let i = key.length; at !== undefined; i--) {
    if (at.values.length > 0) found = found === undefined ? [...at.values] : [...found, ...at.values]
    if (i === 0) break
    at = at.children.get(key.charCodeAt(i - 1))
  }
  return found ?? NONE
}
