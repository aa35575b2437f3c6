#!/usr/bin/env bash
# Make the virtualenv of one example web service, once, and print its path.
#
#   scripts/webenv.sh NAME        # NAME: image-service, fastapi-service, django-service
#
# The venv is ~/.cache/pyrometer/venvs/NAME-HASH (HASH: of the example's
# requirements.txt), built with Debian's /usr/bin/python3.11 -m venv and
# `pip install -r requirements.txt`. It is reused as long as requirements.txt
# does not change (a second run takes well under a second); a half-built one
# (interrupted, or pip failed) is removed and built again. Concurrent runs
# for the same example wait for each other (flock). Only the path goes to
# stdout; progress and pip's errors go to stderr, and a failure exits non-zero.
#
# Environment: PYROMETER_CACHE (default ~/.cache/pyrometer),
#              WEBENV_PYTHON (default /usr/bin/python3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NAME="${1:-}"
if [ -z "$NAME" ] || [ "$#" -ne 1 ]; then
    echo "usage: $0 NAME   (one of: $(cd "$ROOT/examples" && ls -d -- */ | tr -d / | tr '\n' ' '))" >&2
    exit 2
fi
REQ="$ROOT/examples/$NAME/requirements.txt"
if [ ! -f "$REQ" ]; then
    echo "webenv: no $REQ" >&2
    exit 2
fi
PYTHON="${WEBENV_PYTHON:-/usr/bin/python3.11}"
if [ ! -x "$PYTHON" ]; then
    echo "webenv: $PYTHON is not there (run scripts/setup.sh)" >&2
    exit 1
fi

CACHE="${PYROMETER_CACHE:-$HOME/.cache/pyrometer}"
HASH="$(sha256sum "$REQ" | cut -c1-12)"
VENV="$CACHE/venvs/$NAME-$HASH"
DONE="$VENV/.pyrometer-webenv-complete"
mkdir -p "$CACHE/venvs"

# Fast path: already built.
if [ -f "$DONE" ]; then
    echo "$VENV"
    exit 0
fi

exec 9>"$CACHE/venvs/.$NAME-$HASH.lock"
flock 9
if [ -f "$DONE" ]; then # built by a concurrent run while we waited
    echo "$VENV"
    exit 0
fi

rm -rf "$VENV"
echo "webenv: building $VENV ($("$PYTHON" --version 2>&1), $REQ)" >&2
t0=$(date +%s)
if ! out="$("$PYTHON" -m venv "$VENV" 2>&1)"; then
    echo "webenv: '$PYTHON -m venv' failed (is python3.11-venv installed? scripts/setup.sh installs it):" >&2
    echo "$out" >&2
    rm -rf "$VENV"
    exit 1
fi
log="$VENV/pip-install.log"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
    --only-binary=:all: -r "$REQ" >"$log" 2>&1; then
    echo "webenv: pip install -r $REQ failed:" >&2
    tail -n 40 "$log" >&2
    rm -rf "$VENV"
    exit 1
fi
touch "$DONE"
echo "webenv: built $VENV in $(($(date +%s) - t0)) s" >&2
echo "$VENV"
