// New intercepted hosts cannot starve the proxy: leaves are issued two at a time with domains
// served in turn, and each domain has a budget of new hosts (a token bucket) beyond which a
// CONNECT is refused at once with 503 and Retry-After; hosts seen before and other domains are
// never refused. Both engines.
import { connect } from 'node:net'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { fairQueue, hostGroup } from '../../../adapters/interception/fairQueue.js'
import { newHostBudget } from '../../../adapters/interception/newHostBudget.js'
import { curl } from '../support/clients.js'
import { ADAPTERS, startHarness, type Harness } from '../support/harness.js'

describe('fairQueue', () => {
  it('serves groups in turn: a later domain starts before the rest of a flood', async () => {
    const queue = fairQueue({ concurrency: 1, maxWaiting: 100 })
    const started: Array<string> = []
    const task = (name: string) => () => {
      started.push(name)
      return new Promise<void>((resolve) => setImmediate(resolve))
    }
    await Promise.all([...['a1', 'a2', 'a3', 'a4', 'a5'].map((n) => queue.run('flood.test', task(n))), queue.run('legit.test', task('b1'))])
    expect(started).toEqual(['a1', 'a2', 'b1', 'a3', 'a4', 'a5'])
  })

  it('runs at most `concurrency` tasks at once and refuses beyond `maxWaiting`', async () => {
    const queue = fairQueue({ concurrency: 2, maxWaiting: 3 })
    let running = 0
    let most = 0
    const release: Array<() => void> = []
    const task = () => {
      running++
      most = Math.max(most, running)
      return new Promise<void>((resolve) => release.push(() => resolve((running--, undefined))))
    }
    const runs = [1, 2, 3, 4, 5].map(() => queue.run('g', task))
    await expect(queue.run('g', task)).rejects.toThrow('more than 3 tasks are waiting')
    while (release.length > 0 || queue.waiting() > 0) {
      release.shift()?.()
      await new Promise((resolve) => setImmediate(resolve))
    }
    await Promise.all(runs)
    expect(most).toBe(2)
  })

  it.each([
    ['f1.flood.test', 'flood.test'],
    ['h1.g1.flood.test', 'flood.test'],
    ['x.beta.test.', 'beta.test'],
    ['api.openai.com', 'openai.com'],
    ['localhost', 'localhost'],
    ['10.1.2.3', '10.1.2.3'],
    ['::1', '::1']
  ])('groups %s under %s', (host, group) => {
    expect(hostGroup(host)).toBe(group)
  })
})

describe('newHostBudget', () => {
  it('admits a burst per domain, then its rate, and never counts one domain against another', () => {
    let now = 0
    const refusals: Array<[string, number]> = []
    const budget = newHostBudget({ perSecond: 2, burst: 3, now: () => now, onRefused: (group, n) => refusals.push([group, n]) })
    expect([1, 2, 3, 4].map((i) => budget.admit(`h${i}.flood.test`))).toEqual([true, true, true, false])
    expect(budget.admit('api.legit.test')).toBe(true)
    now = 500
    expect([budget.admit('h5.flood.test'), budget.admit('h6.flood.test')]).toEqual([true, false])
    expect(refusals).toEqual([['flood.test', 1]])
  })

  it('keeps at most maxGroups buckets', () => {
    const budget = newHostBudget({ perSecond: 1, burst: 1, maxGroups: 2, now: () => 0 })
    expect(budget.admit('a.one.test')).toBe(true)
    expect(budget.admit('b.one.test')).toBe(false)
    budget.admit('a.two.test')
    budget.admit('a.three.test') // `one.test` is forgotten: its bucket is full again
    expect(budget.admit('c.one.test')).toBe(true)
  })
})

describe.each(ADAPTERS)('the new-host budget on %s', (adapter) => {
  let h: Harness
  beforeAll(async () => {
    h = await startHarness({ mode: 'connected_deny', adapter, proxy: { newHosts: { perSecond: 0.01, burst: 2 } } })
  })
  afterAll(async () => {
    await h.close()
  })

  it('refuses a new host over its domain’s budget with 503 and Retry-After, never a known host or another domain', async () => {
    expect((await curl(h.proxy.url, h.proxyCaPath, 'https://api.beta.test/x')).status).toBe(200)
    expect((await curl(h.proxy.url, h.proxyCaPath, 'https://x.beta.test/x')).status).toBe(200)
    const raw = await new Promise<string>((resolve) => {
      const socket = connect(h.proxy.port, '127.0.0.1', () => socket.write('CONNECT y.beta.test:443 HTTP/1.1\r\nHost: y.beta.test:443\r\n\r\n'))
      let text = ''
      socket.on('data', (d: Buffer) => (text += d.toString()))
      socket.on('close', () => resolve(text))
      socket.on('error', () => resolve(text))
    })
    expect(raw).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/)
    expect(raw).toMatch(/\r\nRetry-After: 1\r\n/)
    expect((await curl(h.proxy.url, h.proxyCaPath, 'https://api.beta.test/x')).status).toBe(200)
    expect((await curl(h.proxy.url, h.proxyCaPath, 'https://api.alpha.test/v1/x')).status).toBe(200)
  })
})
