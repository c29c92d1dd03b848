// Real clients pointed at the proxy: curl, Node fetch through undici's ProxyAgent, and Python's
// urllib with a proxy handler. Each reports the status and body it got, or 0 when the
// connection was closed on it.
import { execFile } from 'node:child_process'

import { fetch, ProxyAgent } from 'undici'

export interface Answer {
  readonly status: number
  readonly body: string
  readonly headers?: Readonly<Record<string, string>>
}

const run = (file: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(file, args, { env, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr })
    })
  })

/** curl through the proxy; `caFile` is the bundle curl trusts. */
export const curl = async (proxy: string, caFile: string, url: string, extra: ReadonlyArray<string> = []): Promise<Answer> => {
  const result = await run('curl', ['-sS', '--max-time', '10', '--proxy', proxy, '--cacert', caFile, '--noproxy', '', '-o', '-', '-w', '\n%{http_code}', ...extra, url])
  const cut = result.stdout.lastIndexOf('\n')
  const status = Number(result.stdout.slice(cut + 1))
  return { status: result.code === 0 ? status : 0, body: result.stdout.slice(0, Math.max(cut, 0)) }
}

/** curl through the proxy, with its exit code (18: transfer cut short, 28: timed out, …) and what it received. */
export const curlExit = async (proxy: string, caFile: string, url: string): Promise<{ exit: number; body: string }> => {
  const result = await run('curl', ['-sS', '--max-time', '10', '--proxy', proxy, '--cacert', caFile, '--noproxy', '', '-o', '-', url])
  return { exit: result.code, body: result.stdout }
}

/** Node's fetch (undici) through the proxy, trusting `caPem`. */
export const nodeFetch = async (proxy: string, caPem: string, url: string, headers: Record<string, string> = {}): Promise<Answer> => {
  const dispatcher = new ProxyAgent({ uri: proxy, requestTls: { ca: caPem } })
  try {
    const response = await fetch(url, { dispatcher, headers })
    return { status: response.status, body: await response.text(), headers: Object.fromEntries(response.headers) }
  } catch {
    return { status: 0, body: '' }
  } finally {
    await dispatcher.close()
  }
}

const PYTHON = `
import json, os, ssl, sys, urllib.request, urllib.error
context = ssl.create_default_context(cafile=os.environ["EG_CA"])
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"http": os.environ["EG_PROXY"], "https": os.environ["EG_PROXY"]}),
    urllib.request.HTTPSHandler(context=context))
request = urllib.request.Request(os.environ["EG_URL"], headers=json.loads(os.environ["EG_HEADERS"]))
try:
    with opener.open(request, timeout=10) as response:
        print(json.dumps({"status": response.status, "body": response.read().decode()}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": error.read().decode()}))
except Exception as error:
    print(json.dumps({"status": 0, "body": type(error).__name__}))
`

/** Python's urllib through the proxy, trusting `caFile`. */
export const pythonUrllib = async (proxy: string, caFile: string, url: string, headers: Record<string, string> = {}): Promise<Answer> => {
  const env = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', EG_PROXY: proxy, EG_CA: caFile, EG_URL: url, EG_HEADERS: JSON.stringify(headers) }
  const result = await run('python3', ['-c', PYTHON], env)
  try {
    return JSON.parse(result.stdout) as Answer
  } catch {
    return { status: -1, body: result.stderr }
  }
}
