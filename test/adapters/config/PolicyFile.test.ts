import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { MAX_POLICY_BYTES } from '../../../adapters/config/parseDocument.js'
import { parsePolicyText, parsePolicyTextOffThread } from '../../../adapters/config/PolicyFile.js'
import { readPolicyFile } from '../../../adapters/config/readPolicyFile.js'

const errorsOf = (text: string): ReadonlyArray<string> => {
  const result = parsePolicyText(text, 'policy.yaml')
  return E.isLeft(result) ? result.left.messages : []
}

const COMPLETE = `
mode: configured_deny
denyText:
  loginCommand: authsome login {provider}
  dashboardUrl: http://127.0.0.1:7998
upstream:
  ca: [/etc/egress-guard/extra-ca.pem]
modeEndpoint: { url: "http://127.0.0.1:7998/mode", intervalMs: 5000 }
providers:
  - name: openai
    apiUrl: https://api.openai.com/v1
    loginCommand: openai-login
  - name: github
    apiUrl: [https://api.github.com, "regex:(?:[a-z0-9-]+\\\\.)?githubusercontent\\\\.com"]
    oauth:
      authorizationUrl: https://github.com/login/oauth/authorize
      tokenUrl: https://github.com/login/oauth/access_token
connections:
  - provider: openai
    name: default
    credentials: { headers: { Authorization: "Bearer \${env:OPENAI_API_KEY}" } }
  - provider: github
    name: work
    isDefault: true
    credentials: { exec: [gh-credential-helper, get] }
passthrough: [pypi.org, "regex:(?:[a-z0-9-]+\\\\.)?pythonhosted\\\\.org"]
`

