// What `egress-guard run` adds to every command an agent wraps: the wall time of
// `egress-guard run -- true` against `node -e 0`, medians of interleaved runs in one process, and
// their ratio. Writes bench/results/startup.json. `npm run bench:startup` builds first.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const RUNS = Number(process.env['BENCH_STARTUP_RUNS'] ?? 15)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')
const dir = mkdtempSync(join(tmpdir(), 'eg-bench-startup-'))

const timed = (args: ReadonlyArray<string>): number => {
  const start = process.hrtime.bigint()
  const result = spawnSync(process.execPath, args, { env: { PATH: process.env['PATH'] ?? '', HOME: dir, EGRESS_GUARD_CONFIG_DIR: join(dir, 'config'), OPENAI_API_KEY: 'sk-bench' }, stdio: 'ignore' })
  if (result.status !== 0) throw new Error(`${args.join(' ')} exited with ${result.status}`)
  return Number(process.hrtime.bigint() - start) / 1e6
}
const median = (values: ReadonlyArray<number>): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN

try {
  timed([CLI, 'run', '--', 'true']) // makes the CA once, as a user's first run does
  const run: Array<number> = []
  const node: Array<number> = []
  for (let i = 0; i < RUNS; i++) {
    run.push(timed([CLI, 'run', '--', 'true']))
    node.push(timed(['-e', '0']))
  }
  const result = {
    runs: RUNS,
    run_true_ms: { median: Math.round(median(run)), min: Math.round(Math.min(...run)), max: Math.round(Math.max(...run)) },
    node_e0_ms: { median: Math.round(median(node)), min: Math.round(Math.min(...node)), max: Math.round(Math.max(...node)) },
    ratio: Math.round((median(run) / median(node)) * 100) / 100,
    setup: { node: process.version, engine: 'node', policy: 'bundled catalog, one key set' }
  }
  writeFileSync(join(ROOT, 'bench', 'results', 'startup.json'), `${JSON.stringify(result, null, 2)}\n`)
  process.stdout.write(`${JSON.stringify(result, null, 2)}\nwritten to bench/results/startup.json\n`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
