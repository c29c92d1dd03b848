/** Checks a count option: a whole number of at least 1, or an error that names it. */
export const atLeastOne = (name: string, value: number): number => {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`\`${name}\` is \`${String(value)}\`: expected a whole number of at least 1`)
  return value
}
