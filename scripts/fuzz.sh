#!/usr/bin/env bash
# Fuzz pyrometer's readers of untrusted target memory for longer than CI does.
#
#   scripts/fuzz.sh [SECONDS]        # default 600
#
# 1. The seeded, deterministic fuzz test (crates/cpython/tests/fuzz_walker.rs):
#    mutated memory images captured from every CPython on the machine plus
#    synthetic 3.13-3.15 images, for SECONDS; and the property tests
#    (fuzz_decoders.rs) with PROPTEST_CASES=20000.
#    A random seed unless PYROMETER_FUZZ_SEED=N is set; a failure prints the
#    PYROMETER_FUZZ_ONLY=... command that replays it.
# 2. When cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP) are there,
#    the libFuzzer targets of fuzz/ (linetable, debug_offsets, objects, walker),
#    SECONDS/4 each; crashes land in fuzz/artifacts/TARGET/.
#    `cargo install cargo-fuzz` provides the tool; FUZZ_LIBFUZZER=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# A new seed each run explores new mutations (CI always replays the default).
export PYROMETER_FUZZ_SEED="${PYROMETER_FUZZ_SEED:-$(( (RANDOM << 30) | (RANDOM << 15) | RANDOM ))}"
echo "== fuzz_walker for ${secs}s, PYROMETER_FUZZ_SEED=$PYROMETER_FUZZ_SEED"
PYROMETER_FUZZ_SECS="$secs" cargo test -p pyrometer-cpython --test fuzz_walker \
    -- --nocapture walker_survives_mutated_images
echo "== fuzz_decoders, 20000 cases per property"
PROPTEST_CASES=20000 cargo test -p pyrometer-cpython --test fuzz_decoders -- --nocapture

if [ "${FUZZ_LIBFUZZER:-1}" = 0 ]; then
    exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed (cargo install cargo-fuzz): libFuzzer targets skipped"
    exit 0
fi
# libFuzzer needs nightly flags: a nightly toolchain, else stable with
# RUSTC_BOOTSTRAP=1. No sanitizer (-s none): the targets are safe Rust and
# overflow checks are on in fuzz/Cargo.toml's release profile.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
per=$(( secs / 4 > 10 ? secs / 4 : 10 ))
cd fuzz
for target in linetable debug_offsets objects walker; do
    echo "== libFuzzer $target for ${per}s"
    "${fuzz[@]}" run -s none -O "$target" -- -max_total_time="$per" -rss_limit_mb=1024
done
