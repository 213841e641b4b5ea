#!/usr/bin/env python3
"""One service of the zt-trace test topology (stdlib only, ThreadingHTTPServer).

Every request carries a ground-truth id in its query (`rid=...`); the service
passes it on, unchanged, to every downstream call it makes. Behaviour is
deterministic from the path so a test can predict each trace exactly:

  gateway  GET /api/users/<n>  -> auth GET /validate, then (if allowed)
                                  [inventory gRPC GetItem(n)], users GET /users/<n>
                                  and [catalog GET /catalog/<n>];
                                  502 if users or catalog failed, 500 if GetItem
                                  failed (INTERNAL)
  auth     GET /validate       -> 401 when n % 10 == 3 (n passed as query `n`), else 200
  users    GET /users/<n>      -> [postgres SELECT profiles: an unknown column when
                                  n % 10 == 9 -> 500 and nothing else;
                                  redis pipeline SET + INCR: INCR fails when n % 10 == 1]
                                  then profile GET /profile/<n>; 502 if profile failed
  profile  GET /profile/<n>    -> 404 when n % 10 == 7, else 200; with ZT_SLOW_MS set,
                                  answers n % 10 == 5 that many ms late (slow traces)
Downstreams in brackets are used only when given (inventory=PORT,
postgres=PORT, redis=PORT, catalog=PORT: catalog.py, the demo's); the ground-truth id travels in URLs, gRPC
metadata (x-request-id), SQL comments and Redis keys.

With ZT_TLS_CERT and ZT_TLS_KEY set, the service serves HTTPS and calls its
HTTP downstreams over HTTPS (certificates not verified: test-only).

Usage: service.py NAME PORT [DOWNSTREAM_NAME=PORT ...]
"""
import json
import os
import queue
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1]
PORT = int(sys.argv[2])
DOWN = dict(arg.split("=", 1) for arg in sys.argv[3:])
SLOW_MS = int(os.environ.get("ZT_SLOW_MS", "0"))

if "inventory" in DOWN:
    import grpc
    import grpc_gen
    pb, pb_grpc = grpc_gen.load()
    # One long-lived channel shared by every request thread.
    INVENTORY = pb_grpc.InventoryStub(grpc.insecure_channel("127.0.0.1:%s" % DOWN["inventory"]))


def get_item(n, rid):
    """gRPC call; returns the status code name."""
    try:
        INVENTORY.GetItem(pb.ItemRequest(id=n, rid=rid), metadata=(("x-request-id", rid),), timeout=10)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


class Pool:
    """Connections opened at start-up and reused, so requests never pay (or
    trace) connection setup. Each thread returns the connection it took (a
    connection shared by two threads would open another one mid-request)."""

    def __init__(self, make, size):
        self.q = queue.Queue()
        self.taken = threading.local()
        for _ in range(size):
            self.q.put(make())

    def __enter__(self):
        self.taken.c = self.q.get()
        return self.taken.c

    def __exit__(self, *exc):
        self.q.put(self.taken.c)


def pg_connect():
    import psycopg
    return psycopg.connect(host="127.0.0.1", port=int(DOWN["postgres"]), user="zt", password="zt-secret",
                           dbname="zt_test", autocommit=True)


def redis_connect():
    import redis
    c = redis.Redis(host="127.0.0.1", port=int(DOWN["redis"]))
    # Open (HELLO, CLIENT SETINFO) the connection pipelines will reuse.
    c.pipeline(transaction=False).ping().execute()
    return c


def setup_postgres():
    with pg_connect() as c:
        c.execute("CREATE TABLE IF NOT EXISTS profiles (id BIGINT PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO profiles SELECT g, 'user-' || g FROM generate_series(0, 1999) g ON CONFLICT DO NOTHING")


TLS = bool(os.environ.get("ZT_TLS_CERT"))
CLIENT_CTX = None
if TLS:
    CLIENT_CTX = ssl.create_default_context()
    CLIENT_CTX.check_hostname = False
    CLIENT_CTX.verify_mode = ssl.CERT_NONE


def call(service, path):
    url = "%s://127.0.0.1:%s%s" % ("https" if TLS else "http", DOWN[service], path)
    try:
        with urllib.request.urlopen(url, timeout=10, context=CLIENT_CTX) as r:
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
            item = get_item(n, rid) if "inventory" in DOWN else "OK"
            st, _ = call("users", "/users/%d?rid=%s" % (n, rid))
            cat = call("catalog", "/catalog/%d?rid=%s" % (n, rid))[0] if "catalog" in DOWN else 200
            status = 502 if st != 200 or cat != 200 else 500 if item == "INTERNAL" else 200
            return self.reply(status, {"rid": rid, "users": st, "item": item, "catalog": cat})
        if NAME == "auth" and parts == ["validate"]:
            n = int(q.get("n", ["0"])[0])
            return self.reply(401 if n % 10 == 3 else 200, {"rid": rid})
        if NAME == "users" and parts[:1] == ["users"] and len(parts) == 2:
            n = int(parts[1])
            if "postgres" in DOWN:
                col = "nickname" if n % 10 == 9 else "name"
                try:
                    with PG as c:
                        c.execute("SELECT /* rid=%s */ %s FROM profiles WHERE id = %%s" % (rid, col), (n,)).fetchone()
                except Exception:
                    return self.reply(500, {"rid": rid, "error": "database"})
            if "redis" in DOWN:
                with REDIS as r:
                    pipe = r.pipeline(transaction=False)
                    pipe.set("zt:%s:k" % rid, "x" if n % 10 == 1 else "7")
                    pipe.incr("zt:%s:k" % rid)
                    pipe.execute(raise_on_error=False)
            st, _ = call("profile", "/profile/%d?rid=%s" % (n, rid))
            return self.reply(200 if st == 200 else 502, {"rid": rid, "profile": st})
        if NAME == "profile" and parts[:1] == ["profile"] and len(parts) == 2:
            n = int(parts[1])
            if SLOW_MS and n % 10 == 5:
                time.sleep(SLOW_MS / 1000.0)
            return self.reply(404 if n % 10 == 7 else 200, {"rid": rid})
        self.reply(404, {"error": "no route", "rid": rid})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    if "postgres" in DOWN:
        setup_postgres()
        PG = Pool(pg_connect, 20)
    if "redis" in DOWN:
        REDIS = Pool(redis_connect, 20)
    srv = Server(("127.0.0.1", PORT), Handler)
    if TLS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.environ["ZT_TLS_CERT"], os.environ["ZT_TLS_KEY"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready", NAME, PORT, flush=True)
    srv.serve_forever()
