#!/usr/bin/env bash
# Make the virtualenv holding maturin (the wheel builder) and zig (the
# linker maturin uses to target an old glibc), once, and print the path of
# its `maturin` executable.
#
#   scripts/maturin.sh
#
# The venv is ~/.cache/pyrometer/venvs/maturin-VERSION-zig-VERSION, made with
# Debian's /usr/bin/python3.11 -m venv and `pip install maturin ziglang` from
# PyPI (the ziglang package ships the zig toolchain).
# It is reused while the pinned version does not change; a half-built one is
# removed and built again. Concurrent runs wait for each other (flock). Only
# the path goes to stdout; progress and pip's errors go to stderr.
#
# Environment: PYROMETER_CACHE (default ~/.cache/pyrometer),
#              WHEEL_PYTHON (default /usr/bin/python3.11).
set -euo pipefail

MATURIN_VERSION="1.16.0"
ZIG_VERSION="0.15.2"
NAME="maturin-$MATURIN_VERSION-zig-$ZIG_VERSION"
PYTHON="${WHEEL_PYTHON:-/usr/bin/python3.11}"
CACHE="${PYROMETER_CACHE:-$HOME/.cache/pyrometer}"
VENV="$CACHE/venvs/$NAME"
DONE="$VENV/.pyrometer-maturin-complete"

if [ -f "$DONE" ]; then
    echo "$VENV/bin/maturin"
    exit 0
fi
if [ ! -x "$PYTHON" ]; then
    echo "maturin.sh: $PYTHON is not there (run scripts/setup.sh)" >&2
    exit 1
fi
mkdir -p "$CACHE/venvs"
exec 9>"$CACHE/venvs/.$NAME.lock"
flock 9
if [ -f "$DONE" ]; then # built by a concurrent run while we waited
    echo "$VENV/bin/maturin"
    exit 0
fi
rm -rf "$VENV"
echo "maturin.sh: installing maturin $MATURIN_VERSION and zig $ZIG_VERSION into $VENV" >&2
if ! "$PYTHON" -m venv "$VENV" >&2; then
    echo "maturin.sh: '$PYTHON -m venv' failed (is python3.11-venv installed? scripts/setup.sh installs it)" >&2
    rm -rf "$VENV"
    exit 1
fi
if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "maturin==$MATURIN_VERSION" "ziglang==$ZIG_VERSION" >&2; then
    echo "maturin.sh: pip install maturin==$MATURIN_VERSION ziglang==$ZIG_VERSION failed (PyPI must be reachable)" >&2
    rm -rf "$VENV"
    exit 1
fi
touch "$DONE"
echo "$VENV/bin/maturin"
