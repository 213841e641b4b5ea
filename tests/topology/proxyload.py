#!/usr/bin/env python3
"""Load for the proxy tests: N requests from C concurrent clients, one TCP
connection per request, each with a unique ground-truth id. Prints one JSON
line per request: {"rid", "n", "status", "port"} (port: the client's local
port, which the proxy sees as its caller's).

Modes (PORT may be HOST:PORT; the host defaults to 127.0.0.1):
  id      GET /api/users/<n>?rid=<rid> with X-Request-Id: <rid>
  noid    GET /api/users/<n>?rid=<rid>, no X-Request-Id
  same    GET /health, every head identical; the id travels only in
          X-Truth, a header the tracer does not keep (ground truth for the
          test, never evidence for the tracer)
  users   GET /users/<n>?rid=<rid> (service.py's users service), no id

Usage: proxyload.py PORT N C PREFIX MODE
"""
import http.client
import json
import sys
from concurrent.futures import ThreadPoolExecutor

HOST, _, PORT = sys.argv[1].rpartition(":")
HOST, PORT = HOST or "127.0.0.1", int(PORT)
N, C = int(sys.argv[2]), int(sys.argv[3])
PREFIX, MODE = sys.argv[4], sys.argv[5]
assert MODE in ("id", "noid", "same", "users"), MODE


def one(i):
    rid = "%s%05d" % (PREFIX, i)
    headers = {"User-Agent": "proxyload/1"}
    if MODE == "same":
        path = "/health"
        headers["X-Truth"] = rid
    elif MODE == "users":
        path = "/users/%d?rid=%s" % (i, rid)
    else:
        path = "/api/users/%d?rid=%s" % (i, rid)
        if MODE == "id":
            headers["X-Request-Id"] = rid
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    conn.connect()
    port = conn.sock.getsockname()[1]
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    conn.close()
    return {"rid": rid, "n": i, "status": r.status, "port": port}


with ThreadPoolExecutor(max_workers=C) as pool:
    for res in pool.map(one, range(N)):
        print(json.dumps(res), flush=True)
