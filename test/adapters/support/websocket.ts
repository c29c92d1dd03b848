// A WebSocket client that goes through the proxy with CONNECT, as browsers and SDKs do.
import http from 'node:http'
import { connect as tlsConnect } from 'node:tls'
import type { Duplex } from 'node:stream'

import WebSocket from 'ws'

/** Opens `wss://host/path` through the proxy; resolves with what happened. */
export const websocketThrough = (proxyPort: number, caPem: string, host: string, path: string, headers: Record<string, string> = {}): Promise<{ opened: boolean; closeCode: number | undefined; echo: string | undefined; refusedStatus?: number }> =>
  new Promise((resolve) => {
    const connectRequest = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: `${host}:443` })
    connectRequest.on('error', () => resolve({ opened: false, closeCode: undefined, echo: undefined }))
    connectRequest.on('connect', (response, socket: Duplex) => {
      if (response.statusCode !== 200) return resolve({ opened: false, closeCode: undefined, echo: undefined })
      let opened = false
      let echo: string | undefined
      let refusedStatus: number | undefined
      const ws = new WebSocket(`wss://${host}${path}`, {
        headers,
        createConnection: () => tlsConnect({ socket: socket as never, servername: host, ca: caPem })
      })
      ws.on('open', () => {
        opened = true
        ws.send('ping')
      })
      ws.on('message', (data) => {
        echo = data.toString()
        ws.close(1000)
      })
      // A proxy may refuse the upgrade with an HTTP status instead of accepting and closing it.
      ws.on('unexpected-response', (_request, refusal) => {
        refusedStatus = refusal.statusCode
        refusal.resume()
        ws.terminate()
      })
      ws.on('close', (code) => resolve({ opened, closeCode: code, echo, ...(refusedStatus === undefined ? {} : { refusedStatus }) }))
      ws.on('error', () => undefined)
    })
    connectRequest.end()
  })
