// `egress-guard serve` as a real process for the operating tests (admin listener, scale-out): started
// with --json, its `listening` line read, its stdout and stderr kept, stopped by a signal.
import { execFile, spawn, type ChildProcess } from 'node:child_process'

import { CLI, exitCode } from './support.js'

/** What serve's first line announces. */
export interface Listening {
  readonly proxy: string
  readonly caCert: string
  readonly mode: string
  readonly instance: string
  readonly admin?: string
}

/** A running serve process. */
export interface ServeProcess {
  readonly child: ChildProcess
  readonly listening: Listening
  readonly output: () => { readonly stdout: string; readonly stderr: string }
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code. */
  readonly stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

/** Starts `serve --json` with `args` in `env`; rejects with its stderr when it exits before listening. */
export const startServe = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Promise<ServeProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--json', ...args], { env: { PATH: process.env['PATH'] ?? '', ...env } })
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.on('data', (d: Buffer) => {
      const before = stdout
      stdout += d.toString()
      const first = stdout.split('\n')[0] ?? ''
      if (before.includes('\n') || !stdout.includes('\n')) return
      resolve({
        child,
        listening: JSON.parse(first) as Listening,
        output: () => ({ stdout, stderr }),
        stop: async (signal = 'SIGTERM') => {
          child.kill(signal)
          return exitCode(child)
        }
      })
    })
    child.once('exit', (code) => reject(new Error(`serve exited (${code}) before listening: ${stderr}`)))
  })

/** The JSON lines serve printed after its `listening` line (decision records, then `stopped`). */
export const printedRecords = (stdout: string): ReadonlyArray<Record<string, unknown>> =>
  stdout
    .trim()
    .split('\n')
    .slice(1)
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)

/** One request through the proxy with curl: the answer's status, head and body (a CONNECT's own answer left out). */
export const curlThrough = (proxy: string, caCert: string, url: string, extra: ReadonlyArray<string> = []): Promise<{ readonly status: number; readonly head: string; readonly body: string }> =>
  new Promise((resolve) =>
    execFile('curl', ['-sS', '-D', '-', '--suppress-connect-headers', '--proxy', proxy, '--cacert', caCert, ...extra, url], (_e, out) => {
      const [head = '', ...rest] = out.split('\r\n\r\n')
      resolve({ status: Number(/^HTTP\/[0-9.]+ ([0-9]{3})/.exec(head)?.[1] ?? 0), head, body: rest.join('\r\n\r\n') })
    })
  )
