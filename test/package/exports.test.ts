// The built package, imported by name through its `exports` map in real Node processes, as a
// consumer would: ESM and CommonJS, root and `./core`. Runs after `npm run build`.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))

const probe = `
  const policy = { providers: [{ name: 'openai', apiUrl: 'https://api.openai.com/v1' }], connections: [{ provider: 'openai', name: 'default' }] }
  const { table } = m.buildRouteTable(policy, 'connected')
  const request = { scheme: 'https', host: 'api.openai.com', port: 443, path: '/v1/models', method: 'GET' }
  const resolution = m.resolveRoute(table, request)
  const out = m.decide({ mode: m.DEFAULT_MODE, request, resolution, credentials: { _tag: 'Available', headers: { Authorization: 'Bearer x' } } })
  console.log(JSON.stringify([typeof m.parseMode, resolution._tag, out.decision._tag, out.audit[0].event]))
`
const expected = JSON.stringify(['function', 'Matched', 'Inject', 'proxy_inject'])

const run = (args: ReadonlyArray<string>): string => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim()

describe('the built package', () => {
  it('has been built (run `npm run build` first)', () => {
    expect(existsSync(`${root}/dist/core/index.js`)).toBe(true)
  })

  for (const entry of ['egress-guard', 'egress-guard/core']) {
    it(`imports ${entry} as ESM`, () => {
      expect(run(['--input-type=module', '-e', `import * as m from '${entry}'\nimport { decide } from '${entry}'\nif (typeof decide !== 'function') process.exit(1)\n${probe}`])).toBe(expected)
    })
    it(`requires ${entry} as CommonJS`, () => {
      expect(run(['--input-type=commonjs', '-e', `const m = require('${entry}')\n${probe}`])).toBe(expected)
    })
  }

  for (const entry of ['egress-guard/guard', 'egress-guard/node', 'egress-guard/http-mitm-proxy', 'egress-guard/mockttp', 'egress-guard/undici', 'egress-guard/decision-service']) {
    for (const type of ['module', 'commonjs']) {
      it(`loads ${entry} as ${type === 'module' ? 'ESM' : 'CommonJS'}`, () => {
        const load = type === 'module' ? `const m = await import('${entry}')` : `const m = require('${entry}')`
        const names = entry.endsWith('guard')
          ? ['createGuard', 'parsePolicyText', 'jsonLinesSink', 'openPolicyFile']
          : entry.endsWith('undici')
            ? ['installGlobalGuard', 'GuardedDispatcher', 'EgressGuardDenied']
            : entry.endsWith('decision-service')
              ? ['startDecisionService']
            : entry.endsWith('mockttp')
              ? ['startMockttpProxy', 'loadOrCreateCa', 'parseConnectTo']
            : entry.endsWith('node')
              ? ['startNodeProxy', 'loadOrCreateCa', 'parseConnectTo']
              : ['startHttpMitmProxy', 'loadOrCreateCa', 'parseConnectTo']
        const code = `${type === 'module' ? '' : '(async () => {'}${load}\nconsole.log(JSON.stringify(${JSON.stringify(names)}.map((n) => typeof m[n])))${type === 'module' ? '' : '})()'}`
        expect(run([`--input-type=${type}`, '-e', code])).toBe(JSON.stringify(names.map(() => 'function')))
      })
    }
  }

  it('publishes the mitmproxy addon and the nginx and Envoy examples the README points to', () => {
    const [packed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })) as Array<{ files: Array<{ path: string }> }>
    const files = new Set(packed?.files.map((f) => f.path))
    for (const path of ['adapters/mitmproxy/egress_guard.py', 'examples/nginx/egress-guard.conf', 'examples/envoy/envoy.yaml', 'dist/cli.js', 'dist/core/index.js']) expect(files).toContain(path)
    expect([...files].filter((f) => !f.startsWith('dist/') && !f.startsWith('examples/'))).toEqual(expect.arrayContaining(['package.json', 'README.md']))
    expect([...files].some((f) => f.startsWith('test/') || f.startsWith('core/') || (f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.endsWith('.d.cts')))).toBe(false)
  })

  it('lists types first in every export condition and ships declaration files', () => {
    const pkg = JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as { exports: Record<string, unknown> }
    for (const [key, conditions] of Object.entries(pkg.exports)) {
      if (key === './package.json') continue
      for (const [, target] of Object.entries(conditions as Record<string, Record<string, string>>)) {
        expect(Object.keys(target)[0]).toBe('types')
        expect(existsSync(`${root}/${target['types']}`)).toBe(true)
      }
    }
  })
})
