#!/usr/bin/env bash
# Builds AirGate and runs it in front of two demo backends (airgate-mock) with config/demo.
# Public API: http://127.0.0.1:8080/v1   Admin: http://127.0.0.1:9090/metrics
# Stop with Ctrl-C; the mocks are stopped with it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo build --release --bins
# The demo enables the semantic cache: fetch and verify the embedding model once.
bash models/fetch.sh
bash models/fetch-wordnet.sh
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
./target/release/airgate-mock --listen 127.0.0.1:8001 --name local-primary --models demo-model,llama-3-8b-instruct --inter-token-ms 20 &
pids+=($!)
./target/release/airgate-mock --listen 127.0.0.1:8002 --name local-secondary --models demo-model,llama-3-8b-instruct --inter-token-ms 20 &
pids+=($!)
./target/release/airgate validate config/demo
echo "AirGate on http://127.0.0.1:8080/v1 (admin on 127.0.0.1:9090); Ctrl-C to stop"
./target/release/airgate serve --config config/demo --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090 &
pids+=($!)
wait "${pids[-1]}"
