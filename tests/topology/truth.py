#!/usr/bin/env python3
"""A Python backend that answers 200 to every request and logs, per request,
the ground truth the test sent (the X-Truth header, which the tracer does
not keep) with the connection it came on: one JSON line
{"port": peer port, "nth": request number on that connection, "truth": ...}
to LOG (ThreadingHTTPServer, one thread per connection).

Usage: truth.py PORT LOG
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LOG = int(sys.argv[1]), sys.argv[2]
LOCK = threading.Lock()
OUT = open(LOG, "a", buffering=1)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.nth = getattr(self, "nth", -1) + 1
        line = json.dumps({"port": self.client_address[1], "nth": self.nth,
                           "truth": self.headers.get("X-Truth", "")})
        with LOCK:
            OUT.write(line + "\n")
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


if __name__ == "__main__":
    Server(("127.0.0.1", PORT), Handler).serve_forever()
