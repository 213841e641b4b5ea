#!/usr/bin/env python3
"""The catalog service of the demo topology: Python's standard library only
(no database drivers), talking to MariaDB and Redis with small clients of
its own, so `zt-trace demo` needs nothing but python3 and the servers
scripts/start-servers.sh starts.

It does on purpose what the dashboard's insights look for:

  GET /catalog/<n>  -> Redis GET zt:demo:config, twice (a repeated cache
                       read: a cache candidate);
                       MariaDB SELECT of the items, then one SELECT per item
                       for its price, one after another (an N+1);
                       when n % 10 == 5, a SELECT from a table that does not
                       exist (MariaDB error 1146) -> 500: the gateway's 502
                       originates here.

The ground-truth id (`rid`) travels in the SQL comments.

Usage: catalog.py PORT MARIADB_PORT REDIS_PORT
"""
import hashlib
import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT, MYSQL_PORT, REDIS_PORT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
USER, PASSWORD, DB = b"zt", b"zt-secret", b"zt_test"
ITEMS = 6


class MysqlError(Exception):
    pass


class Mysql:
    """A minimal MySQL/MariaDB client: mysql_native_password, COM_QUERY,
    text result sets."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")
        hello = self.read()
        rest = hello[1:]
        rest = rest[rest.index(b"\0") + 1:]           # server version
        salt = rest[4:12]                              # after the connection id
        rest = rest[13:]                               # filler
        caps = struct.unpack("<H", rest[:2])[0]
        rest = rest[5:]                                # caps, charset, status
        caps |= struct.unpack("<H", rest[:2])[0] << 16
        salt_len = rest[2]
        rest = rest[13:]                               # upper caps, len, 10 reserved
        salt += rest[:max(13, salt_len - 8) - 1]
        flags = 0x1 | 0x200 | 0x8000 | 0x80000 | 0x8   # long password, 4.1, secure, plugin auth, with db
        resp = struct.pack("<IIB23x", flags, 1 << 24, 33) + USER + b"\0"
        auth = scramble(salt)
        resp += bytes([len(auth)]) + auth + DB + b"\0" + b"mysql_native_password\0"
        self.write(resp, 1)
        reply = self.read()
        if reply[:1] == b"\xfe":                       # auth switch
            plugin, _, data = reply[1:].partition(b"\0")
            self.write(scramble(data.rstrip(b"\0")), self.seq + 1)
            reply = self.read()
        if reply[:1] != b"\x00":
            raise MysqlError("login failed: %r" % reply[9:])

    def read(self):
        head = self.f.read(4)
        if len(head) < 4:
            raise MysqlError("connection closed")
        n = head[0] | head[1] << 8 | head[2] << 16
        self.seq = head[3]
        return self.f.read(n)

    def write(self, payload, seq):
        self.s.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xff]) + payload)

    def query(self, sql):
        """Rows as lists of strings (None for NULL); raises MysqlError."""
        self.write(b"\x03" + sql.encode(), 0)
        first = self.read()
        if first[:1] == b"\xff":
            code = struct.unpack("<H", first[1:3])[0]
            raise MysqlError("%d %s" % (code, first[9:].decode(errors="replace")))
        if first[:1] == b"\x00":
            return []
        ncols = first[0]
        for _ in range(ncols):
            self.read()
        self.read()                                    # EOF after the columns
        rows = []
        while True:
            p = self.read()
            if p[:1] == b"\xfe" and len(p) < 9:
                return rows
            if p[:1] == b"\xff":
                raise MysqlError(p[9:].decode(errors="replace"))
            row, i = [], 0
            while i < len(p):
                if p[i] == 0xfb:
                    row.append(None)
                    i += 1
                    continue
                n = p[i]
                i += 1
                row.append(p[i:i + n].decode())
                i += n
            rows.append(row)


def scramble(salt):
    h1 = hashlib.sha1(PASSWORD).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(salt[:20] + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


class Redis:
    """A minimal RESP client."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        line = self.f.readline()
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        return line.strip()


LOCAL = threading.local()


def conns():
    """This thread's own connections (never shared between requests in
    flight)."""
    if not hasattr(LOCAL, "db"):
        LOCAL.db = Mysql(MYSQL_PORT)
        LOCAL.redis = Redis(REDIS_PORT)
    return LOCAL.db, LOCAL.redis


def setup():
    db = Mysql(MYSQL_PORT)
    db.query("CREATE TABLE IF NOT EXISTS zt_items (id INT PRIMARY KEY, name VARCHAR(40))")
    db.query("CREATE TABLE IF NOT EXISTS zt_prices (item_id INT PRIMARY KEY, cents INT)")
    for i in range(1, ITEMS + 1):
        db.query("INSERT IGNORE INTO zt_items VALUES (%d, 'item-%d')" % (i, i))
        db.query("INSERT IGNORE INTO zt_prices VALUES (%d, %d)" % (i, 100 * i))
    Redis(REDIS_PORT).call("SET", "zt:demo:config", json.dumps({"currency": "EUR"}))


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
        rid = parse_qs(url.query).get("rid", [""])[0]
        parts = url.path.strip("/").split("/")
        if parts[:1] != ["catalog"] or len(parts) != 2:
            return self.reply(404, {"error": "no route", "rid": rid})
        n = int(parts[1])
        db, cache = conns()
        try:
            # The configuration, read twice in one request.
            cache.call("GET", "zt:demo:config")
            items = db.query("SELECT /* rid=%s */ id, name FROM zt_items ORDER BY id" % rid)
            cache.call("GET", "zt:demo:config")
            # One query per item: the N+1.
            prices = [db.query("SELECT /* rid=%s */ cents FROM zt_prices WHERE item_id = %s" % (rid, it[0]))
                      for it in items]
            if n % 10 == 5:
                db.query("SELECT /* rid=%s */ cents FROM zt_discounts WHERE item_id = 1" % rid)
        except MysqlError as e:
            return self.reply(500, {"rid": rid, "error": str(e)})
        except OSError:
            LOCAL.__dict__.clear()
            return self.reply(503, {"rid": rid, "error": "database connection"})
        return self.reply(200, {"rid": rid, "items": len(items), "prices": len(prices)})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    setup()
    srv = Server(("127.0.0.1", PORT), Handler)
    print("ready catalog", PORT, flush=True)
    srv.serve_forever()
