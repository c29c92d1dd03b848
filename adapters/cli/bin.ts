import { main } from './main.js'

// The proxy libraries report through the console (http-mitm-proxy: debug/info/error; mockttp:
// log/warn/error), partly on stdout, where it would corrupt `serve --json` and a `run` child's
// output. The CLI speaks for itself (process.stdout/stderr), so their chatter is silenced here
// and nowhere else.
for (const method of ['debug', 'info', 'log', 'warn', 'error'] as const) console[method] = () => undefined

// Exits once everything written has left: writes to a pipe are asynchronous, and an exit at once
// would cut a long output (`replay --json` of a day's traffic) short.
const exitAfterWrites = (code: number): void => {
  let pending = 2
  const done = (): void => {
    if (--pending === 0) process.exit(code)
  }
  process.stdout.write('', done)
  process.stderr.write('', done)
}

main(process.argv.slice(2)).then(exitAfterWrites, (error: unknown) => {
  process.stderr.write(`egress-guard: unexpected failure: ${error instanceof Error ? error.message : String(error)}\n`)
  exitAfterWrites(70)
})
