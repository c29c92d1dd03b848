import { describe, expect, it } from 'vitest'

import type { CredentialOutcome } from '../../../core/index.js'
import { createCredentialCache } from '../../../adapters/guard/CredentialCache.js'
import type { Clock, CredentialSource } from '../../../adapters/ports.js'

// The source and clock are the shell's ports: here they are controllable stand-ins.
const manualClock = (start = Date.parse('2026-01-01T00:00:00Z')) => {
  let now = start
  const clock: Clock = { now: () => new Date(now) }
  return { clock, advance: (ms: number) => (now += ms), at: () => now }
}

const countingSource = (answer: (call: number, signal: AbortSignal) => Promise<CredentialOutcome>) => {
  let calls = 0
  const source: CredentialSource = { resolve: (_p, _c, signal) => answer(++calls, signal) }
  return { source, calls: () => calls }
}

const available = (token: string, expiresAt?: Date): CredentialOutcome => ({ _tag: 'Available', headers: { Authorization: `Bearer ${token}` }, ...(expiresAt === undefined ? {} : { expiresAt }) })

describe('credential cache (docs/spec.md §7)', () => {
  it('keeps a credential without expiry until cleared', async () => {
    const { clock, advance } = manualClock()
    const { source, calls } = countingSource(async (n) => available(`t${n}`))
    const cache = createCredentialCache({ source, clock })
    expect(await cache.get('p', 'c')).toEqual(available('t1'))
    advance(10 * 24 * 3600 * 1000)
    expect(await cache.get('p', 'c')).toEqual(available('t1'))
    cache.clear()
    expect(await cache.get('p', 'c')).toEqual(available('t2'))
    expect(calls()).toBe(2)
  })

  it('peeks only at what get would answer at once: nothing before a resolution or after the refresh point', async () => {
    const { clock, advance, at } = manualClock()
    const { source } = countingSource(async (n) => available(`t${n}`, new Date(at() + 600_000)))
    const cache = createCredentialCache({ source, clock, refreshWindowMs: 300_000 })
    expect(cache.peek('p', 'c')).toBeUndefined()
    await cache.get('p', 'c')
    expect(cache.peek('p', 'c')).toMatchObject({ _tag: 'Available', headers: { Authorization: 'Bearer t1' } })
    advance(300_000)
    expect(cache.peek('p', 'c')).toBeUndefined()
  })

  it('resolves again from expiresAt minus the refresh window', async () => {
    const { clock, advance, at } = manualClock()
    const { source, calls } = countingSource(async (n) => available(`t${n}`, new Date(at() + 600_000)))
    const cache = createCredentialCache({ source, clock, refreshWindowMs: 300_000 })
    await cache.get('p', 'c')
    advance(299_000)
    expect((await cache.get('p', 'c'))._tag).toBe('Available')
    expect(calls()).toBe(1)
    advance(2_000) // now past expiresAt − 300 s
    await cache.get('p', 'c')
    expect(calls()).toBe(2)
  })

  it('shares one resolution between concurrent misses for a key, not across keys', async () => {
    const { clock } = manualClock()
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => (release = resolve))
    const { source, calls } = countingSource(async (n) => {
      await gate
      return available(`t${n}`)
    })
    const cache = createCredentialCache({ source, clock })
    const all = Promise.all([cache.get('p', 'c'), cache.get('p', 'c'), cache.get('p', 'c'), cache.get('q', 'c')])
    release()
    const results = await all
    expect(calls()).toBe(2)
    expect(results[0]).toBe(results[1])
  })

  it('does not cache failures', async () => {
    const { clock } = manualClock()
    const { source, calls } = countingSource(async (n) => (n === 1 ? { _tag: 'Unavailable', error: 'down' } : available('ok')))
    const cache = createCredentialCache({ source, clock })
    expect(await cache.get('p', 'c')).toEqual({ _tag: 'Unavailable', error: 'down' })
    expect(await cache.get('p', 'c')).toEqual(available('ok'))
    expect(calls()).toBe(2)
  })

  it('turns a resolution that exceeds its timeout into Unavailable and aborts it', async () => {
    const { clock } = manualClock()
    let aborted = false
    const { source } = countingSource(
      (_n, signal) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true
            resolve(available('late'))
          })
        })
    )
    const cache = createCredentialCache({ source, clock, timeoutMs: 50 })
    expect(await cache.get('p', 'c')).toEqual({ _tag: 'Unavailable', error: 'credential source for `p/c` did not answer within 50 ms' })
    expect(aborted).toBe(true)
  })

  it('turns a throwing source into Unavailable without its message', async () => {
    const { clock } = manualClock()
    const cache = createCredentialCache({ source: { resolve: async () => Promise.reject(new Error('token sk-leak')) }, clock })
    const outcome = await cache.get('p', 'c')
    expect(outcome).toEqual({ _tag: 'Unavailable', error: 'credential source for `p/c` failed' })
  })

  it('never keeps a resolution that started before clear()', async () => {
    const { clock } = manualClock()
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => (release = resolve))
    const { source, calls } = countingSource(async (n) => {
      if (n === 1) await gate
      return available(`t${n}`)
    })
    const cache = createCredentialCache({ source, clock })
    const stale = cache.get('p', 'c')
    cache.clear()
    release()
    expect(await stale).toEqual(available('t1'))
    expect(await cache.get('p', 'c')).toEqual(available('t2'))
    expect(calls()).toBe(2)
  })

  it('asks again after a source broke its contract (answered null, an expiry that is not a Date)', async () => {
    const { clock, advance } = manualClock()
    const answers: ReadonlyArray<unknown> = [null, { ...available('s'), expiresAt: '2026-01-01T00:10:00Z' }, { ...available('i'), expiresAt: new Date(Number.NaN) }]
    const { source, calls } = countingSource(async (n) => (n <= answers.length ? answers[n - 1] : available(`t${n}`)) as CredentialOutcome)
    const cache = createCredentialCache({ source, clock })
    expect((await cache.get('p', 'c'))._tag).toBe('Unavailable')
    expect(await cache.get('p', 'c')).toEqual({ _tag: 'Unavailable', error: 'credential expiresAt is not a valid Date' })
    advance(3600 * 1000)
    expect(await cache.get('p', 'c')).toEqual({ _tag: 'Unavailable', error: 'credential expiresAt is not a valid Date' })
    expect(await cache.get('p', 'c')).toEqual(available('t4'))
    expect(calls()).toBe(4)
  })
})
