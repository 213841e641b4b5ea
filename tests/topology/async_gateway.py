#!/usr/bin/env python3
"""An asyncio gateway (stdlib only): one event-loop thread serves every
request concurrently, so the thread says nothing about which request a
downstream call belongs to. Each connection is handled by its own asyncio
task (its own contextvars.Context).

  GET /api/users/<n>?rid=R -> auth GET /validate?rid=R&n=<n>; if 200, then
                              profile GET /profile/<n>?rid=R
                              401 if auth refused, 502 if profile failed, else 200

Usage: async_gateway.py PORT auth=PORT profile=PORT
"""
import asyncio
import json
import sys
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1])
DOWN = dict(arg.split("=", 1) for arg in sys.argv[2:])


async def call(service, path):
    """One HTTP/1.1 GET on a fresh connection; returns the status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(DOWN[service]))
    writer.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(head.split(b" ", 2)[1])


async def handle(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            target = head.split(b" ", 2)[1].decode()
            url = urlsplit(target)
            rid = parse_qs(url.query).get("rid", [""])[0]
            parts = url.path.strip("/").split("/")
            if parts[:2] == ["api", "users"] and len(parts) == 3:
                n = int(parts[2])
                st = await call("auth", "/validate?rid=%s&n=%d" % (rid, n))
                if st != 200:
                    status = st
                else:
                    st = await call("profile", "/profile/%d?rid=%s" % (n, rid))
                    status = 200 if st == 200 else 502
            else:
                status = 404
            body = json.dumps({"rid": rid}).encode()
            close = b"connection: close" in head.lower()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                         % (status, len(body), b"Connection: close\r\n" if close else b"") + body)
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=128)
    print("ready async gateway %d" % PORT, flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
