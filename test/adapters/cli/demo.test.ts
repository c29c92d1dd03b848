// `egress-guard demo`, the quick start's main job, through the built CLI (`npm test` builds it):
// what each request gets in each mode follows docs/spec.md (§2 modes, §4 resolution, §5 the decision
// table), the demo key never appears in what it prints, and it leaves no directory behind, even
// when interrupted.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { describe, expect, it } from 'vitest'

const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url))
const DEMO_KEY = 'sk-demo-not-a-real-key'
const MODES = ['connected_allow', 'connected_deny', 'configured_allow', 'configured_deny'] as const
type Mode = (typeof MODES)[number]

// What reaches the stand-in, by request and mode. OPENAI_API_KEY is set, Anthropic's key is not.
//  - inside OpenAI's /v1 prefix over https: injected in every mode;
//  - OpenAI outside the prefix, plain http, an unrouted host: no credentials; denied in deny modes;
//  - Anthropic without a key: a route only in configured modes, where it is no_credentials (passed
//    in configured_allow, denied in configured_deny); outside them it is unrouted.
const INJECTED = 'Authorization: Bearer sk-demo-…'
//  - a denied https request to a host with no route in the mode's scope is refused at its CONNECT
//    (curl and fetch report a closed connection); one inside an intercepted tunnel gets its 403.
const expected = (url: string, mode: Mode): { readonly reason: string; readonly upstream: string; readonly refusal: string } => {
  const deny = mode.endsWith('_deny')
  const passed = deny ? 'nothing' : 'no credentials'
  if (url.startsWith('https://api.openai.com/v1/')) return { reason: 'inject', upstream: INJECTED, refusal: '' }
  if (url.startsWith('http://')) return { reason: 'insecure_scheme', upstream: passed, refusal: '403' }
  if (url.startsWith('https://api.anthropic.com/') && mode.startsWith('configured')) return { reason: 'no_credentials', upstream: passed, refusal: '403' }
  const routed = url.startsWith('https://api.openai.com/')
  return { reason: 'no_match', upstream: passed, refusal: routed ? '403' : 'connection closed' }
}

describe('egress-guard demo', () => {
  it('shows, for every mode, what docs/spec.md says each request gets, and never the key', () => {
    const scratch = mkdtempSync(join(tmpdir(), 'eg-demo-'))
    const demo = spawnSync(process.execPath, [CLI, 'demo'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, TMPDIR: scratch } })
    expect(demo.status).toBe(0)
    const rows = demo.stdout
      .split('\n')
      .map((line) => line.trim().split(/ {2,}/))
      .filter((cells) => (MODES as ReadonlyArray<string>).includes(cells[0] ?? '') && cells.length === 5)
    expect(rows).toHaveLength(24)
    for (const [mode, , url, decision, upstream] of rows) {
      const want = expected(url ?? '', mode as Mode)
      expect({ url, mode, decision, upstream }).toEqual({ url, mode, decision: expect.stringContaining(want.reason), upstream: want.upstream })
      // A request the stand-in never saw was refused by the proxy: a 403, or a closed tunnel.
      expect(decision).toMatch(new RegExp(`^${upstream === 'nothing' ? want.refusal : '200'} `))
    }
    expect(demo.stdout + demo.stderr).not.toContain(DEMO_KEY)
    expect(readdirSync(scratch)).toEqual([])
  })

  it('removes its directory when interrupted', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'eg-demo-'))
    const demo = spawn(process.execPath, [CLI, 'demo'], { stdio: 'ignore', env: { ...process.env, TMPDIR: scratch } })
    const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve))
    // Interrupted as soon as its directory exists.
    for (let i = 0; i < 2_000 && demo.exitCode === null && !readdirSync(scratch).some((name) => name.startsWith('egress-guard-demo-')); i++) await new Promise((resolve) => setTimeout(resolve, 5))
    expect(demo.exitCode).toBeNull()
    demo.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(readdirSync(scratch)).toEqual([])
  })
})
