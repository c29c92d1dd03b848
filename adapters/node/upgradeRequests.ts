import http from 'node:http'
import https from 'node:https'
import { finished, type Duplex } from 'node:stream'
import { checkServerIdentity, type PeerCertificate, type SecureContext } from 'node:tls'

import type { Logger } from '../ports.js'
import type { Forward } from '../proxy/pipeline.js'
import { rawAnswer } from '../proxy/rawAnswer.js'
import { scrubbedBody, scrubbedHeaders } from '../proxy/responseScrubbing.js'
import { webSocketScrubber } from '../proxy/webSocketScrubbing.js'
import { upstreamErrorCode, upstreamFailureBody } from '../upstream/upstreamFailure.js'
import { responseHeaders } from './upstreamRequests.js'

// A judged upgrade (WebSocket) request forwarded on a connection of its own, with every handshake
// header the client sent (`Sec-WebSocket-Key`, `-Version`, `-Protocol`, `-Extensions`, …). An
// upstream that switches protocols is spliced to the client as it is, so the subprotocol and
// extensions the client is told are the upstream's own; one that refuses has its HTTP answer
// passed back, and the connection closes after it.

const headerLines = (headers: Record<string, string | string[]>): string =>
  Object.entries(headers)
    .flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((one) => `${name}: ${one}\r\n`))
    .join('')

/** Forwards an upgrade request and splices both sides once the upstream switches protocols. */
export const forwardUpgrade = (step: Forward, tls: boolean, client: Duplex, head: Buffer, trust: SecureContext | undefined, log: Logger): void => {
  // A client gone while the request was decided: nothing is sent for it.
  if (client.destroyed) return
  const { upstream, servername } = step.where
  // An injected upgrade's answers and frames are scrubbed of the injected values (docs/spec.md §13).
  const rules = step.verdict.secrets?.scrub ?? []
  let answered = false
  const request = (tls ? https : http).request({
    host: upstream.host,
    port: upstream.port,
    method: step.method,
    path: step.path,
    headers: step.headers,
    agent: false,
    ...(tls ? (servername === undefined ? { checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(step.where.target.host, cert) } : { servername }) : {}),
    ...(tls && trust !== undefined ? { secureContext: trust } : {})
  })
  client.on('error', () => request.destroy())
  finished(client, () => request.destroy())
  request.on('upgrade', (response: http.IncomingMessage, socket: Duplex, upstreamHead: Buffer) => {
    answered = true
    // INVARIANT: only a switch to WebSocket is spliced; any other protocol is not what was judged.
    if ((response.headers.upgrade ?? '').toLowerCase() !== 'websocket' || client.destroyed) {
      socket.destroy()
      client.destroy()
      return
    }
    const headers = scrubbedHeaders(rules, { ...responseHeaders(response.headers), connection: 'Upgrade', ...(response.headers.upgrade === undefined ? {} : { upgrade: response.headers.upgrade }) })
    client.write(`HTTP/1.1 101 Switching Protocols\r\n${headerLines(headers)}\r\n`)
    const fromUpstream = rules.length === 0 ? undefined : webSocketScrubber(rules)
    if (upstreamHead.length > 0) (fromUpstream ?? client).write(upstreamHead)
    if (head.length > 0) socket.write(head)
    socket.on('error', () => client.destroy())
    client.on('error', () => socket.destroy())
    finished(socket, () => client.destroy())
    finished(client, () => socket.destroy())
    if (fromUpstream === undefined) socket.pipe(client)
    else {
      fromUpstream.on('error', () => {
        socket.destroy()
        client.destroy()
      })
      socket.pipe(fromUpstream).pipe(client)
    }
    client.pipe(socket)
  })
  request.on('response', (response: http.IncomingMessage) => {
    // The upstream refused the upgrade: its answer, as an HTTP answer, and the connection closes.
    answered = true
    const headers = responseHeaders(response.headers)
    delete headers['content-length']
    const body = rules.length === 0 ? undefined : scrubbedBody(rules, response.headers['content-encoding'], response.headers['transfer-encoding'])
    if (rules.length > 0 && body === undefined) {
      response.destroy()
      client.end(rawAnswer(502, 'Bad gateway: egress-guard cannot scrub a response in this content coding'))
      return
    }
    if (body !== undefined) delete headers['content-encoding']
    client.write(`HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}\r\n${headerLines(scrubbedHeaders(rules, headers))}connection: close\r\n\r\n`)
    response.on('error', () => client.destroy())
    if (body === undefined) response.pipe(client)
    else {
      body.output.on('error', () => client.destroy())
      response.pipe(body.input)
      body.output.pipe(client)
    }
  })
  request.on('error', (error) => {
    const code = upstreamErrorCode(error)
    log('warn', `upstream upgrade failed: ${code}`)
    if (answered || client.destroyed) client.destroy()
    else client.end(rawAnswer(502, upstreamFailureBody(code)))
  })
  request.end()
}
