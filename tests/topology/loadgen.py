#!/usr/bin/env python3
"""Load generator for the test topology: N requests from C concurrent clients,
each with a unique ground-truth id. Prints one JSON line per request:
{"rid": ..., "n": ..., "status": ...}.

Usage: loadgen.py GATEWAY_PORT REQUESTS CONCURRENCY [RID_PREFIX]
"""
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

PORT, N, C = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
PREFIX = sys.argv[4] if len(sys.argv) > 4 else "r"
# ZT_TLS=1: HTTPS (certificate not verified: test-only).
SCHEME, CTX = "http", None
if os.environ.get("ZT_TLS"):
    SCHEME, CTX = "https", ssl.create_default_context()
    CTX.check_hostname, CTX.verify_mode = False, ssl.CERT_NONE


def one(i):
    rid = "%s%05d" % (PREFIX, i)
    url = "%s://127.0.0.1:%d/api/users/%d?rid=%s" % (SCHEME, PORT, i, rid)
    try:
        with urllib.request.urlopen(url, timeout=30, context=CTX) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return {"rid": rid, "n": i, "status": status}


with ThreadPoolExecutor(max_workers=C) as pool:
    for res in pool.map(one, range(N)):
        print(json.dumps(res), flush=True)
