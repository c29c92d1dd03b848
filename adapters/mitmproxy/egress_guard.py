"""egress-guard for mitmproxy: ask egress-guard's decision service about every CONNECT and every
request, and apply the answer. Python standard library only.

    mitmdump -s egress_guard.py --set connection_strategy=lazy \\
        --set egress_guard_url=http://127.0.0.1:8181 --set egress_guard_token=TOKEN

- CONNECT (`http_connect`): a denied tunnel is answered 403 and never opened. With
  `connection_strategy=lazy`, mitmproxy has not connected upstream yet at that point. A tunnel the
  service answers `Tunnel` for (a passthrough host, or a host without routes in an allow mode) is
  not intercepted: its TLS goes through untouched (`tls_clienthello`), as docs/spec.md §5 asks.
- Requests (`requestheaders`, before any body is read or streamed): credential headers are set
  (replacing the client's), denied requests are answered 403 with the policy's body (a request
  whose body streams, `stream_large_bodies`, is closed instead: mitmproxy 8 sends no response set
  at that point), `Proxy-*` headers never go upstream. The destination the service is asked about
  is the CONNECT authority, and the Host header and SNI are reported, so the service catches a
  mismatch.
- A decision service that cannot be reached, or answers something unreadable, denies: fail closed.
  Calls to it run on a worker thread, so a slow service holds up only the flow that asks, never
  mitmproxy's event loop; they never go through an `http_proxy` of the environment (it would see
  the token and the credentials, or loop back into mitmproxy). The service hands out credentials:
  an `http://` URL must name a loopback address (put TLS in front of a remote one).

Upstream TLS stays verified by mitmproxy (add CAs with `ssl_verify_upstream_trusted_ca`). The
`egress_guard_connect_to` option (curl's HOST:PORT:HOST2:PORT2, comma-separated) dials stand-ins
for tests; the policy and TLS still see HOST.
"""

import asyncio
import ipaddress
import json
import logging
import urllib.parse
import urllib.request

from mitmproxy import ctx, http

FORBIDDEN = "Forbidden by egress-guard proxy policy"
DECISIONS = ("Inject", "Pass", "Deny", "Intercept", "Tunnel")


def _forbidden(body, decision=None):
    # A rate limit (docs/spec.md §14) is 429 with Retry-After; every other refusal 403. Each names
    # its reason in X-Egress-Guard-Reason.
    decision = decision if isinstance(decision, dict) else {}
    reason = decision.get("reason") if isinstance(decision.get("reason"), str) else "internal_error"
    headers = {"content-type": "text/plain; charset=utf-8", "x-egress-guard-reason": reason}
    retry = decision.get("retryAfterSeconds")
    limited = reason == "rate_limited" and isinstance(retry, int) and retry > 0
    if limited:
        headers["retry-after"] = str(retry)
    return http.Response.make(429 if limited else 403, body, headers)


def _refuse(flow, body, decision=None):
    # mitmproxy 8 sends no response set in `requestheaders` while the body streams: close instead.
    if flow.request.stream:
        flow.kill()
    else:
        flow.response = _forbidden(body, decision)


def _is_loopback(host):
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _log_error(message):
    log = getattr(ctx, "log", None)  # mitmproxy 8; later versions log through the logging module
    if log is not None and hasattr(log, "error"):
        log.error(message)
    else:
        logging.getLogger("egress_guard").error(message)


