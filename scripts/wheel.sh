#!/usr/bin/env bash
# Build the Python wheel of pyrometer into dist/ and print its path.
#
#   scripts/wheel.sh     # -> dist/pyrometer-VERSION-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
#   pip install dist/pyrometer-*.whl
#
# The wheel holds the release `pyrometer` binary, stripped (pip installs it
# into the environment's bin/, on PATH in an activated venv), the tiny
# `pyrometer` Python package behind `python -m pyrometer`, the man pages
# (share/man/man1), README, CHANGELOG and SECURITY (share/doc/pyrometer)
# and the license files. maturin (from PyPI, pinned in
# scripts/maturin.sh) builds it and checks the binary against the manylinux
# policies (auditwheel).
#
# The binary is linked with zig (the `ziglang` package from PyPI) against
# glibc 2.17, so the wheel is manylinux2014 and runs on any x86_64 Linux
# with glibc >= 2.17 (RHEL/CentOS 7+, Debian 9+, Ubuntu 18.04+).
# WHEEL_LINKER=native links with the machine's own toolchain instead: the
# binary then needs the build machine's glibc (2.34 on Debian 12) and the
# tag says so (manylinux_2_34).
#
# Environment: CARGO_TARGET_DIR (default ./target; builds there are reused),
#              WHEEL_LINKER (zig | native, default zig).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MATURIN="$(scripts/maturin.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LINKER="${WHEEL_LINKER:-zig}"

# The host build writes the man pages (from the CLI definition); cargo
# install, the tests and the benchmarks use the same build.
echo "wheel: cargo build --release" >&2
cargo build --release --locked --quiet -p pyrometer >&2
HOST_BIN="$CARGO_TARGET_DIR/release/pyrometer"
# (python/wheel-data/data/ installs into the environment's prefix; its
# share/doc/pyrometer is tracked, share/man is generated here.)
MAN="$ROOT/python/wheel-data/data/share/man/man1"
rm -rf "$MAN"
mkdir -p "$MAN"
"$HOST_BIN" man --dir "$MAN" >/dev/null

mkdir -p dist
VERSION="$("$HOST_BIN" --version | awk '{print $2}')"
rm -f dist/pyrometer-"$VERSION"-*.whl
case "$LINKER" in
zig)
    # maturin runs `python -m ziglang` with the python on PATH: the venv's.
    # An explicit --target keeps this build apart from the host one.
    echo "wheel: maturin build --zig (glibc 2.17, manylinux2014)" >&2
    PATH="$(dirname "$MATURIN"):$PATH" "$MATURIN" build --release --locked \
        --zig --compatibility manylinux2014 --target x86_64-unknown-linux-gnu \
        --out dist >&2
    ;;
native)
    echo "wheel: maturin build (the machine's glibc)" >&2
    "$MATURIN" build --release --locked --out dist >&2
    ;;
*)
    echo "wheel: WHEEL_LINKER must be zig or native, not '$LINKER'" >&2
    exit 2
    ;;
esac
WHEEL="$(ls -t dist/pyrometer-"$VERSION"-*.whl | head -n1)"
echo "$ROOT/$WHEEL"
