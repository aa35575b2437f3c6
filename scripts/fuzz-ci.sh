#!/usr/bin/env bash
# The libFuzzer targets of fuzz/ for a bounded time each, as CI runs them
# (scripts/test.sh): FUZZ_SECS seconds per target (default 20; four targets,
# so the fuzzing itself takes under 3 minutes). Fails on a crash, a leak, a
# timeout or an out-of-memory; prints the executions each target ran.
# Needs the nightly toolchain and cargo-fuzz that scripts/setup.sh installs.
# scripts/fuzz.sh runs the same targets for longer.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PYROMETER_CACHE:-$HOME/.cache/pyrometer}"
export PATH="$CACHE/cargo-fuzz/bin:$PATH"
secs="${FUZZ_SECS:-20}"
# Its own build directory (nightly, release, libFuzzer instrumentation),
# kept between runs.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$CACHE/target-fuzz-ci}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz-ci: cargo-fuzz is missing: run scripts/setup.sh" >&2
    exit 1
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz-ci: the nightly toolchain is missing: run scripts/setup.sh" >&2
    exit 1
fi
log=$(mktemp "${TMPDIR:-/tmp}/pyrometer-fuzz-ci.XXXXXX")
trap 'rm -f "$log"' EXIT
cd fuzz
failed=0
summary=()
for target in linetable debug_offsets objects walker; do
    echo "== libFuzzer $target for ${secs}s"
    status=0
    # No sanitizer (-s none): the targets are safe Rust, and overflow
    # checks are on in fuzz/Cargo.toml's release profile.
    cargo +nightly fuzz run -s none -O "$target" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || tail -n 20 "$log"
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "fuzz-ci: $target FAILED (exit $status) after ${runs:-?} executions:" >&2
        grep -E 'ERROR|panicked|SUMMARY|Test unit written|deadly signal' "$log" | head -20 >&2 || true
        summary+=("$target: FAILED after ${runs:-?} executions (crash input in fuzz/artifacts/$target/)")
    else
        summary+=("$target: ${runs:-?} executions in ${secs} s, no crash")
    fi
done
echo "== libFuzzer summary"
printf '  %s\n' "${summary[@]}"
exit "$failed"
