// The proxy benchmark's processes: each proxy role and `serve` in a process of its own (at nice
// 10 with BENCH_NICE=1), their CPU time read from /proc, and what two processes of CPU-bound
// JavaScript get done on this machine against one.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

import type { RoleConfig } from './roles.js'

// Every process runs at the same priority. BENCH_NICE=1 runs the proxies at nice 10, below the
// load generator and the upstream, as the first eight runs bench/README.md reports did: measured, that
// cost two workers about a tenth of their throughput (two workers against one: 1.00 niced, 1.09
// to 1.14 not, over four runs alternating on this machine), as the client and the upstream
// preempt a worker each time they wake (see bench/README.md, "Proxy benchmark").
export const NICE = process.env['BENCH_NICE'] === '1' && spawnSync('nice', ['-n', '10', 'true'], { stdio: 'ignore' }).status === 0
/** The command and arguments that run a proxy process (at nice 10 with BENCH_NICE=1). */
export const asProxy = (command: string, args: ReadonlyArray<string>): [string, Array<string>] => (NICE ? ['nice', ['-n', '10', command, ...args]] : [command, [...args]])

/** Where the run keeps its files, and what it starts. */
export interface ProcessContext {
  /** The run's temporary directory, removed on exit. */
  readonly dir: string
  /** The built roles module (bench/.build/roles.js). */
  readonly roles: string
  /** The built CLI (dist/cli.js). */
  readonly cli: string
  /** The key the policies' credential templates read (BENCH_KEY). */
  readonly secret: string
}

/** A process of the run, listening. */
export interface Started {
  readonly port: number
  readonly caPem: string
  readonly child: ChildProcess
}

/** What mitmdump and its decision service are started with. */
export interface MitmdumpOptions {
  readonly policyFile: string
  readonly upstreamCaPath: string
  readonly upstreamPort: number
  /** Host names dialled at the upstream instead. */
  readonly hosts: ReadonlyArray<string>
  /** The addon (adapters/mitmproxy/egress_guard.py). */
  readonly addon: string
  /** The decision service's token. */
  readonly token: string
}

/** The run's processes. */
export interface Processes {
  /** Starts a bench role and waits for the JSON line that says where it listens. */
  readonly startRole: (role: string, config: RoleConfig) => Promise<Started>
  /**
   * Starts `egress-guard serve`. Its decision log goes to a file, as an operator's log collector
   * would take it: read through a pipe here, it would tax the load generator's CPU.
   */
  readonly startServe: (name: string, args: ReadonlyArray<string>) => Promise<Started>
  /**
   * Starts mitmdump with the shipped addon asking a decision service (the architecture this
   * project grew from), and waits until `answers` says it serves; undefined if it never does.
   */
  readonly startMitmdump: (options: MitmdumpOptions, answers: (started: Started) => Promise<boolean>) => Promise<{ readonly started: Started; readonly pids: ReadonlyArray<number> } | undefined>
  readonly stopAll: () => void
}

