// Run by `egress-guard run --isolate` inside the child's own network namespace (user + network
// namespace: `unshare -rn`), whose only interface is its own loopback: no route out, no DNS.
// It listens on 127.0.0.1:<port> there and carries each connection over a Unix socket to the
// proxy outside, then runs the command and exits as it does. Arguments: <socket> <port> <command...>.
import { spawn } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { constants } from 'node:os'

const [socketPath = '', portText = '', file, ...args] = process.argv.slice(2)
const fail = (message: string): never => {
  process.stderr.write(`egress-guard run --isolate: ${message}\n`)
  process.exit(70)
}
if (file === undefined) fail('usage: isolate <socket> <port> <command...>')

const bridge = createServer((client) => {
  const proxy = connect(socketPath)
  client.on('error', () => proxy.destroy())
  proxy.on('error', () => client.destroy())
  client.pipe(proxy)
  proxy.pipe(client)
})
bridge.on('error', (error: Error) => fail(`cannot listen on 127.0.0.1:${portText} in the namespace (${error.message})`))
bridge.listen({ host: '127.0.0.1', port: Number(portText) }, () => {
  bridge.unref()
  const child = spawn(file as string, args, { stdio: 'inherit' })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const) process.on(signal, () => child.kill(signal))
  child.on('error', (error: NodeJS.ErrnoException) => {
    process.stderr.write(`error: cannot run \`${file}\`: ${error.code === 'ENOENT' ? 'command not found' : error.message}\n`)
    process.exit(error.code === 'ENOENT' ? 127 : 126)
  })
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))))
})
