#!/usr/bin/env python3
"""A stand-in OTLP/HTTP collector: answers every POST with 200 and an empty body.

usage: otlp_sink.py PORT
Listens on 127.0.0.1:PORT only. `GET /stats` returns {"posts", "bytes"} (the
export requests received). Stops on SIGTERM/SIGINT.
"""
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {"posts": 0, "bytes": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - http.server API
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        with LOCK:
            STATS["posts"] += 1
            STATS["bytes"] += length
        # An empty ExportTraceServiceResponse (protobuf) is an empty body.
        ctype = self.headers.get("content-type") or "application/x-protobuf"
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802 - http.server API
        with LOCK:
            data = json.dumps(STATS).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
