// The same requests as requests.py, made with Node's fetch: under `run` its preload sends them
// through the proxy; given EG_PROXY, through undici's ProxyAgent. One JSON line per answer.
const fill = (text) => text.replace(/\{([A-Z_]+)\}/g, (_, name) => process.env[name] ?? '')
let dispatcher
if (process.env.EG_PROXY) {
  const { ProxyAgent } = await import('undici')
  const { readFileSync } = await import('node:fs')
  dispatcher = new ProxyAgent({ uri: process.env.EG_PROXY, requestTls: { ca: readFileSync(process.env.EG_CA, 'utf8') } })
}
for (const spec of JSON.parse(process.env.EG_REQUESTS)) {
  const headers = Object.fromEntries(Object.entries(spec.headers ?? {}).map(([k, v]) => [k, fill(v)]))
  const init = { method: spec.method ?? (spec.body === undefined ? 'GET' : 'POST'), headers, ...(spec.body === undefined ? {} : { body: fill(spec.body) }), ...(dispatcher === undefined ? {} : { dispatcher }) }
  const fetcher = dispatcher === undefined ? fetch : (await import('undici')).fetch
  const response = await fetcher(fill(spec.url), init)
  console.log(JSON.stringify({ status: response.status, body: await response.text(), headers: Object.fromEntries(response.headers) }))
}
await dispatcher?.close()