# Direct connections only: the decision service is asked without any proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EgressGuard:
    def __init__(self):
        # client connection id -> (CONNECT host, port, intercepted?)
        self.tunnels = {}
        # Why the service may not be asked (its URL was refused); every flow is then denied.
        self.refusal = None

    def load(self, loader):
        loader.add_option("egress_guard_url", str, "http://127.0.0.1:8181", "URL of egress-guard's decision service")
        loader.add_option("egress_guard_token", str, "", "shared token of the decision service (--token)")
        loader.add_option("egress_guard_connect_to", str, "", "HOST:PORT:HOST2:PORT2[,...]: dial HOST2:PORT2 for HOST:PORT")

    def configure(self, updated):
        # A refused URL is kept, not rolled back (mitmproxy would quietly return to the default
        # URL after an OptionsError): every flow is denied until the URL is fixed.
        if "egress_guard_url" not in updated:
            return
        url = urllib.parse.urlsplit(ctx.options.egress_guard_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            self.refusal = "egress_guard_url: expected the decision service's URL, e.g. http://127.0.0.1:8181"
        elif url.scheme == "http" and not _is_loopback(url.hostname):
            self.refusal = "egress_guard_url: the decision service hands out credentials; reach it on a loopback address, or over https"
        else:
            self.refusal = None
        if self.refusal is not None:
            _log_error(self.refusal + " (every flow is denied until this is fixed)")

    def _ask_now(self, path, payload):
        if self.refusal is not None:
            return None
        headers = {"content-type": "application/json"}
        if ctx.options.egress_guard_token:
            headers["authorization"] = "Bearer " + ctx.options.egress_guard_token
        request = urllib.request.Request(
            ctx.options.egress_guard_url.rstrip("/") + path, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        try:
            with _OPENER.open(request, timeout=5) as response:
                answer = json.load(response)
            decision = answer.get("decision") if isinstance(answer, dict) else None
            if not isinstance(decision, dict) or decision.get("_tag") not in DECISIONS:
                return None
            if decision["_tag"] == "Inject" and not isinstance(decision.get("headers"), dict):
                return None
            return decision
        except Exception:  # anything unexpected is no answer, and no answer denies
            return None

    async def _ask(self, path, payload):
        return await asyncio.to_thread(self._ask_now, path, payload)

    async def http_connect(self, flow):
        try:
            await self._decide_tunnel(flow)
        except Exception:
            flow.response = _forbidden(f"{FORBIDDEN} (internal_error)")

    async def _decide_tunnel(self, flow):
        host, port = flow.request.host, flow.request.port
        decision = await self._ask("/v1/tunnel", {"host": host, "port": port})
        if decision is None or decision["_tag"] not in ("Intercept", "Tunnel"):
            reason = "internal_error" if decision is None else decision.get("reason", "internal_error")
            flow.response = _forbidden(f"{FORBIDDEN} ({reason})", decision)
            return
        self.tunnels[flow.client_conn.id] = (host, port, decision["_tag"] == "Intercept")

    def tls_clienthello(self, data):
        # A tunnel the service did not ask to intercept goes through untouched.
        tunnel = self.tunnels.get(data.context.client.id)
        if tunnel is not None and not tunnel[2]:
            data.ignore_connection = True

    def client_disconnected(self, client):
        self.tunnels.pop(client.id, None)

    def server_connect(self, data):
        rules = [r.strip() for r in ctx.options.egress_guard_connect_to.split(",") if r.strip()]
        host, port = data.server.address
        for rule in rules:
            from_host, from_port, to_host, to_port = rule.rsplit(":", 3)
            if from_host.lower() == str(host).lower() and int(from_port) == port:
                data.server.sni = data.server.sni or host
                data.server.address = (to_host, int(to_port))
                return

    async def requestheaders(self, flow):
        # Decided on the headers, before mitmproxy reads (or streams upstream) any body.
        try:
            await self._decide_request(flow)
        except Exception:
            _refuse(flow, f"{FORBIDDEN} (internal_error)")

    async def _decide_request(self, flow):
        host, port, _ = self.tunnels.get(flow.client_conn.id, (flow.request.host, flow.request.port, True))
        facts = {
            "scheme": flow.request.scheme,
            "host": host,
            "port": port,
            "path": flow.request.path,
            "method": flow.request.method,
        }
        if flow.request.host_header:
            facts["hostHeader"] = flow.request.host_header
        if flow.client_conn.sni:
            facts["sni"] = flow.client_conn.sni
        for name in [k for k in flow.request.headers.keys() if k.lower().startswith("proxy-")]:
            del flow.request.headers[name]
        decision = await self._ask("/v1/decide", facts)
        if decision is None or decision["_tag"] not in ("Inject", "Pass", "Deny"):
            _refuse(flow, f"{FORBIDDEN} (internal_error)")
        elif decision["_tag"] == "Deny":
            _refuse(flow, decision.get("body", f"{FORBIDDEN} ({decision.get('reason', 'internal_error')})"), decision)
        elif decision["_tag"] == "Inject":
            for name, value in decision["headers"].items():
                flow.request.headers[str(name)] = str(value)  # replaces any header of that name, in any case


addons = [EgressGuard()]
