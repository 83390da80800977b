#!/usr/bin/env python3
"""Streaming time to first token: N sequential streaming chat requests.

Prints one JSON object: {"n", "errors", "p50_ms", "p90_ms", "p99_ms", "mean_ms"}.
The time is measured from sending the request to receiving the first `data:`
line (the first SSE event), on a kept-alive connection.
"""
import argparse
import json
import statistics
import sys
import time

import httpx


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:18000")
    ap.add_argument("--model", default="bench-model")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    body = {
        "model": args.model,
        "stream": True,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    url = args.url.rstrip("/") + "/v1/chat/completions"
    samples = []
    errors = 0
    with httpx.Client(timeout=args.timeout) as client:
        for i in range(args.warmup + args.n):
            try:
                t0 = time.perf_counter()
                first = None
                with client.stream("POST", url, json=body) as resp:
                    if resp.status_code != 200:
                        raise RuntimeError(f"status {resp.status_code}")
                    for line in resp.iter_lines():
                        if first is None and line.startswith("data:"):
                            first = time.perf_counter() - t0
                        # read the rest so the connection is reused
                if first is None:
                    raise RuntimeError("no data: line")
                if i >= args.warmup:
                    samples.append(first * 1000.0)
            except Exception as e:  # noqa: BLE001 - counted and reported
                if i >= args.warmup:
                    errors += 1
                print(f"ttft: request failed: {e}", file=sys.stderr)
    samples.sort()
    print(
        json.dumps(
            {
                "n": len(samples),
                "errors": errors,
                "p50_ms": percentile(samples, 50),
                "p90_ms": percentile(samples, 90),
                "p99_ms": percentile(samples, 99),
                "mean_ms": statistics.fmean(samples) if samples else None,
            }
        )
    )


if __name__ == "__main__":
    main()
