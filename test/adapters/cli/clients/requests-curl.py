# The same requests as requests.py, each made by curl (run as its own process, with the proxy and
# CA bundle the environment gives it), one JSON line per answer.
import json, os, re, subprocess

def fill(text):
    return re.sub(r"\{([A-Z_]+)\}", lambda m: os.environ.get(m.group(1), ""), text)

for spec in json.loads(os.environ["EG_REQUESTS"]):
    args = ["curl", "-sS", "--max-time", "10", "-D", "-", "-o", "-"]
    if os.environ.get("EG_PROXY"):
        args += ["--proxy", os.environ["EG_PROXY"], "--cacert", os.environ["EG_CA"]]
    for name, value in spec.get("headers", {}).items():
        args += ["-H", f"{name}: {fill(value)}"]
    if "body" in spec:
        args += ["--data-binary", fill(spec["body"])]
    if spec.get("compressed"):
        args += ["--compressed"]
    out = subprocess.run(args + [fill(spec["url"])], capture_output=True).stdout.decode("latin1")
    head, _, body = out.partition("\r\n\r\n")
    # The proxy's answer to CONNECT, and any 100 Continue, come before the response itself.
    while body.startswith("HTTP/"):
        head, _, body = body.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    print(json.dumps({"status": status, "body": body, "headers": headers}))
