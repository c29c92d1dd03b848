import { describe, expect, it } from 'vitest'

import { buildRouteTable, resolveRoute } from '../../../core/index.js'
import { CATALOG, catalogPolicy } from '../../../adapters/cli/catalog.js'

const everyKey = Object.fromEntries(CATALOG.map((p) => [p.envVar, `key-for-${p.name}`]))

describe('the bundled provider catalog', () => {
  it('holds at least ten providers, each with a distinct SDK variable (git on github.com shares GitHub’s)', () => {
    expect(CATALOG.length).toBeGreaterThanOrEqual(10)
    const own = CATALOG.filter((p) => p.name !== 'github-git')
    expect(new Set(own.map((p) => p.envVar)).size).toBe(own.length)
    expect(CATALOG.find((p) => p.name === 'github-git')?.envVar).toBe('GITHUB_TOKEN')
  })

  it('routes git’s smart-HTTP endpoints on github.com, and nothing else there, with Basic x-access-token', () => {
    const policy = catalogPolicy({ GITHUB_TOKEN: 'ghp_x' })
    const { table } = buildRouteTable(policy.input, 'connected')
    const at = (path: string, method = 'GET') => resolveRoute(table, { scheme: 'https', host: 'github.com', port: 443, path, method })
    for (const path of ['/acme/private.git/info/refs?service=git-upload-pack', '/acme/private/info/refs', '/acme/private.git/git-upload-pack', '/acme/private.git/git-receive-pack']) {
      expect(at(path, path.includes('info/refs') ? 'GET' : 'POST')).toEqual({ _tag: 'Matched', provider: 'github-git', connection: 'default' })
    }
    for (const path of ['/acme/private', '/settings/tokens', '/acme/private.git/info/refs/x', '/acme/private.git//info/refs']) {
      expect(at(path)).toMatchObject({ _tag: 'Miss', reason: 'not_allowed' })
    }
    expect(at('/login/oauth/access_token', 'POST')).toMatchObject({ _tag: 'Miss' })
    const git = policy.file.connections?.find((c) => c.provider === 'github-git')?.credentials
    expect(git).toEqual({ headers: { Authorization: 'Basic ${base64:x-access-token:${env:GITHUB_TOKEN}}' } })
  })

  it('decodes without warnings with every key set, and connects exactly the providers whose key is set', () => {
    const all = catalogPolicy(everyKey)
    expect(all.warnings).toEqual([])
    expect(all.input.connections).toHaveLength(CATALOG.length)
    const { table } = buildRouteTable(catalogPolicy({ OPENAI_API_KEY: 'k' }).input, 'connected')
    expect(new Set(table.routes.map((r) => r.provider))).toEqual(new Set(['openai']))
  })

  it.each([
    ['api.openai.com', '/v1/models', 'openai'],
    ['api.anthropic.com', '/v1/messages', 'anthropic'],
    ['raw.githubusercontent.com', '/o/r/main/x', 'github'],
    ['objects.githubusercontent.com', '/x', 'github'],
    ['gitlab.com', '/api/v4/projects', 'gitlab'],
    ['generativelanguage.googleapis.com', '/v1beta/models', 'gemini'],
    ['api.stripe.com', '/v1/charges', 'stripe'],
    ['slack.com', '/api/chat.postMessage', 'slack']
  ])('routes %s%s to %s', (host, path, provider) => {
    const { table } = buildRouteTable(catalogPolicy(everyKey).input, 'connected')
    expect(resolveRoute(table, { scheme: 'https', host, port: 443, path, method: 'GET' })).toEqual({ _tag: 'Matched', provider, connection: 'default' })
  })

  it.each([
    ['evilgithubusercontent.com', '/'],
    ['github.com', '/login/oauth/access_token'],
    ['slack.com', '/api/oauth.v2.access'],
    ['gitlab.com', '/users/sign_in']
  ])('never sends credentials to %s%s', (host, path) => {
    const { table } = buildRouteTable(catalogPolicy(everyKey).input, 'connected')
    expect(resolveRoute(table, { scheme: 'https', host, port: 443, path, method: 'GET' })._tag).toBe('Miss')
  })
})
