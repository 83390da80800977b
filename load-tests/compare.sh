#!/usr/bin/env bash
# Throughput and latency of two AirGate binaries on the core path, in one run: the regression
# check of a refactor ("no throughput regression"). Both serve load-tests/airgate-bench.yaml in
# front of the same mock, at the same time, and are measured in alternating rounds (the order
# rotates each round, so drift on a noisy machine hits both alike). Prints medians and the
# ratio new / base of each measure, and the gateway's CPU time per request at the fixed rate
# (from /proc/PID/task/*/schedstat), which is steadier than req/s on a shared machine. Each
# round also sends LT_PAIRS sequential requests to both in turn (`paired.py`) and reports the
# median per-pair difference new - base: the added latency of one request, without queueing.
# Both binaries live through all rounds, and two identical processes can differ by tens of µs
# for as long as they live: run it with the same binary twice for the floor. Binds only
# 127.0.0.1; bounded in time.
#
#   bash load-tests/compare.sh BASE_BINARY NEW_BINARY
#
# Build the base with `git worktree add /tmp/base <commit>` and `cargo build --release --bin
# airgate` there. Needs oha (`cargo install oha --locked`) and target/release/airgate-mock.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BASE_BIN=${1:?usage: compare.sh BASE_BINARY NEW_BINARY}
NEW_BIN=${2:?usage: compare.sh BASE_BINARY NEW_BINARY}
ROUNDS=${LT_ROUNDS:-5}
SECONDS_PER_ROUND=${LT_ROUND_SECONDS:-5}
CONNECTIONS=${LT_CONNECTIONS:-32}
RATE=${LT_RATE:-1000}
PAIRS=${LT_PAIRS:-2000}
MOCK_BIN=${LT_MOCK_BIN:-$ROOT/target/release/airgate-mock}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16}'

