// A local OTLP/HTTP logs receiver for the sink tests: it accepts only what a collector's JSON
// decoder accepts (ExportLogsServiceRequest, the protobuf JSON mapping: known fields, one value
// kind per AnyValue, 64-bit integers as decimal strings), answers 400 otherwise, and can be down.
import http from 'node:http'
import type { AddressInfo } from 'node:net'

/** One log record as received, its attributes flattened to strings. */
export interface ReceivedLog {
  readonly resource: Readonly<Record<string, string>>
  readonly scope: string
  readonly severityNumber: number
  readonly body: string
  readonly timeUnixNano: string
  readonly attributes: Readonly<Record<string, string>>
}

/** A running receiver. */
export interface OtlpReceiver {
  readonly url: string
  readonly logs: ReadonlyArray<ReceivedLog>
  /** Requests answered 400, with why. */
  readonly rejected: ReadonlyArray<string>
  /** The headers of the last request. */
  readonly lastHeaders: () => http.IncomingHttpHeaders | undefined
  /** While down, every request gets 503. */
  readonly setDown: (down: boolean) => void
  readonly close: () => Promise<void>
}

const only = (value: unknown, keys: ReadonlyArray<string>, where: string): Record<string, unknown> => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: not an object`)
  for (const key of Object.keys(value)) if (!keys.includes(key)) throw new Error(`${where}: unknown field ${key}`)
  return value as Record<string, unknown>
}
const list = (value: unknown, where: string): ReadonlyArray<unknown> => {
  if (!Array.isArray(value)) throw new Error(`${where}: not a list`)
  return value
}
const nanos = (value: unknown, where: string): string => {
  if (typeof value !== 'string' || !/^[0-9]{1,20}$/.test(value)) throw new Error(`${where}: not a decimal string of nanoseconds`)
  return value
}
const anyValue = (value: unknown, where: string): string => {
  const v = only(value, ['stringValue', 'intValue', 'boolValue', 'doubleValue'], where)
  const kinds = Object.keys(v)
  if (kinds.length !== 1) throw new Error(`${where}: an AnyValue holds exactly one kind`)
  if ('stringValue' in v && typeof v['stringValue'] === 'string') return v['stringValue']
  if ('intValue' in v && typeof v['intValue'] === 'string' && /^-?[0-9]+$/.test(v['intValue'])) return v['intValue']
  throw new Error(`${where}: a value of the wrong type`)
}
const attributes = (value: unknown, where: string): Record<string, string> =>
  Object.fromEntries(
    list(value ?? [], where).map((a, i) => {
      const kv = only(a, ['key', 'value'], `${where}[${i}]`)
      if (typeof kv['key'] !== 'string') throw new Error(`${where}[${i}]: key is not a string`)
      return [kv['key'], anyValue(kv['value'], `${where}[${i}].value`)]
    })
  )

/** Decodes an ExportLogsServiceRequest, throwing on anything a strict decoder would refuse. */
export const decodeLogsRequest = (body: unknown): ReadonlyArray<ReceivedLog> =>
  list(only(body, ['resourceLogs'], 'request')['resourceLogs'], 'resourceLogs').flatMap((rl, i) => {
    const resourceLogs = only(rl, ['resource', 'scopeLogs', 'schemaUrl'], `resourceLogs[${i}]`)
    const resource = attributes(only(resourceLogs['resource'], ['attributes', 'droppedAttributesCount'], 'resource')['attributes'], 'resource.attributes')
    return list(resourceLogs['scopeLogs'], 'scopeLogs').flatMap((sl, j) => {
      const scopeLogs = only(sl, ['scope', 'logRecords', 'schemaUrl'], `scopeLogs[${j}]`)
      const scope = only(scopeLogs['scope'], ['name', 'version', 'attributes'], 'scope')
      return list(scopeLogs['logRecords'], 'logRecords').map((lr, k) => {
        const where = `logRecords[${k}]`
        const record = only(lr, ['timeUnixNano', 'observedTimeUnixNano', 'severityNumber', 'severityText', 'body', 'attributes', 'droppedAttributesCount', 'flags', 'traceId', 'spanId'], where)
        const severity = record['severityNumber']
        if (typeof severity !== 'number' || !Number.isInteger(severity) || severity < 1 || severity > 24) throw new Error(`${where}: severityNumber out of 1..24`)
        nanos(record['observedTimeUnixNano'], `${where}.observedTimeUnixNano`)
        return {
          resource,
          scope: String(scope['name']),
          severityNumber: severity,
          body: anyValue(record['body'], `${where}.body`),
          timeUnixNano: nanos(record['timeUnixNano'], `${where}.timeUnixNano`),
          attributes: attributes(record['attributes'], `${where}.attributes`)
        }
      })
    })
  })

/** Starts a receiver on a free loopback port, for `POST /v1/logs`. */
export const startOtlpReceiver = async (): Promise<OtlpReceiver> => {
  const logs: Array<ReceivedLog> = []
  const rejected: Array<string> = []
  let down = false
  let last: http.IncomingHttpHeaders | undefined
  const server = http.createServer((request, response) => {
    let text = ''
    request.on('data', (c: Buffer) => (text += c.toString()))
    request.on('end', () => {
      last = request.headers
      if (down) return void response.writeHead(503).end()
      if (request.method !== 'POST' || request.url !== '/v1/logs') return void response.writeHead(404).end()
      try {
        if (!/^application\/json\b/.test(request.headers['content-type'] ?? '')) throw new Error(`content-type ${request.headers['content-type']}`)
        logs.push(...decodeLogsRequest(JSON.parse(text)))
        response.writeHead(200, { 'content-type': 'application/json' }).end('{"partialSuccess":{}}')
      } catch (error) {
        rejected.push((error as Error).message)
        response.writeHead(400).end()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/logs`,
    logs,
    rejected,
    lastHeaders: () => last,
    setDown: (value) => {
      down = value
    },
    close: () => new Promise((resolve) => server.close(() => resolve()))
  }
}
