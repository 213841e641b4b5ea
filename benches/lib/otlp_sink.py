"""A local OTLP/HTTP receiver for benches/overhead.sh: accepts POST
/v1/traces (and /v1/metrics, /v1/logs), counts requests and bytes, answers
200 with an empty protobuf body. Prints its counts on SIGTERM/SIGINT.

    python3 otlp_sink.py PORT
"""
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {"requests": 0, "bytes": 0}
lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        with lock:
            counts["requests"] += 1
            counts["bytes"] += n
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)


def stop(*_):
    print(f"otlp-sink: {counts['requests']} requests, {counts['bytes']} bytes", file=sys.stderr, flush=True)
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
server.serve_forever()
