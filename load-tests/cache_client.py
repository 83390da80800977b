#!/usr/bin/env python3
"""Semantic-cache hit path: latency, throughput and hit share of cached prompts.

Sends non-stream chat completions whose last user message is either the primed
prompt itself (`--set exact`) or one of PARAPHRASES (`--set paraphrase`, sent
round-robin), in two phases:

1. sequential: `--sequential` requests one after another on one kept-alive
   connection (after `--warmup` ones): the end-to-end latency of one hit;
2. concurrent: `--concurrency` workers for `--duration` seconds: requests/s and
   latency under load.

Every answer's `x-airgate-cache` header is counted, so the report proves the
answers were hits. `--prime` sends the primed prompt once first (and retries
until it is a hit, i.e. stored). Prints one JSON object.
"""
import argparse
import asyncio
import json
import statistics
import sys
import time

import httpx

MODEL = "bench-model"
PRIMED = "How can I reset my password?"
# Same question, other words. No numbers, names, negation or opposites: the
# cache's lexical verifier rejects a candidate that differs in those.
PARAPHRASES = [
    "How do I reset my password?",
    "How should I reset my password?",
    "How would I reset my password?",
    "How can I reset my own password?",
    "How do I go about resetting my password?",
    "What are the steps to reset my password?",
    "Can you tell me how to reset my password?",
    "Please explain how I can reset my password.",
    "What is the way to reset my password?",
    "How can I reset my account password?",
    "What do I do to reset my password?",
    "Tell me how I can reset my password.",
    "How could I reset my password?",
    "How can I reset the password of my account?",
    "I need to reset my password, how can I do it?",
    "How do I reset the password for my account?",
    "Explain how I reset my password, please.",
    "how can i reset my password",
    "How can I do a password reset?",
    "What should I do to reset my password?",
]


def body(text):
    return {
        "model": MODEL,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}],
    }


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


class Stats:
    def __init__(self):
        self.lat_ms = []
        self.headers = {}
        self.errors = 0
        self.similarity = []
        self.misses = {}

    def add(self, ms, resp, text):
        if resp.status_code != 200:
            self.errors += 1
            return
        outcome = resp.headers.get("x-airgate-cache", "none")
        self.headers[outcome] = self.headers.get(outcome, 0) + 1
        if outcome != "hit":
            self.misses[text] = self.misses.get(text, 0) + 1
        sim = resp.headers.get("x-airgate-cache-similarity")
        if sim:
            try:
                self.similarity.append(float(sim))
            except ValueError:
                pass
        self.lat_ms.append(ms)

    def summary(self, seconds=None):
        s = sorted(self.lat_ms)
        n = len(s)
        hits = self.headers.get("hit", 0)
        out = {
            "n": n,
            "errors": self.errors,
            "p50_ms": percentile(s, 50),
            "p90_ms": percentile(s, 90),
            "p99_ms": percentile(s, 99),
            "mean_ms": statistics.fmean(s) if s else None,
            "cache_header": self.headers,
            "hit_pct": (100.0 * hits / n) if n else None,
            "similarity_min": min(self.similarity) if self.similarity else None,
            "similarity_mean": statistics.fmean(self.similarity) if self.similarity else None,
        }
        if self.misses:
            out["not_hit_prompts"] = self.misses
        if seconds is not None:
            out["seconds"] = round(seconds, 3)
            out["rps"] = (n / seconds) if seconds > 0 else None
        return out


async def one(client, url, text, stats):
    payload = body(text)
    t0 = time.perf_counter()
    try:
        resp = await client.post(url, json=payload)
        await resp.aread()
    except Exception as e:  # noqa: BLE001 - counted and reported
        stats.errors += 1
        print(f"cache_client: request failed: {e!r}", file=sys.stderr)
        return
    stats.add((time.perf_counter() - t0) * 1000.0, resp, text)


async def main_async(args):
    prompts = [PRIMED] if args.set == "exact" else PARAPHRASES
    url = args.url.rstrip("/") + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=args.concurrency + 2, max_keepalive_connections=args.concurrency + 2)
    out = {"set": args.set, "prompts": len(prompts), "primed": PRIMED}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(args.timeout)) as client:
        if args.prime:
            prime = {"tries": 0, "stored": False}
            for _ in range(50):
                prime["tries"] += 1
                resp = await client.post(url, json=body(PRIMED))
                if resp.status_code == 200 and resp.headers.get("x-airgate-cache") == "hit":
                    prime["stored"] = True
                    break
                await asyncio.sleep(0.1)
            out["prime"] = prime

        warm = Stats()
        for i in range(args.warmup):
            await one(client, url, prompts[i % len(prompts)], warm)

        seq = Stats()
        for i in range(args.sequential):
            await one(client, url, prompts[i % len(prompts)], seq)
        out["sequential"] = seq.summary()

        if args.duration > 0 and args.concurrency > 0:
            conc = Stats()
            counter = {"i": 0}
            deadline = time.perf_counter() + args.duration

            async def worker():
                while time.perf_counter() < deadline:
                    i = counter["i"]
                    counter["i"] += 1
                    await one(client, url, prompts[i % len(prompts)], conc)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            out["concurrent"] = conc.summary(time.perf_counter() - t0)
            out["concurrent"]["connections"] = args.concurrency
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:18087")
    ap.add_argument("--set", choices=("exact", "paraphrase"), default="paraphrase")
    ap.add_argument("--prime", action="store_true", help="send the primed prompt first, until it is a hit")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--sequential", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--print-prompts", action="store_true", help="print the primed prompt and exit")
    args = ap.parse_args()
    if args.print_prompts:
        print(json.dumps(body(PRIMED)))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
