// The built CLI installed without its optional peer dependencies (http-mitm-proxy, mockttp), as
// `npm install egress-guard` alone leaves it: the commands that need none (the default node engine
// included) still work, and the ones that need one say what to install, with the versions
// package.json declares.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> }
const PEERS = ['http-mitm-proxy', 'mockttp']
/** `npm install` arguments for a peer, from package.json: an exact pin, or the major of a `^` range. */
const install = (peer: string): string => `${peer}@${(pkg.peerDependencies[peer] ?? '').replace(/^\^(\d+)\..*$/, '$1')}`

describe('the CLI without its optional peer dependencies', () => {
  let cli = ''
  let dir = ''
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'eg-peers-'))
    const modules = join(dir, 'node_modules')
    // The package itself is copied: a symlink would resolve to this checkout, peers and all.
    mkdirSync(join(modules, 'egress-guard'), { recursive: true })
    cpSync(join(root, 'dist'), join(modules, 'egress-guard', 'dist'), { recursive: true })
    cpSync(join(root, 'package.json'), join(modules, 'egress-guard', 'package.json'))
    for (const name of readdirSync(join(root, 'node_modules'))) {
      if (PEERS.includes(name) || name.startsWith('.')) continue
      symlinkSync(join(root, 'node_modules', name), join(modules, name))
    }
    cli = join(modules, 'egress-guard', 'dist', 'cli.js')
  })
  const run = (args: ReadonlyArray<string>) => spawnSync(process.execPath, [cli, ...args, ...(args[0] === 'serve' ? ['--config-dir', join(dir, 'config')] : [])], { cwd: dir, encoding: 'utf8', timeout: 30_000 })

  it('has none of them (the premise)', () => {
    const resolved = spawnSync(process.execPath, ['-e', `for (const p of ${JSON.stringify(PEERS)}) { try { require.resolve(p); console.log(p) } catch {} }`], { cwd: dir, encoding: 'utf8' })
    expect(resolved.stdout.trim()).toBe('')
  })

  it('still runs check and explain', () => {
    expect(run(['check']).status).toBe(0)
    const explained = run(['explain', 'https://api.openai.com/v1/models', '--json'])
    expect(explained.status).toBe(0)
    expect(explained.stdout).toContain('openai')
  })

  for (const [engine, args] of [
    ['http-mitm-proxy', ['--engine', 'http-mitm-proxy']],
    ['mockttp', ['--engine', 'mockttp']]
  ] as const) {
    it(`serve with ${engine} names the library to install and exits`, () => {
      const served = run(['serve', '--port', '0', ...args])
      expect(served.status).not.toBe(0)
      expect(served.stderr).toContain(`npm install ${install(engine)}`)
      expect(served.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|at .*\.js:\d+/)
    })
  }

  it('runs the demo on the default node engine', () => {
    const demo = run(['demo'])
    expect(demo.stderr).toBe('')
    expect(demo.status).toBe(0)
    expect(demo.stdout).toContain('in no audit record: yes')
  })
})
