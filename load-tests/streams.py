#!/usr/bin/env python3
"""Resident memory of a proxy holding N concurrent open streams.

Opens N streaming chat requests at once (against a mock with a long
inter-token delay, so they stay open), waits until each has received its first
event, reads VmRSS of the given process (and, with --children, of its child
processes, e.g. nginx workers) from /proc, then closes every stream.

Prints one JSON object: {"streams", "opened", "failed", "rss_kb", "rss_idle_kb", "open_seconds"}.
"""
import argparse
import asyncio
import json
import os
import sys
import time

import httpx


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def rss_kb(pid, with_children):
    pids = [pid] + (children(pid) if with_children else [])
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def one_stream(client, url, body, opened, close, results):
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"status {resp.status_code}")
            got_first = False
            aiter = resp.aiter_raw()
            while True:
                read = asyncio.ensure_future(aiter.__anext__())
                waiter = asyncio.ensure_future(close.wait())
                done, _ = await asyncio.wait({read, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    read.cancel()
                    break
                waiter.cancel()
                try:
                    read.result()
                except StopAsyncIteration:
                    break
                if not got_first:
                    got_first = True
                    results["opened"] += 1
                    opened.release()
    except Exception as e:  # noqa: BLE001 - counted and reported
        results["failed"] += 1
        results["last_error"] = repr(e)
        opened.release()


async def main_async(args):
    body = {
        "model": args.model,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }
    url = args.url.rstrip("/") + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=args.streams + 10)
    timeout = httpx.Timeout(args.timeout, connect=args.timeout)
    results = {"opened": 0, "failed": 0}
    rss_idle = rss_kb(args.pid, args.children)
    opened = asyncio.Semaphore(0)
    close = asyncio.Event()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        t0 = time.perf_counter()
        tasks = [
            asyncio.create_task(one_stream(client, url, body, opened, close, results))
            for _ in range(args.streams)
        ]

        async def all_opened():
            for _ in range(args.streams):
                await opened.acquire()

        try:
            await asyncio.wait_for(all_opened(), timeout=args.timeout)
        except asyncio.TimeoutError:
            print("streams: not every stream opened in time", file=sys.stderr)
        open_seconds = time.perf_counter() - t0
        await asyncio.sleep(args.settle)
        rss = rss_kb(args.pid, args.children)
        close.set()
        await asyncio.wait(tasks, timeout=args.timeout)
    out = {
        "streams": args.streams,
        "opened": results["opened"],
        "failed": results["failed"],
        "rss_kb": rss,
        "rss_idle_kb": rss_idle,
        "open_seconds": round(open_seconds, 3),
    }
    if "last_error" in results:
        out["last_error"] = results["last_error"]
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True, help="process whose VmRSS is read")
    ap.add_argument("--children", action="store_true", help="add the RSS of its child processes")
    ap.add_argument("--model", default="bench-slow-model")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait once all are open")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
