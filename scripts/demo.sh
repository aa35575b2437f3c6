#!/usr/bin/env bash
# The demo: build pyrometer, profile a bundled CPU-bound Python program from
# its first instruction, and leave a flame graph, folded stacks and a
# speedscope profile in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
PYTHON="${PYTHON:-/usr/bin/python3.11}"
OUT=out/demo
mkdir -p "$OUT"
BIN=target/release/pyrometer

echo "== recording examples/cpu_demo.py for 8 s at 250 Hz"
"$BIN" record -r 250 -o "$OUT/flamegraph.svg" -- "$PYTHON" examples/cpu_demo.py 8
"$BIN" record -r 250 -f raw --threads --idle -o "$OUT/stacks.txt" -- "$PYTHON" examples/cpu_demo.py 3
"$BIN" record -r 250 -f speedscope -o "$OUT/profile.speedscope.json" -- "$PYTHON" examples/cpu_demo.py 3

echo "== dump of a running process"
"$PYTHON" examples/cpu_demo.py 5 >/dev/null &
TARGET=$!
trap 'kill $TARGET 2>/dev/null || true' EXIT
sleep 1
"$BIN" dump --pid "$TARGET" | tee "$OUT/dump.txt"

echo
echo "demo outputs in $OUT/:"
ls -l "$OUT"
echo "open $OUT/flamegraph.svg in a browser; load $OUT/profile.speedscope.json at speedscope.app"
