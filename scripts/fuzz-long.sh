#!/usr/bin/env bash
# Generated-input tests with many more cases than CI runs (256 each there).
#   scripts/fuzz-long.sh            # 20,000 cases per property
#   PROPTEST_CASES=200000 scripts/fuzz-long.sh
# A failure prints the shrunk input; proptest also records its seed under
# proptest-regressions/, and that file should be committed so the case is rerun every time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
# The framing inspector, the SSE decoder, the rule language, the guard's scanner and the
# rate-limit arithmetic (unit tests), then tokens, request bodies, configuration and the
# response guard's two paths (tests/properties.rs).
cargo nextest run --no-fail-fast --lib --test properties \
  -E 'binary(properties) | test(/framing::tests|sse::tests|rules::tests|guard::tests|gcra_arithmetic/)'
