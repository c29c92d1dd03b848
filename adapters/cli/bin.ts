import { main } from './main.js'

// http-mitm-proxy reports through console.debug/info/error (stdout for the first two); the CLI
// speaks for itself, so the library's chatter is silenced here and nowhere else.
console.debug = () => undefined
console.info = () => undefined
console.error = () => undefined

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`egress-guard: unexpected failure: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(70)
  }
)
