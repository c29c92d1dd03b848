# Sends the requests in $EG_REQUESTS (JSON) with Python's urllib, through whatever proxy the
# environment names, and prints one JSON line per answer. `{NAME}` in a URL, header or body is
# replaced with the value of the variable NAME (a placeholder `run` or `serve` handed out).
import json, os, re, ssl, urllib.request, urllib.error

def fill(text):
    return re.sub(r"\{([A-Z_]+)\}", lambda m: os.environ.get(m.group(1), ""), text)

context = ssl.create_default_context(cafile=os.environ.get("EG_CA") or os.environ.get("SSL_CERT_FILE"))
proxy = os.environ.get("EG_PROXY") or os.environ.get("HTTPS_PROXY")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"https": proxy, "http": proxy}), urllib.request.HTTPSHandler(context=context))
for spec in json.loads(os.environ["EG_REQUESTS"]):
    body = fill(spec["body"]).encode() if "body" in spec else None
    headers = {k: fill(v) for k, v in spec.get("headers", {}).items()}
    request = urllib.request.Request(fill(spec["url"]), data=body, headers=headers, method=spec.get("method", "POST" if body else "GET"))
    try:
        with opener.open(request, timeout=10) as response:
            print(json.dumps({"status": response.status, "body": response.read().decode("latin1"), "headers": dict(response.headers)}))
    except urllib.error.HTTPError as error:
        print(json.dumps({"status": error.code, "body": error.read().decode("latin1"), "headers": dict(error.headers)}))
