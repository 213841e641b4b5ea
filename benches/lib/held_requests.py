#!/usr/bin/env python3
"""Many connections and requests held open at once, for benches/open_requests.sh.

    held_requests.py server PORT           answer each request when told to
    held_requests.py client PORT N         N connections, N requests

The server reads each request head and answers it only after it gets a
line on stdin ("release"). The client opens N connections to PORT and
prints "connected N"; after a line on stdin it sends one GET on each and
prints "sent N" once every request has reached the server (the server's
count, read back through a status request on a separate connection); after
another line it waits for every response and prints "done N OK".
Addresses spread over 127.0.0.1-127.0.0.4 so that more than one
ephemeral-port range is available.
"""
import asyncio
import resource
import sys


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def server(port):
    release = asyncio.Event()
    seen = 0

    async def handle(reader, writer):
        nonlocal seen
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        if head.startswith(b"GET /status"):
            body = str(seen).encode()
        else:
            seen += 1
            await release.wait()
            body = b"ok\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=65535)
    print("listening", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    release.set()
    if line:
        await loop.run_in_executor(None, sys.stdin.readline)
    srv.close()


async def status(port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await r.read()
    w.close()
    return int(data.split(b"\r\n\r\n", 1)[1])


async def client(port, n):
    loop = asyncio.get_running_loop()
    conns = []
    sem = asyncio.Semaphore(256)

    async def one(i):
        async with sem:
            host = "127.0.0.%d" % (1 + i % 4)
            return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))

    conns = await asyncio.gather(*(one(i) for i in range(n)))
    print("connected %d" % len(conns), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for i, (_, w) in enumerate(conns):
        w.write(b"GET /held/%d?rid=held%d HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: held\r\n\r\n" % (i, i))
    await asyncio.gather(*(w.drain() for _, w in conns))
    while await status(port) < n:
        await asyncio.sleep(0.1)
    print("sent %d" % n, flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    oks = await asyncio.gather(*(r.read() for r, _ in conns))
    ok = sum(1 for b in oks if b.startswith(b"HTTP/1.1 200"))
    for _, w in conns:
        w.close()
    print("done %d %d" % (n, ok), flush=True)


def main():
    raise_nofile()
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "server":
        asyncio.run(server(port))
    else:
        asyncio.run(client(port, int(sys.argv[3])))


if __name__ == "__main__":
    main()
