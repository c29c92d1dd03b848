// `serve --listen` beyond loopback (docs/deployment.md): refused without policy clients, at the
// start and on every reload; /metrics on a loopback admin listener then needs the token, since the
// proxy could carry a client to 127.0.0.1. IPv6 listen addresses in brackets; a bad policy URL
// named without its secrets.
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import { startServe } from './serveProcess.js'
import { cliEnv, useStandIn, workspace } from './support.js'

const space = workspace()
const TOKEN = 'admin-token-0123456789abcdef'
const WITH_CLIENTS = `mode: connected_allow
providers:
  - { name: alpha, apiUrl: "https://api.alpha.test/v1" }
connections:
  - { provider: alpha, name: default, credentials: { headers: { Authorization: "Bearer \${env:ALPHA_API_KEY}" } } }
clients:
  - { name: agent, token: "agent-token-0123456789" }
`

/** The answer's status, or the refused CONNECT's (curl reports that one apart). */
const status = (args: ReadonlyArray<string>): Promise<number> =>
  new Promise((resolve) =>
    execFile('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{http_connect}', ...args], (_e, out) => {
      const [answer = 0, connect = 0] = out.split(' ').map(Number)
      resolve(answer || connect)
    })
  )

describe('serve --listen beyond loopback', () => {
  let common: ReadonlyArray<string> = []
  useStandIn(space, (standIn) => {
    common = standIn.common.filter((_, i, all) => all[i] !== '--policy' && all[i - 1] !== '--policy')
  })

  it('refuses to start without policy clients', async () => {
    const result = await space.cli(['serve', '--listen', '0.0.0.0', '--port', '0'], cliEnv(space))
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('--listen 0.0.0.0: the policy lists no clients')
  })

  it('keeps its clients through a reload that would drop them, and asks the token for /metrics', async () => {
    const policy = join(space.dir, 'listen-policy.yaml')
    writeFileSync(policy, WITH_CLIENTS)
    const served = await startServe([...common, '--policy', policy, '--listen', '0.0.0.0', '--port', '0', '--admin', '127.0.0.1:0'], { ...cliEnv(space), HOME: space.dir, EGRESS_GUARD_ADMIN_TOKEN: TOKEN })
    try {
      const port = new URL(served.listening.proxy).port
      const proxy = `http://127.0.0.1:${port}`
      const caCert = served.listening.caCert
      expect(await status(['--proxy', proxy, '--cacert', caCert, 'https://api.alpha.test/v1/models'])).toBe(407)
      expect(await status(['--proxy', `http://agent:agent-token-0123456789@127.0.0.1:${port}`, '--cacert', caCert, 'https://api.alpha.test/v1/models'])).toBe(200)
      const admin = served.listening.admin ?? ''
      expect((await fetch(`${admin}/metrics`)).status).toBe(401)
      expect((await fetch(`${admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200)
      // Through the proxy to the admin listener: the token is still needed.
      expect(await status(['--proxy', `http://agent:agent-token-0123456789@127.0.0.1:${port}`, `${admin}/metrics`])).toBe(401)

      writeFileSync(policy, WITH_CLIENTS.replace(/clients:[\s\S]*$/, ''))
      for (let i = 0; i < 100 && !served.output().stderr.includes('keeping the last good policy'); i++) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(served.output().stderr).toContain('the policy lists no clients')
      expect(await status(['--proxy', proxy, '--cacert', caCert, 'https://api.alpha.test/v1/models'])).toBe(407)
    } finally {
      await served.stop()
    }
  })

  it('takes an IPv6 address in brackets, and never shows a bad policy URL’s secrets', async () => {
    const served = await startServe(['--listen', '[::1]', '--port', '0'], { ...cliEnv(space), HOME: space.dir })
    try {
      expect(served.listening.proxy).toMatch(/^http:\/\/\[::1\]:\d+$/)
    } finally {
      await served.stop()
    }
    const bad = await space.cli(['check', '--policy', 'https://tok%zz@/x?token=secretq2'], cliEnv(space))
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain('expected an absolute policy URL')
    expect(bad.stdout + bad.stderr).not.toContain('secretq2')
  })
})
