#!/usr/bin/env bash
# Runs the fuzzing properties of tests/tests/fuzz.rs for a bounded time with
# many more cases than the test suite uses. Usage: scripts/fuzz.sh [SECONDS]
# (default 120). A failing case is printed by proptest (with the input that
# shrank from it): add it to tests/corpus/ and fix the parser.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
cargo build --release -p sbox-events-tests --tests
export PROPTEST_CASES="${PROPTEST_CASES:-1000000}"
status=0
timeout --signal=INT "${seconds}s" \
    cargo test --release -p sbox-events-tests --test fuzz -- --test-threads=2 || status=$?
# 124/130: stopped by the time limit with no failure found so far.
if [ "$status" -eq 124 ] || [ "$status" -eq 130 ]; then
    echo "fuzz: no failure in ${seconds}s"
    exit 0
fi
exit "$status"