/** The run's process table; everything is killed, and the directory removed, when the run exits. */
export const benchProcesses = (context: ProcessContext): Processes => {
  const { dir } = context
  const children: Array<ChildProcess> = []
  process.on('exit', () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  let roles = 0
  const startRole: Processes['startRole'] = async (role, config) => {
    const file = join(dir, `role-${roles++}.json`) // a 1,000-route policy is too long for argv
    writeFileSync(file, JSON.stringify(config))
    const [command, args] = role === 'upstream' ? [process.execPath, [context.roles, role, file]] : asProxy(process.execPath, [context.roles, role, file])
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
    children.push(child)
    const first = await new Promise<{ port: number; caPath?: string }>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line) as { port: number; caPath?: string }))
      child.once('exit', (code) => reject(new Error(`role ${role} exited with ${code}`)))
    })
    return { port: first.port, caPem: first.caPath === undefined ? '' : readFileSync(first.caPath, 'utf8'), child }
  }
  const startServe: Processes['startServe'] = async (name, args) => {
    const logPath = join(dir, `${name}.log`)
    const log = openSync(logPath, 'w')
    const child = spawn(...asProxy(process.execPath, [context.cli, 'serve', ...args, '--json', '--config-dir', join(dir, `config-${name}`), '--audit', join(dir, `${name}-audit.jsonl`)]), {
      stdio: ['ignore', log, 'inherit'],
      env: { ...process.env, BENCH_KEY: context.secret }
    })
    closeSync(log)
    children.push(child)
    for (let i = 0; i < 300; i++) {
      const first = readFileSync(logPath, 'utf8').split('\n')[0] ?? ''
      if (first.startsWith('{')) {
        const listening = JSON.parse(first) as { proxy: string; caCert: string }
        return { port: Number(new URL(listening.proxy).port), caPem: readFileSync(listening.caCert, 'utf8'), child }
      }
      if (child.exitCode !== null) throw new Error(`serve ${name} exited with ${child.exitCode}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`serve ${name} did not start`)
  }
  const startMitmdump: Processes['startMitmdump'] = async (options, answers) => {
    const logPath = join(dir, 'decision-service.log')
    const log = openSync(logPath, 'w')
    const service = spawn(...asProxy(process.execPath, [context.cli, 'decision-service', '--policy', options.policyFile, '--port', '0', '--json']), {
      stdio: ['ignore', log, 'inherit'],
      env: { ...process.env, BENCH_KEY: context.secret, EGRESS_GUARD_TOKEN: options.token }
    })
    closeSync(log)
    children.push(service)
    let serviceUrl = ''
    for (let i = 0; i < 300 && serviceUrl === ''; i++) {
      const first = readFileSync(logPath, 'utf8').split('\n')[0] ?? ''
      if (first.startsWith('{')) serviceUrl = (JSON.parse(first) as { url: string }).url
      else await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const confdir = join(dir, 'mitmproxy')
    mkdirSync(confdir)
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    const rules = options.hosts.map((h) => `${h}:443:127.0.0.1:${options.upstreamPort}`).join(',')
    const child = spawn(...asProxy('mitmdump', ['--quiet', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${confdir}`, '--set', 'connection_strategy=lazy',
      '--set', `ssl_verify_upstream_trusted_ca=${options.upstreamCaPath}`, '-s', options.addon, '--set', `egress_guard_url=${serviceUrl}`,
      '--set', `egress_guard_token=${options.token}`, '--set', `egress_guard_connect_to=${rules}`]), { stdio: 'ignore' })
    children.push(child)
    const caPath = join(confdir, 'mitmproxy-ca-cert.pem')
    for (let i = 0; i < 300; i++) {
      try {
        const started = { port, caPem: readFileSync(caPath, 'utf8'), child }
        if (await answers(started)) return { started, pids: [child.pid ?? 0, service.pid ?? 0] }
      } catch {
        // not up yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return undefined
  }
  return {
    startRole,
    startServe,
    startMitmdump,
    stopAll: () => {
      for (const child of children) child.kill('SIGTERM')
    }
  }
}

/** CPU seconds used so far by processes and, unless `alone`, their children (utime + stime from /proc, 100 Hz). */
export const cpuSeconds = (pids: ReadonlyArray<number>, alone = false): number => {
  let ticks = 0
  const visit = (pid: number) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
      if (alone) return
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(' ').filter((c) => c !== '')) visit(Number(child))
      }
    } catch {
      // the process is gone
    }
  }
  for (const pid of pids) visit(pid)
  return ticks / 100
}

// What two processes get done on this machine against one, for the same CPU-bound JavaScript: the
// ceiling for `serve --workers 2`. Each process counts loop turns (objects made and read) for a while.
const SPIN = `const end = Date.now() + 2000; let n = 0, acc = 0; while (Date.now() < end) { const o = { a: n, b: [n, n + 1], c: 'x' + n }; acc += o.b.length + o.c.length; n++ } console.log(n)`
const spin = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', SPIN], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    child.once('exit', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`the CPU probe exited with ${code}`))))
  })

/** Two processes' loop turns over one process's, the median of three tries. */
export const twoProcessScaling = async (): Promise<number> => {
  const ratios: Array<number> = []
  for (let i = 0; i < 3; i++) {
    const one = await spin()
    const [a, b] = await Promise.all([spin(), spin()])
    ratios.push(((a ?? 0) + (b ?? 0)) / one)
  }
  return [...ratios].sort((x, y) => x - y)[1] ?? NaN
}
