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
  return { root }
}

// -------------------------------------------------------------------------------------
// destructors
// -------------------------------------------------------------------------------------

/** Calls `f` with every value whose suffix ends `key`, shortest suffix first; stops when `f` returns true. */
export const someWithSuffixOf = <A>(index: SuffixIndex<A>, key: string, f: (value: A) => boolean): boolean => {
  let at: Node<A> | undefined = index.root
  for (let i = key.length; at !== undefined; i--) {
    for (const value of at.values) if (f(value)) return true
    if (i === 0) break
    at = at.children.get(key.charCodeAt(i - 1))
  }
  return false
}