WORK=$(mktemp -d /tmp/airgate-compare.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[[ -x $OHA ]] || { log "oha not found: cargo install oha --locked"; exit 1; }
"$MOCK_BIN" --listen 127.0.0.1:18000 --name bench --models bench-model --tokens 16 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
declare -A ADDR=([base]=127.0.0.1:18090 [new]=127.0.0.1:18091)
declare -A ADMIN=([base]=127.0.0.1:19098 [new]=127.0.0.1:19099)
declare -A BIN=([base]=$BASE_BIN [new]=$NEW_BIN)
declare -A PID
for v in base new; do
    "${BIN[$v]}" serve --config "$ROOT/load-tests/airgate-bench.yaml" --listen "${ADDR[$v]}" \
        --admin-listen "${ADMIN[$v]}" --audit-log off >"$WORK/$v.log" 2>&1 &
    PID[$v]=$!
    PIDS+=($!)
done
# cpu_ns PID: nanoseconds its threads have run (the first field of each thread's schedstat):
# CPU per request is steadier than requests per second on a shared machine.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
for v in base new; do
    for _ in $(seq 300); do
        curl -sf -o /dev/null -m 2 -H 'content-type: application/json' -d "$BODY" \
            "http://${ADDR[$v]}/v1/chat/completions" && break
        sleep 0.1
    done
    curl -sf -o /dev/null -m 2 -H 'content-type: application/json' -d "$BODY" \
        "http://${ADDR[$v]}/v1/chat/completions" || { log "$v did not start"; tail "$WORK/$v.log" >&2; exit 1; }
    "$OHA" --no-tui -n 2000 -c 8 -m POST -H 'content-type: application/json' -d "$BODY" \
        "http://${ADDR[$v]}/v1/chat/completions" >/dev/null
done

for ((r = 1; r <= ROUNDS; r++)); do
    order=(base new)
    ((r % 2 == 0)) && order=(new base)
    for v in "${order[@]}"; do
        log "round $r/$ROUNDS: $v, max at $CONNECTIONS connections, then $RATE req/s"
        timeout $((SECONDS_PER_ROUND + 60)) "$OHA" --no-tui --output-format json -w -z "${SECONDS_PER_ROUND}s" \
            -c "$CONNECTIONS" -m POST -H 'content-type: application/json' -d "$BODY" \
            "http://${ADDR[$v]}/v1/chat/completions" >"$WORK/max-$v.r$r.json"
        before=$(cpu_ns "${PID[$v]}")
        timeout $((SECONDS_PER_ROUND + 60)) "$OHA" --no-tui --output-format json -w -q "$RATE" \
            -z "${SECONDS_PER_ROUND}s" -c 16 --latency-correction -m POST \
            -H 'content-type: application/json' -d "$BODY" \
            "http://${ADDR[$v]}/v1/chat/completions" >"$WORK/rate-$v.r$r.json"
        echo $(($(cpu_ns "${PID[$v]}") - before)) >"$WORK/cpu-$v.r$r"
    done
    if ((PAIRS > 0)); then
        log "round $r/$ROUNDS: $PAIRS paired sequential requests, base and new in turn"
        printf '%s' "$BODY" >"$WORK/body.json"
        timeout 300 python3 "$HERE/paired.py" --a "${ADDR[base]}" --b "${ADDR[new]}" \
            --path /v1/chat/completions --body-file "$WORK/body.json" --pairs "$PAIRS" >"$WORK/paired.r$r.json"
    fi
done

python3 - "$WORK" "$ROUNDS" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def read(kind, v, r):
    with open(f"{work}/{kind}-{v}.r{r}.json") as f:
        d = json.load(f)
    codes = d.get("statusCodeDistribution") or {}
    ok = sum(n for c, n in codes.items() if str(c).startswith("2"))
    total = sum(codes.values()) + sum((d.get("errorDistribution") or {}).values())
    assert total and ok == total, f"{kind} {v} round {r}: {codes} {d.get('errorDistribution')}"
    if kind == "rate":
        with open(f"{work}/cpu-{v}.r{r}") as f:
            d["cpu_us_per_request"] = int(f.read()) / 1000 / total
    return d
rows = [
    ("max req/s, 32 connections", "max", lambda d: d["summary"]["requestsPerSec"], 0),
    ("p50 ms at 1,000 req/s", "rate", lambda d: d["latencyPercentiles"]["p50"] * 1000, 3),
    ("p99 ms at 1,000 req/s", "rate", lambda d: d["latencyPercentiles"]["p99"] * 1000, 3),
    ("gateway CPU µs per request at 1,000 req/s", "rate", lambda d: d["cpu_us_per_request"], 1),
]
print(f"| measure ({rounds} rounds, medians) | base | new | new / base | per-round ratios |")
print("| --- | --- | --- | --- | --- |")
for label, kind, get, digits in rows:
    base = [get(read(kind, "base", r)) for r in range(1, rounds + 1)]
    new = [get(read(kind, "new", r)) for r in range(1, rounds + 1)]
    ratios = [n / b for n, b in zip(new, base)]
    print(f"| {label} | {statistics.median(base):.{digits}f} | {statistics.median(new):.{digits}f} "
          f"| {statistics.median(ratios):.3f} | {' '.join(f'{x:.3f}' for x in ratios)} |")
paired = []
for r in range(1, rounds + 1):
    try:
        with open(f"{work}/paired.r{r}.json") as f:
            paired.append(json.load(f))
    except FileNotFoundError:
        pass
if paired:
    diffs = [d["diff_p50_us"] for d in paired]
    print(f"\nPaired sequential requests ({paired[0]['pairs']} per round): p50 base "
          f"{statistics.median(d['a_p50_us'] for d in paired):.1f} µs, new "
          f"{statistics.median(d['b_p50_us'] for d in paired):.1f} µs; median per-pair difference "
          f"new - base: {statistics.median(diffs):.1f} µs [{' / '.join(f'{x:.1f}' for x in diffs)}]")
EOF
