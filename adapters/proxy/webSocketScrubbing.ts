import { Transform, type Duplex } from 'node:stream'

import { scrub, scrubChunk, type ScrubRule } from '../../core/index.js'
import { scrubbingStream } from './responseScrubbing.js'

// WebSocket frames from the upstream of an injected upgrade, scrubbed (docs/spec.md §13): the
// payload of every data message (text or binary) goes through the scrubber as it streams, and comes
// out as frames of our own (an intermediary may fragment a message, RFC 6455 §5.4, when no
// extension was agreed: the request went without `Sec-WebSocket-Extensions`). Control frames (close
// reasons, pings, pongs: 125 bytes at most) are scrubbed whole. Memory is bounded: a data frame is
// never held whole, only its header; a compressed (RSV) frame cannot be read and ends the stream.

const CONTINUATION = 0x0
const CONTROL = 0x8
/** A control frame's payload, at most (RFC 6455 §5.5). */
const CONTROL_PAYLOAD = 125

/** A frame header, unmasked (server to client), for a payload of `length` bytes. */
const frameHeader = (fin: boolean, opcode: number, length: number): Buffer => {
  const first = (fin ? 0x80 : 0) | opcode
  if (length < 126) return Buffer.from([first, length])
  if (length < 65_536) {
    const header = Buffer.alloc(4)
    header[0] = first
    header[1] = 126
    header.writeUInt16BE(length, 2)
    return header
  }
  const header = Buffer.alloc(10)
  header[0] = first
  header[1] = 127
  header.writeBigUInt64BE(BigInt(length), 2)
  return header
}

interface FrameState {
  readonly fin: boolean
  readonly opcode: number
  readonly mask: Buffer | undefined
  /** Payload bytes still to come. */
  remaining: number
  /** Payload bytes seen, for unmasking. */
  seen: number
  /** A control frame's payload, gathered whole. */
  control: string
}

/** A stream of upstream WebSocket bytes in, the same with every message and control payload scrubbed out; errors on a frame it cannot read. */
export const webSocketScrubber = (rules: ReadonlyArray<ScrubRule>): Transform => {
  let pending: Buffer = Buffer.alloc(0)
  let frame: FrameState | undefined
  // The data message under way: its opcode (text or binary), whether a frame of it went out, and the bytes kept back.
  let message = CONTINUATION
  let started = false
  let kept = ''

  const sendData = (push: (chunk: Buffer) => void, text: string, fin: boolean): void => {
    if (text === '' && !fin) return
    push(Buffer.concat([frameHeader(fin, started ? CONTINUATION : message, text.length), Buffer.from(text, 'latin1')]))
    started = true
  }

  const readHeader = (): FrameState | 'more' | 'unreadable' => {
    if (pending.length < 2) return 'more'
    const first = pending[0] as number
    const second = pending[1] as number
    const short = second & 0x7f
    const masked = (second & 0x80) !== 0
    const size = 2 + (short === 126 ? 2 : short === 127 ? 8 : 0) + (masked ? 4 : 0)
    if (pending.length < size) return 'more'
    const opcode = first & 0x0f
    const length = short === 126 ? pending.readUInt16BE(2) : short === 127 ? Number(pending.readBigUInt64BE(2)) : short
    if ((first & 0x70) !== 0 || (opcode >= CONTROL && length > CONTROL_PAYLOAD)) return 'unreadable'
    const maskAt = size - 4
    const state: FrameState = { fin: (first & 0x80) !== 0, opcode, mask: masked ? Buffer.from(pending.subarray(maskAt, maskAt + 4)) : undefined, remaining: length, seen: 0, control: '' }
    if (opcode !== CONTINUATION && opcode < CONTROL) {
      message = opcode
      started = false
      kept = ''
    }
    pending = pending.subarray(size)
    return state
  }

  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      const push = (out: Buffer): void => void this.push(out)
      for (;;) {
        if (frame === undefined) {
          const next = readHeader()
          if (next === 'more') break
          if (next === 'unreadable') return callback(new Error('a WebSocket frame that cannot be scrubbed (compressed, or an oversized control frame)'))
          frame = next
        }
        const take = Math.min(frame.remaining, pending.length)
        let bytes = pending.subarray(0, take)
        pending = pending.subarray(take)
        frame.remaining -= take
        if (frame.mask !== undefined) {
          bytes = Buffer.from(bytes)
          for (let i = 0; i < bytes.length; i++) bytes[i] = (bytes[i] as number) ^ (frame.mask[(frame.seen + i) % 4] as number)
        }
        frame.seen += take
        if (frame.opcode >= CONTROL) {
          frame.control += bytes.toString('latin1')
          if (frame.remaining === 0) {
            const payload = scrub(rules, frame.control).slice(0, CONTROL_PAYLOAD)
            push(Buffer.concat([frameHeader(true, frame.opcode, payload.length), Buffer.from(payload, 'latin1')]))
          }
        } else {
          const next = scrubChunk(rules, kept, bytes.toString('latin1'))
          kept = next.kept
          if (frame.remaining === 0 && frame.fin) {
            sendData(push, next.send + kept, true)
            kept = ''
            message = CONTINUATION
          } else sendData(push, next.send, false)
        }
        if (frame.remaining > 0) break
        frame = undefined
      }
      callback()
    }
  })
}

/**
 * Scrubs what a proxy library writes to a client socket after it accepted a WebSocket upgrade
 * (mockttp): the handshake answer's header values, then every frame through webSocketScrubber. A
 * frame it cannot read ends the connection.
 */
export const scrubSocketWrites = (socket: Duplex, rules: ReadonlyArray<ScrubRule>): void => {
  if (rules.length === 0) return
  const write = socket.write.bind(socket) as (chunk: unknown, ...rest: Array<unknown>) => boolean
  let handshake = ''
  // After the answer's head: frames when the upstream switched protocols, else the answer's body.
  let after: Transform | undefined
  ;(socket as unknown as Record<string, unknown>)['write'] = (chunk: unknown, ...rest: Array<unknown>): boolean => {
    const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8') : Buffer.from(chunk as Uint8Array)
    if (after !== undefined) return after.write(bytes, callback)
    handshake += bytes.toString('latin1')
    const end = handshake.indexOf('\r\n\r\n')
    if (end < 0) {
      callback?.()
      return true
    }
    const head = handshake.slice(0, end + 4)
    after = /^HTTP\/1\.[01] 101 /.test(head) ? webSocketScrubber(rules) : scrubbingStream(rules)
    after.on('data', (out: Buffer) => write(out))
    after.on('error', () => socket.destroy())
    write(Buffer.from(scrub(rules, head), 'latin1'))
    return after.write(Buffer.from(handshake.slice(end + 4), 'latin1'), callback)
  }
}
