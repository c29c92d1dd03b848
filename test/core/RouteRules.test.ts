// docs/spec.md §10: a connection's `allow` narrows where its credential is injected. Outside it the
// request is `not_allowed` (denied in deny modes, passed without credentials in allow modes), and
// near misses (encodings, dot segments, repeated slashes, method case) never get through.
import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { buildRouteTable, compileRules, decide, resolveRoute, type RequestFacts } from '../../core/index.js'

const { table, warnings } = buildRouteTable(
  {
    providers: [{ name: 'github', apiUrl: 'https://api.github.com' }],
    connections: [{ provider: 'github', name: 'readonly', isDefault: true, allow: { methods: ['get', 'HEAD'], paths: ['/repos/acme/*/issues', '/user', '/orgs/acme/**'] } }]
  },
  'connected'
)

const at = (path: string, method = 'GET', facts: Partial<RequestFacts> = {}) =>
  resolveRoute(table, { scheme: 'https', host: 'api.github.com', port: 443, path, method, ...facts })
const matched = { _tag: 'Matched', provider: 'github', connection: 'readonly' }
const notAllowed = { _tag: 'Miss', reason: 'not_allowed', target: { provider: 'github', connection: 'readonly' } }

describe('route rules', () => {
  it('build without warnings', () => {
    expect(warnings).toEqual([])
  })

  it.each([
    ['/repos/acme/app/issues', 'GET'],
    ['/repos/acme/app/issues/', 'get'],
    ['/repos/acme/app/issues?state=open', 'HEAD'],
    ['/user', 'GET'],
    ['/user/repos', 'GET'],
    ['/orgs/acme', 'GET'],
    ['/orgs/acme/members/x', 'GET'],
    ['/repos/acme/%61pp/issues', 'GET']
  ])('allow %s %s', (path, method) => {
    expect(at(path, method)).toEqual(matched)
  })

  it.each([
    ['/repos/acme/app/issues', 'POST'],
    ['/repos/acme/app/issues', 'DELETE'],
    ['/repos/acme/app/pulls', 'GET'],
    ['/repos/acme/app/issues/1', 'GET'],
    ['/repos/other/app/issues', 'GET'],
    ['/repos/acme//issues', 'GET'],
    ['/repos/acme/app//issues', 'GET'],
    ['/users', 'GET'],
    ['/orgs/acmex', 'GET'],
    ['/orgs/acme/../evil/x', 'GET'],
    ['/orgs/acme/%2e%2e/evil', 'GET'],
    ['/orgs/acme%2fevil', 'GET'],
    ['/user/x//../../admin', 'GET'],
    ['/repos', 'GET']
  ])('refuse %s %s as not_allowed', (path, method) => {
    expect(at(path, method)).toEqual(notAllowed)
  })

  it('deny modes deny not_allowed, naming the connection; allow modes pass it without credentials', () => {
    const request: RequestFacts = { scheme: 'https', host: 'api.github.com', port: 443, path: '/repos/acme/app/issues', method: 'POST' }
    const resolution = resolveRoute(table, request)
    const denied = decide({ mode: 'connected_deny', request, resolution })
    expect(denied.decision).toMatchObject({ _tag: 'Deny', reason: 'not_allowed', status: 403 })
    expect(denied.audit).toEqual([{ event: 'proxy_deny', source: 'external', provider: 'github', connection: 'readonly', metadata: { host: 'api.github.com', reason: 'not_allowed' } }])
    const passed = decide({ mode: 'connected_allow', request, resolution, credentials: { _tag: 'Available', headers: { Authorization: 'Bearer x' } } })
    expect(passed.decision).toEqual({ _tag: 'Pass' })
    expect(passed.audit[0]).toMatchObject({ event: 'proxy_miss', provider: 'github', connection: 'readonly', metadata: { reason: 'not_allowed' } })
  })

  it.each([
    [{ methods: ['GE T'] }, 'method `GE T`: write an HTTP method such as GET'],
    [{ paths: ['repos'] }, 'path pattern `repos`: write a path starting with `/`'],
    [{ paths: ['/a/**/b'] }, 'path pattern `/a/**/b`: `**` may only end a pattern'],
    [{ paths: ['/a/b*'] }, 'path pattern `/a/b*`: `*` stands for a whole segment (`/a/*/b`), and segments are canonical'],
    [{ paths: ['/a/../b'] }, 'path pattern `/a/../b`: write a canonical path (no `?`, `#`, `%`, `\\`, dot segments or `//`)']
  ])('refuses rules %j, saying what to write', (allow, message) => {
    expect(compileRules(allow)).toEqual(E.left(message))
  })

  it('skips a connection whose rules are wrong (never routing it unrestricted)', () => {
    const built = buildRouteTable({ providers: [{ name: 'p', apiUrl: 'https://api.p.test' }], connections: [{ provider: 'p', name: 'default', allow: { paths: ['nope'] } }] }, 'connected')
    expect(built.table.routes).toEqual([])
    expect(built.warnings.map((w) => w.code)).toEqual(['invalid_rule'])
  })
})
