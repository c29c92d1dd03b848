// Scale-out (docs/spec.md §14, docs/deployment.md) with real processes: Debian's HAProxy in TCP
// mode, rendered from deploy/haproxy.cfg, in front of two `serve` instances that share one policy
// (an https URL polled with ETag), one CA directory and the same kind of sinks. Clients spread over
// both; a policy change reaches both; one instance stopped mid-traffic fails no request; every
// decision is recorded once, by the instance that made it. deploy/egress-guard.service passes
// `systemd-analyze verify`.
import { execFile, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'

import { createPki } from '../support/pki.js'
import { freePort, isListening } from '../support/ports.js'
import { startServe } from './serveProcess.js'
import { KEY, POLICY, cliEnv, useStandIn, workspace } from './support.js'

const space = workspace()
const DEPLOY = fileURLToPath(new URL('../../../deploy/', import.meta.url))

/** One request through the proxy, on a new connection: its status (0 when it failed). */
const through = (proxy: string, caCert: string): Promise<number> =>
  new Promise((resolve) =>
    execFile('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '20', '--proxy', proxy, '--cacert', caCert, 'https://api.alpha.test/v1/models'], (_e, out) => resolve(Number(out) || 0))
  )

/** An https server for the shared policy: ETag by content, 304 for a match, counted. */
const policyServer = async (pki: ReturnType<typeof createPki>) => {
  let text = POLICY
  let notModified = 0
  let fetched = 0
  const etag = () => `"${Buffer.from(text).toString('base64url').slice(-16)}-${text.length}"`
  const server = https.createServer(pki.leaf(['localhost']), (request, response) => {
    if (request.headers['if-none-match'] === etag()) {
      notModified++
      return void response.writeHead(304, { etag: etag() }).end()
    }
    fetched++
    response.writeHead(200, { 'content-type': 'application/yaml', etag: etag() }).end(text)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `https://localhost:${(server.address() as AddressInfo).port}/policy.yaml`,
    set: (next: string) => (text = next),
    counts: () => ({ notModified, fetched }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

const auditOf = (path: string): ReadonlyArray<{ decisionId: string; instance: string; event: string; policyHash: string }> =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l))

describe('two instances behind HAProxy (TCP), sharing a policy URL and a CA directory', () => {
  let common: ReadonlyArray<string> = []
  useStandIn(space, (standIn) => {
    common = standIn.common.filter((_, i, all) => all[i] !== '--policy' && all[i - 1] !== '--policy')
  })

  it('spreads clients, follows a policy change, loses no request when one instance stops, and records each decision once', async () => {
    const pki = createPki()
    const caFile = join(space.dir, 'policy-ca.pem')
    writeFileSync(caFile, pki.caPem)
    const policy = await policyServer(pki)
    const shared = join(space.dir, 'shared-config')
    const [portA, portB, front] = [await freePort(), await freePort(), await freePort()]
    const env = { ...cliEnv(space), HOME: space.dir, NODE_EXTRA_CA_CERTS: caFile, EGRESS_GUARD_CONFIG_DIR: shared }
    const instance = (name: string, port: number) =>
      startServe([...common, '--policy', policy.url, '--policy-poll', '1', '--port', String(port), '--audit', join(space.dir, `audit-${name}.jsonl`), '--instance', name], env)
    const [a, b] = await Promise.all([instance('a', portA), instance('b', portB)])
    const config = join(space.dir, 'haproxy.cfg')
    writeFileSync(
      config,
      readFileSync(join(DEPLOY, 'haproxy.cfg'), 'utf8')
        .replace('${LISTEN}', `127.0.0.1:${front}`)
        .replace('${INSTANCE_A}', `127.0.0.1:${portA}`)
        .replace('${INSTANCE_B}', `127.0.0.1:${portB}`)
    )
    const haproxy = spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] })
    let haproxyLog = ''
    haproxy.stderr.on('data', (d: Buffer) => (haproxyLog += d.toString()))
    try {
      for (let i = 0; i < 100 && !(await isListening(front)); i++) await new Promise((resolve) => setTimeout(resolve, 50))
      await new Promise((resolve) => setTimeout(resolve, 500)) // both marked up by their first checks
      expect(a.listening.caCert).toBe(b.listening.caCert)
      const caCert = a.listening.caCert
      // Every answer, to match against the records.
      const answers: Array<number> = []
      const send = async () => {
        const status = await through(`http://127.0.0.1:${front}`, caCert)
        answers.push(status)
        return status
      }

      // Spread: new connections go to both instances in turn.
      const first = await Promise.all(Array.from({ length: 8 }, () => send()))
      expect(first).toEqual(Array(8).fill(200))

      // A change to the shared policy reaches both (polled every second, 304 while unchanged).
      policy.set(POLICY.replace('mode: connected_deny', 'mode: configured_deny'))
      let hashes: ReadonlyArray<string> = []
      for (let i = 0; i < 60; i++) {
        await Promise.all([send(), send()])
        await new Promise((resolve) => setTimeout(resolve, 100))
        const last = [auditOf(join(space.dir, 'audit-a.jsonl')).at(-1), auditOf(join(space.dir, 'audit-b.jsonl')).at(-1)]
        hashes = last.map((r) => r?.policyHash ?? '')
        if (hashes[0] === hashes[1] && hashes[0] !== auditOf(join(space.dir, 'audit-a.jsonl'))[0]?.policyHash) break
      }
      expect(hashes[0]).toBe(hashes[1])
      expect(hashes[0]).not.toBe(auditOf(join(space.dir, 'audit-a.jsonl'))[0]?.policyHash)
      expect(policy.counts().notModified).toBeGreaterThan(0)

      // One instance stops in the middle of the traffic: two clients keep sending, none fails.
      const statuses: Array<number> = []
      const lane = async () => {
        for (let i = 0; i < 20; i++) statuses.push(await send())
      }
      const lanes = Promise.all([lane(), lane()])
      while (statuses.length < 10) await new Promise((resolve) => setTimeout(resolve, 10))
      expect(await a.stop()).toBe(0)
      await lanes
      expect(statuses.filter((s) => s !== 200)).toEqual([])

      // Every decision recorded once, by the instance that made it.
      expect(await b.stop()).toBe(0)
      const records = [...auditOf(join(space.dir, 'audit-a.jsonl')), ...auditOf(join(space.dir, 'audit-b.jsonl'))]
      const ids = records.map((r) => r.decisionId)
      expect(new Set(ids).size).toBe(ids.length)
      expect(answers.filter((s) => s !== 200)).toEqual([])
      expect(records.filter((r) => r.event === 'proxy_inject').length).toBe(answers.length)
      expect(new Set(records.map((r) => r.instance))).toEqual(new Set(['a', 'b']))
      expect(auditOf(join(space.dir, 'audit-a.jsonl')).every((r) => r.instance === 'a')).toBe(true)
      expect(JSON.stringify(records)).not.toContain(KEY)
    } finally {
      haproxy.kill('SIGTERM')
      await Promise.allSettled([a.stop(), b.stop(), policy.close()])
    }
    // HAProxy saw the stopped instance go (and, at the end, the other one).
    expect(haproxyLog).toContain('instance-a is DOWN')
  })

  it('has a systemd unit that systemd-analyze verifies, and Kubernetes manifests that parse', async () => {
    const verified = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile('systemd-analyze', ['verify', join(DEPLOY, 'egress-guard.service')], (error, _out, stderr) => resolve({ code: error === null ? 0 : Number(error.code), stderr }))
    )
    expect(verified).toEqual({ code: 0, stderr: '' })
    const documents = readFileSync(join(DEPLOY, 'kubernetes.yaml'), 'utf8').split(/^---$/m).map((d) => parseYaml(d) as { kind: string })
    expect(documents.map((d) => d.kind)).toEqual(['Deployment', 'Service'])
  })
})
