#!/usr/bin/env python3
"""One service of the zt-trace test topology (stdlib only, ThreadingHTTPServer).

Every request carries a ground-truth id in its query (`rid=...`); the service
passes it on, unchanged, to every downstream call it makes. Behaviour is
deterministic from the path so a test can predict each trace exactly:

  gateway  GET /api/users/<n>  -> auth GET /validate, then (if allowed) users GET /users/<n>
  auth     GET /validate       -> 401 when n % 10 == 3 (n passed as query `n`), else 200
  users    GET /users/<n>      -> profile GET /profile/<n>; 502 if profile failed
  profile  GET /profile/<n>    -> 404 when n % 10 == 7, else 200

Usage: service.py NAME PORT [DOWNSTREAM_NAME=PORT ...]
"""
import json
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1]
PORT = int(sys.argv[2])
DOWN = dict(arg.split("=", 1) for arg in sys.argv[3:])


def call(service, path):
    url = "http://127.0.0.1:%s%s" % (DOWN[service], path)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, b""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        rid = q.get("rid", [""])[0]
        parts = url.path.strip("/").split("/")
        if NAME == "gateway" and parts[:2] == ["api", "users"] and len(parts) == 3:
            n = int(parts[2])
            st, _ = call("auth", "/validate?rid=%s&n=%d" % (rid, n))
            if st != 200:
                return self.reply(st, {"error": "unauthorized", "rid": rid})
            st, _ = call("users", "/users/%d?rid=%s" % (n, rid))
            return self.reply(200 if st == 200 else 502, {"rid": rid, "users": st})
        if NAME == "auth" and parts == ["validate"]:
            n = int(q.get("n", ["0"])[0])
            return self.reply(401 if n % 10 == 3 else 200, {"rid": rid})
        if NAME == "users" and parts[:1] == ["users"] and len(parts) == 2:
            n = int(parts[1])
            st, _ = call("profile", "/profile/%d?rid=%s" % (n, rid))
            return self.reply(200 if st == 200 else 502, {"rid": rid, "profile": st})
        if NAME == "profile" and parts[:1] == ["profile"] and len(parts) == 2:
            n = int(parts[1])
            return self.reply(404 if n % 10 == 7 else 200, {"rid": rid})
        self.reply(404, {"error": "no route", "rid": rid})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    srv = Server(("127.0.0.1", PORT), Handler)
    print("ready", NAME, PORT, flush=True)
    srv.serve_forever()
