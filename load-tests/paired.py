#!/usr/bin/env python3
"""Paired latency of two targets that should differ by a few microseconds.

Sends the same POST to target A and to target B, one after the other, PAIRS times, over one
kept-alive connection each, the order inside each pair alternating; each request is timed from
sending it to having read the whole answer. A request is written with one `sendall` (head and
body together, as curl, Go and hyper clients write a small body; `http.client` would write them
apart, and the gateway would then wait for the body's own packet). Drift on a shared machine hits both requests of a pair alike, so the median of
the per-pair differences (B - A) is a much steadier estimate of what B adds than the
difference of two separately measured percentiles.

usage: paired.py --a HOST:PORT --b HOST:PORT --path PATH --body-file FILE [--pairs N] [--warmup N]
Prints JSON: {"pairs", "a_p50_us", "b_p50_us", "diff_p50_us", "diff_p25_us", "diff_p75_us",
"statuses": {"a": {...}, "b": {...}}}.
"""
import argparse
import json
import socket
import statistics
import time


class Connection:
    """One kept-alive HTTP/1.1 connection; answers must carry Content-Length."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request):
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            rest += self.recv()
        self.buffer = rest[length:]
        return status

    def recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data


def once(conn, request):
    started = time.perf_counter_ns()
    status = conn.exchange(request)
    return (time.perf_counter_ns() - started) / 1000.0, status


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True)
    parser.add_argument("--b", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    requests = {
        side: (
            f"POST {args.path} HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        for side, addr in (("a", args.a), ("b", args.b))
    }
    conns = {"a": Connection(args.a), "b": Connection(args.b)}
    for _ in range(args.warmup):
        for side in ("a", "b"):
            once(conns[side], requests[side])
    times = {"a": [], "b": []}
    statuses = {"a": {}, "b": {}}
    diffs = []
    for i in range(args.pairs):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        took = {}
        for side in order:
            micros, status = once(conns[side], requests[side])
            took[side] = micros
            statuses[side][str(status)] = statuses[side].get(str(status), 0) + 1
        times["a"].append(took["a"])
        times["b"].append(took["b"])
        diffs.append(took["b"] - took["a"])
    quartiles = statistics.quantiles(diffs, n=4)
    print(json.dumps({
        "pairs": args.pairs,
        "a_p50_us": statistics.median(times["a"]),
        "b_p50_us": statistics.median(times["b"]),
        "diff_p50_us": statistics.median(diffs),
        "diff_p25_us": quartiles[0],
        "diff_p75_us": quartiles[2],
        "statuses": statuses,
    }))


if __name__ == "__main__":
    main()
