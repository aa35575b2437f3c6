#!/usr/bin/env bash
# Build the Python wheel of pyrometer into dist/ and print its path.
#
#   scripts/wheel.sh          # -> dist/pyrometer-VERSION-py3-none-manylinux_2_34_x86_64.whl
#   pip install dist/pyrometer-*.whl
#
# The wheel holds the release `pyrometer` binary (installed into the
# environment's bin/, so it is on PATH in an activated venv), the tiny
# `pyrometer` Python package behind `python -m pyrometer`, and the man pages
# (share/man/man1). maturin (from PyPI, pinned in scripts/maturin.sh) builds
# it and checks the binary against the manylinux policies: the tag is the
# oldest glibc the binary's symbols allow (see README, "Installation").
# The release build in CARGO_TARGET_DIR (default ./target) is reused.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MATURIN="$(scripts/maturin.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

echo "wheel: cargo build --release" >&2
cargo build --release --locked --quiet -p pyrometer >&2

# Man pages come from the binary's own CLI definition.
DATA="$ROOT/build/wheel-data"
rm -rf "$DATA"
mkdir -p "$DATA/data/share/man/man1"
"$CARGO_TARGET_DIR/release/pyrometer" man --dir "$DATA/data/share/man/man1" >/dev/null

mkdir -p dist
VERSION="$("$CARGO_TARGET_DIR/release/pyrometer" --version | awk '{print $2}')"
rm -f dist/pyrometer-"$VERSION"-*.whl
echo "wheel: $MATURIN build" >&2
"$MATURIN" build --release --locked --out dist >&2
WHEEL="$(ls -t dist/pyrometer-"$VERSION"-*.whl | head -n1)"
echo "$ROOT/$WHEEL"
