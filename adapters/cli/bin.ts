import { main } from './main.js'

// The proxy libraries report through the console (http-mitm-proxy: debug/info/error; mockttp:
// log/warn/error), partly on stdout, where it would corrupt `serve --json` and a `run` child's
// output. The CLI speaks for itself (process.stdout/stderr), so their chatter is silenced here
// and nowhere else.
for (const method of ['debug', 'info', 'log', 'warn', 'error'] as const) console[method] = () => undefined

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`egress-guard: unexpected failure: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(70)
  }
)