describe('policy files', () => {
  it('decode a complete YAML policy', () => {
    const result = parsePolicyText(COMPLETE)
    expect(E.isRight(result) && result.right.input.providers.map((p) => p.name)).toEqual(['openai', 'github'])
    expect(E.isRight(result) && result.right.warnings).toEqual([])
  })

  it('decode the same policy written as JSON', () => {
    const json = JSON.stringify({ providers: [{ name: 'openai', apiUrl: 'https://api.openai.com/v1' }], connections: [{ provider: 'openai', name: 'default', credentials: { file: '/run/secrets/openai.json' } }] })
    expect(E.isRight(parsePolicyText(json))).toBe(true)
  })

  it.each<[string, string, string]>([
    ['an unknown mode', 'mode: strict\nproviders: []', 'policy.yaml: mode: unknown mode `strict`: expected one of connected_allow, connected_deny, configured_allow, configured_deny'],
    ['an unknown key', 'providers: []\nprovider: []', 'policy.yaml: provider: unknown key `provider`: expected one of `providers`, `mode`, `enforcement`, `inspect`, `connections`, `passthrough`, `denyText`, `upstream`, `modeEndpoint`, `clients`, `limits`, `audit`'],
    ['an unknown provider key', 'providers: [{name: a, apiURL: x.com}]', 'policy.yaml: providers[0].apiURL: unknown key `apiURL`: expected one of `name`, `apiUrl`, `oauth`, `loginCommand`, `envVar`, `keyPrefix`'],
    ['a key prefix with a space', 'providers: [{name: a, keyPrefix: "sk "}]', 'policy.yaml: providers[0].keyPrefix: a key prefix is 1 to 16 of A-Z, a-z, 0-9, `_` and `-`, such as `sk-`'],
    ['an unknown inspect value', 'providers: []\ninspect: everything', 'policy.yaml: inspect: unknown inspect setting `everything`: expected routed (intercept hosts with routes) or all (every host but passthrough ones, so the tripwire sees them)'],
    ['a missing provider list', 'mode: connected_deny', 'policy.yaml: providers: expected Array<a provider>, got nothing'],
    ['a malformed API URL', 'providers: [{name: a, apiUrl: "https://exa mple.com"}]', 'policy.yaml: API URL `https://exa mple.com` skipped: it is not a URL or host[:port][/path]'],
    ['an http API URL', 'providers: [{name: a, apiUrl: "http://api.a.com"}]', 'policy.yaml: API URL `http://api.a.com` skipped: credentials are only sent over https'],
    ['an invalid regex', 'providers: [{name: a, apiUrl: "regex:(a+)+"}]', 'policy.yaml: pattern `(a+)+` skipped: it can backtrack catastrophically; avoid nesting repetition, e.g. use `(?:[a-z0-9-]+\\.)?` rather than `(.*\\.)*`'],
    ['a malformed OAuth URL', 'providers: [{name: a, oauth: {tokenUrl: "/token"}}]', 'policy.yaml: providers[0].oauth.tokenUrl: expected an absolute token URL such as https://example.com/path'],
    ['two default connections', 'providers: [{name: a, apiUrl: a.com}]\nconnections: [{provider: a, name: default}, {provider: a, name: b, isDefault: true}]', 'policy.yaml: provider `a` skipped: connections `default`, `b` are all marked default; keep one'],
    ['a connection of an unknown provider', 'providers: []\nconnections: [{provider: ghost, name: default}]', 'policy.yaml: connection `default` name provider `ghost`, which is not configured; ignored'],
    ['a credential reference of two kinds', 'providers: [{name: a}]\nconnections: [{provider: a, name: default, credentials: {file: /x, exec: [y]}}]', 'policy.yaml: connections[0].credentials: expected exactly one of `headers` (templates such as "Bearer ${env:API_KEY}"), `file`, `exec` or `url`'],
    ['an empty exec', 'providers: [{name: a}]\nconnections: [{provider: a, name: default, credentials: {exec: []}}]', 'policy.yaml: connections[0].credentials: `exec` needs the command and its arguments, e.g. ["my-helper", "get", "openai"]'],
    ['a duplicated key', 'providers: []\nproviders: []', 'policy.yaml:2:1: not valid JSON or YAML (duplicate key); fix the syntax there'],
    ['an empty file', '', 'policy.yaml: the file is empty; a policy needs at least `providers: []`'],
    ['a credential endpoint over plain http off loopback', 'providers: [{name: a}]\nconnections: [{provider: a, name: default, credentials: {url: "http://vault.example/creds"}}]', 'policy.yaml: connections[0].credentials.url: the credential endpoint must be https (plain http only on 127.0.0.1, ::1 or localhost): anyone on the path could read or change what it answers'],
    ['a connection named twice', 'providers: [{name: a}]\nconnections: [{provider: a, name: ro}, {provider: a, name: ro}]', 'policy.yaml: connections[1]: `a/ro` is configured twice; give each connection of a provider its own name'],
    ['a client name with capitals', 'providers: []\nclients: [{name: CI, token: "tok-0123456789abcdef"}]', 'policy.yaml: clients[0].name: a client name is 1 to 63 of a-z, 0-9, `_`, `.` and `-`, starting with a letter or digit'],
    ['a client pair without a slash', 'providers: []\nclients: [{name: ci, token: "tok-0123456789abcdef", connections: [github]}]', 'policy.yaml: clients[0].connections[0]: write `provider/connection`, e.g. `github/work`'],
    ['a client named twice', 'providers: []\nclients: [{name: ci, token: "tok-0123456789abcdef"}, {name: ci, token: "tok-fedcba9876543210"}]', 'policy.yaml: clients[1]: the name `ci` is used twice; give each client its own'],
    ['a client naming a connection the policy lacks', 'providers: [{name: a}]\nconnections: [{provider: a, name: default}]\nclients: [{name: ci, token: "tok-0123456789abcdef", connections: [a/work]}]', 'policy.yaml: clients[0].connections: `a/work` is not a connection of this policy; name one of `connections` as provider/name'],
    ['a client with two connections of one provider', 'providers: [{name: a}]\nconnections: [{provider: a, name: default}, {provider: a, name: ro}]\nclients: [{name: ci, token: "tok-0123456789abcdef", connections: [a/default, a/ro]}]', 'policy.yaml: clients[0].connections: two connections of `a`; a client uses one connection per provider'],
    ['a mode endpoint over plain http off loopback', 'providers: []\nmodeEndpoint: {url: "http://10.0.0.5/mode"}', 'policy.yaml: modeEndpoint.url: the mode endpoint must be https (plain http only on 127.0.0.1, ::1 or localhost): anyone on the path could read or change what it answers']
  ])('reject %s with a message naming where and what to do', (_, text, message) => {
    expect(errorsOf(text)).toContain(message)
  })

  it('reject broken syntax with its line and column', () => {
    expect(errorsOf('providers: [ {name: ')).toEqual([expect.stringMatching(/^policy\.yaml:1:\d+: not valid JSON or YAML \([a-z ]+\); fix the syntax there$/)])
  })

  it('never quote a value in an error, so inline secrets stay out of logs', () => {
    const texts = [
      'providers: [{name: a}]\nconnections: [{provider: a, name: default, credentials: {headers: {Authorization: 3}, token: "sk-live-1"}}]',
      '{"providers": [{"name": "a", "apiUrl": "sk-live-1" ]}',
      'providers: [{name: a, apiUrl: ["https://user:sk-live-1@api.a.com"]}]'
    ]
    for (const text of texts) {
      const errors = errorsOf(text)
      expect(errors.length).toBeGreaterThan(0)
      expect(errors.join('\n')).not.toContain('sk-live-1')
    }
  })
})

