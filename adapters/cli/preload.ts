// Loaded into every Node process that `egress-guard run` starts (NODE_OPTIONS=--require, after the
// user's own options). Node 20's fetch, undici and the http/https modules ignore HTTPS_PROXY, so
// the official SDKs (openai, @anthropic-ai/sdk) connected straight to the provider, around the
// proxy, in every mode. This sends them through it:
// - fetch and undici: undici's EnvHttpProxyAgent as the global dispatcher (it reads HTTP_PROXY,
//   HTTPS_PROXY and NO_PROXY);
// - http.request and https.request with the default agents: agents that tunnel through the proxy,
//   except for the NO_PROXY hosts (loopback), which keep the original agents.
// If any of it cannot be installed the process stops here: a child that could bypass the proxy
// is not started.
import http from 'node:http'
import https from 'node:https'

import { HttpProxyAgent } from 'http-proxy-agent'
import { HttpsProxyAgent } from 'https-proxy-agent'
import { getProxyForUrl } from 'proxy-from-env'
import { EnvHttpProxyAgent, setGlobalDispatcher } from 'undici'

/** The part of an agent Node's http client calls: every request is handed to the agent this way. */
interface RequestTaking {
  addRequest: (request: http.ClientRequest, options: { readonly host?: string | null; readonly port?: number | string | null }) => void
}

const install = (): void => {
  const proxy = process.env['HTTPS_PROXY'] ?? process.env['https_proxy'] ?? process.env['HTTP_PROXY'] ?? process.env['http_proxy']
  if (proxy === undefined || proxy === '') return
  setGlobalDispatcher(new EnvHttpProxyAgent())

  // Each default agent hands a request to the proxy agent, or to the original agent for a host the
  // environment exempts (NO_PROXY: loopback, and whatever the user listed).
  const route = (scheme: 'http' | 'https', direct: http.Agent, viaProxy: http.Agent): http.Agent => {
    const agent = scheme === 'https' ? new https.Agent() : new http.Agent()
    ;(agent as unknown as RequestTaking).addRequest = (request, options) => {
      const host = options.host ?? 'localhost'
      const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${options.port ?? (scheme === 'https' ? 443 : 80)}/`
      const chosen = getProxyForUrl(url) === '' ? direct : viaProxy
      ;(chosen as unknown as RequestTaking).addRequest(request, options)
    }
    return agent
  }
  const httpsProxy = process.env['HTTPS_PROXY'] ?? process.env['https_proxy'] ?? proxy
  const httpProxy = process.env['HTTP_PROXY'] ?? process.env['http_proxy'] ?? proxy
  https.globalAgent = route('https', https.globalAgent, new HttpsProxyAgent(httpsProxy, { keepAlive: true })) as https.Agent
  http.globalAgent = route('http', http.globalAgent, new HttpProxyAgent(httpProxy, { keepAlive: true }))
}

try {
  install()
} catch (error) {
  process.stderr.write(`egress-guard run: cannot send this Node process through the proxy (${error instanceof Error ? error.message : String(error)}); reinstall egress-guard with its dependencies\n`)
  process.exit(70)
}
