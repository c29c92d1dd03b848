import type { Readable } from 'node:stream'

import type { BodyCheck, Verdict } from '../guard/createGuard.js'

// The tripwire on request bodies (docs/spec.md §13), for every engine. A body is gated from the
// moment its request arrives (gateBody), before any byte can reach a consumer: what comes while
// the request is decided is held (64 KiB at most; beyond that the client is slowed down), then
// each chunk goes through the verdict's body check as it streams. A request is decided on its
// headers and is never held up waiting for its body; only a short tail of the inspected start is
// kept back at a time, so a secret split across chunks is found before its last byte goes on.

/** What an engine's refusal is made of (the pipeline's Answer, without the import cycle). */
export interface Refusal {
  readonly _tag: 'Answer'
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** The tripwire on one forwarded request's body. */
export interface BodyTripwire {
  /** The next chunk (null at the end): the bytes that may go on now, or the refusal that stops the request. */
  readonly next: (chunk: Buffer | null) => Buffer | Refusal
}

const NOTHING = Buffer.alloc(0)

/** A body's tripwire from the guard's check; a stop is answered with `refuse`'s refusal. */
export const bodyTripwire = (check: BodyCheck, refuse: (stopped: Verdict) => Refusal | { readonly _tag: 'Send' }): BodyTripwire => ({
  next: (chunk) => {
    // Past the inspected start, bytes go on as they came, without a copy.
    if (check.done()) return chunk ?? NOTHING
    const step = check.next(chunk === null ? '' : chunk.toString('latin1'), chunk === null)
    if (step._tag === 'Go') return Buffer.from(step.send, 'latin1')
    const refusal = refuse(step.verdict)
    // INVARIANT: a stopped body is never let through, whatever the verdict's form.
    return refusal._tag === 'Answer' ? refusal : { _tag: 'Answer', status: 403, headers: { 'X-Egress-Guard-Reason': 'credential_exfiltration' }, body: 'Forbidden by egress-guard proxy policy (credential_exfiltration)' }
  }
})

/** A request body held at its source until its request is decided. */
export interface BodyGate {
  /**
   * Lets the body flow: through `tripwire` when given (`stopped` is told the refusal, once, and
   * nothing more of the body flows), else untouched.
   */
  readonly open: (tripwire: BodyTripwire | undefined, stopped: (refusal: Refusal) => void) => void
}

/** Bytes held before a request is decided; beyond them the client is made to wait. */
const HELD_BEFORE_DECISION = 64 * 1024

/**
 * Gates a request body at its source: its `push` (what Node's HTTP/1 parser and HTTP/2
 * compatibility layer call with each chunk) goes through the gate, so no consumer, ours or a
 * library's, reads a byte the tripwire has not seen.
 */
export const gateBody = (body: Readable): BodyGate => {
  const push = body.push.bind(body) as (chunk: Buffer | null) => boolean
  const held: Array<Buffer | null> = []
  let heldBytes = 0
  let through: ((chunk: Buffer | null) => boolean) | undefined
  ;(body as unknown as { push: (chunk: unknown, encoding?: BufferEncoding) => boolean }).push = (chunk, encoding) => {
    const bytes = chunk === null || chunk === undefined ? null : typeof chunk === 'string' ? Buffer.from(chunk, encoding ?? 'utf8') : (chunk as Buffer)
    if (through !== undefined) return through(bytes)
    held.push(bytes)
    heldBytes += bytes?.length ?? 0
    return heldBytes < HELD_BEFORE_DECISION
  }
  return {
    open: (tripwire, stopped) => {
      if (through !== undefined) return
      let refused = false
      through = (bytes) => {
        if (refused) return true
        if (tripwire === undefined) return push(bytes)
        const out = tripwire.next(bytes)
        if (!Buffer.isBuffer(out)) {
          refused = true
          stopped(out)
          return true
        }
        const more = out.length === 0 ? true : push(out)
        return bytes === null ? push(null) : more
      }
      for (const bytes of held.splice(0)) through(bytes)
    }
  }
}