describe('policy size and where it is parsed', () => {
  const big = (providers: number): string =>
    `providers:\n${Array.from({ length: providers }, (_, i) => `  - { name: p${i}, apiUrl: "https://api${i}.example.com/v1" }`).join('\n')}\n`

  it('refuses a policy over 4 MiB before parsing it, saying what to do', () => {
    const text = `${big(1)}# ${'x'.repeat(MAX_POLICY_BYTES)}\n`
    expect(errorsOf(text)).toEqual(['policy.yaml: the policy is larger than 4 MiB; keep it under that (move long lists to regex routes)'])
  })

  it('parses on a worker thread to the same policy, warnings and errors as on this one', async () => {
    for (const text of [COMPLETE, big(500), 'providers: [', 'mode: nope\nproviders: []', '', 'a: 1\na: 2']) {
      expect(await parsePolicyTextOffThread(text, 'policy.yaml')).toEqual(parsePolicyText(text, 'policy.yaml'))
    }
  })

  it('reads only regular files: a FIFO is refused at once, a file over the bound by its size', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-policy-'))
    try {
      execFileSync('mkfifo', [join(dir, 'fifo')])
      expect(await readPolicyFile(join(dir, 'fifo'))).toEqual(
        E.left({ _tag: 'PolicyError', messages: [`policy file \`${join(dir, 'fifo')}\` is not a regular file (a pipe, socket or device is never read); point it at a file`] })
      )
      writeFileSync(join(dir, 'big.yaml'), `${big(1)}# ${'x'.repeat(MAX_POLICY_BYTES)}\n`)
      expect(await readPolicyFile(join(dir, 'big.yaml'), { offThread: true })).toEqual(
        E.left({ _tag: 'PolicyError', messages: [`policy file \`${join(dir, 'big.yaml')}\` is larger than ${MAX_POLICY_BYTES} bytes`] })
      )
      writeFileSync(join(dir, 'ok.yaml'), COMPLETE)
      expect(E.isRight(await readPolicyFile(join(dir, 'ok.yaml'), { offThread: true }))).toBe(true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('allow rules (docs/spec.md §10)', () => {
  it('reads them into the core input', () => {
    const loaded = parsePolicyText('providers: [{ name: gh, apiUrl: "https://api.github.com" }]\nconnections: [{ provider: gh, name: default, allow: { methods: [GET], paths: ["/repos/acme/**"] } }]\n', 'policy.yaml')
    expect(E.isRight(loaded) && loaded.right.input.connections[0]?.allow).toEqual({ methods: ['GET'], paths: ['/repos/acme/**'] })
  })

  it.each([
    ['a wrong pattern on any connection, default or not', 'providers: [{ name: gh, apiUrl: "https://api.github.com" }]\nconnections: [{ provider: gh, name: work, allow: { paths: ["/a/**/b"] } }]\n', 'policy.yaml: connections[0].allow: path pattern `/a/**/b`: `**` may only end a pattern'],
    ['an unknown key', 'providers: [{ name: gh }]\nconnections: [{ provider: gh, name: default, allow: { hosts: [x] } }]\n', 'hosts']
  ])('refuses %s', (_, text, message) => {
    expect(errorsOf(text).join('\n')).toContain(message)
  })
})
