#!/usr/bin/env bash
# Run every check of the project: format, lints, unit tests and the
# integration suites against every CPython on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# Integration suites print the interpreter matrix they ran (--nocapture).
status=0
cargo test --workspace --no-fail-fast -- --nocapture 2>&1 | tee target/test-output.txt || status=$?
echo "== libFuzzer targets"
scripts/fuzz-ci.sh || status=1
grep -E "^test result:" target/test-output.txt | awk '
    { passed += $4; failed += $6 }
    END { printf "\ntotal: %d passed, %d failed\n", passed, failed; exit failed > 0 }'
exit "$status"
