#!/bin/sh
# Print CPython struct offsets for one interpreter, computed from its headers.
# Usage: print-offsets.sh PYTHON [INCLUDE_DIR]
#   PYTHON       the interpreter (used to find its include dir)
#   INCLUDE_DIR  optional override, e.g. /usr/include/python3.11 for Debian
# Env: CC (default gcc), OFFSETS_OUT (binary path, default a temp file).
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 PYTHON [INCLUDE_DIR]" >&2
    exit 2
fi
python=$1
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ge 2 ]; then
    inc=$2
else
    inc=$("$python" -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
fi
if [ ! -f "$inc/Python.h" ]; then
    echo "no Python.h in $inc (install the -dev headers)" >&2
    exit 1
fi

cc=${CC:-gcc}
out=${OFFSETS_OUT:-}
cleanup=
if [ -z "$out" ]; then
    out=$(mktemp "${TMPDIR:-/tmp}/pyrometer-offsets.XXXXXX")
    cleanup=$out
fi
trap 'if [ -n "$cleanup" ]; then rm -f "$cleanup"; fi' EXIT

# Py_BUILD_CORE unlocks the internal headers (Py_BUILD_CORE_BUILTIN is not
# needed for 3.8-3.13); NDEBUG drops asserts in the inline accessors
# offsets.c calls on a fake object. Nothing links against libpython.
"$cc" -std=gnu11 -O0 -Wall -DNDEBUG -DPy_BUILD_CORE \
    -I"$inc" -I"$inc/internal" \
    -o "$out" "$here/offsets.c"
"$out"
