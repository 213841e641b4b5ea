#!/usr/bin/env python3
"""A server and a client that fail on purpose, for zt-trace's process-death
and teardown tests (stdlib only, raw sockets, HTTP/1.1 on 127.0.0.1).

  fault.py server PORT
      Answers each request by its path:
        /slow       reads the request, then sleeps (a test kills it)
        /late       answers 200 after 1 s
        /truncated  sends a head announcing 1000 body bytes, 10 of them,
                    then closes the connection
        /reset      reads the request, then resets the connection (RST)
        anything else: 200 at once
      Prints "READY" once listening and "GOT <path>" when a request is read.

  fault.py client PORT PATH
      Sends one request, reads until the server closes or resets the
      connection, prints "DONE <what happened>", then keeps the socket open
      (no close) until it is killed: only the kernel's view of the
      connection can end its span.

The service name comes from OTEL_SERVICE_NAME, as for every test service.
"""
import socket
import struct
import sys
import threading
import time


def serve(port):
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(64)
    print("READY", flush=True)
    while True:
        conn, _ = lst.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def handle(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            conn.close()
            return
        data += chunk
    path = data.split(b" ", 2)[1].split(b"?")[0].decode()
    print("GOT", path, flush=True)
    if path == "/slow":
        time.sleep(3600)
    try:
        if path == "/late":
            time.sleep(1)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            # Keep the connection (keep-alive) until the client goes.
            while conn.recv(4096):
                pass
        elif path == "/truncated":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        elif path == "/reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            while conn.recv(4096):
                pass
    except OSError:
        pass  # the client went away
    conn.close()


def client(port, path):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                what = "eof"
                break
            got += chunk
    except ConnectionResetError:
        what = "reset"
    print("DONE", what, len(got), flush=True)
    # Hold the socket open: no close syscall for the tracer to see.
    time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), sys.argv[3])
