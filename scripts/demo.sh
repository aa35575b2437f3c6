#!/usr/bin/env bash
# The demo: build pyrometer, start the example image service (Flask under
# gunicorn, 4 workers) on localhost, put realistic load on it, attach to the
# gunicorn master with --subprocesses and leave a flame graph, folded stacks
# and an HTML report in out/demo/. Works on a fresh machine (scripts/setup.sh
# installs what is missing; the service's venv is built once and cached).
#
#   scripts/demo.sh          the web-service demo
#   scripts/demo.sh --cpu    the older demo: a bundled CPU-bound program
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
PYTHON="${PYTHON:-/usr/bin/python3.11}"
OUT=out/demo
mkdir -p "$OUT"
BIN="${CARGO_TARGET_DIR:-target}/release/pyrometer"

cpu_demo() {
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
}

case "${1:-}" in
--cpu)
    cpu_demo
    exit 0
    ;;
"") ;;
*)
    echo "usage: $0 [--cpu]" >&2
    exit 2
    ;;
esac

# ---------------------------------------------------------------------------
# The web-service demo.

WORKERS=4
LOAD_SECONDS=15
RECORD_SECONDS=12
RATE=200
MIX="process:blur=3,process:sharpen=1,process:edges=1,process:thumbnail=1,process:noise_reduction=1,health=5"

echo "== the image service's venv (scripts/webenv.sh image-service)"
VENV="$(scripts/webenv.sh image-service)"
echo "$VENV"

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
rm -f "$OUT/gunicorn.pid" "$OUT/flamegraph.svg" "$OUT/stacks.txt" "$OUT/report.html" "$OUT/access.log"
ABS_OUT="$(cd "$OUT" && pwd)"

MASTER=""
LOADGEN=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$LOADGEN" ]; then
        kill "$LOADGEN" 2>/dev/null || true
    fi
    if [ -n "$MASTER" ] && kill -0 "$MASTER" 2>/dev/null; then
        # gunicorn runs in a session (and process group) of its own: stop
        # the master and its workers together, gracefully, then for sure.
        kill -TERM -- "-$MASTER" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 -- "-$MASTER" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$MASTER" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting gunicorn ($WORKERS sync workers) on $URL"
(
    cd examples/image-service
    GUNICORN_BIND="127.0.0.1:$PORT" GUNICORN_WORKERS="$WORKERS" GUNICORN_WORKER_CLASS=sync \
        GUNICORN_ACCESS_LOG="$ABS_OUT/access.log" \
        exec setsid "$VENV/bin/gunicorn" -c gunicorn.conf.py -p "$ABS_OUT/gunicorn.pid" app:app
) >"$OUT/gunicorn.log" 2>&1 &
if ! "$PYTHON" examples/loadgen.py --url "$URL" --wait 30 --duration 0; then
    echo "demo: gunicorn did not come up; its log ($OUT/gunicorn.log):" >&2
    cat "$OUT/gunicorn.log" >&2
    exit 1
fi
MASTER="$(cat "$OUT/gunicorn.pid")"
echo "gunicorn master $MASTER, workers: $(cat /proc/"$MASTER"/task/*/children 2>/dev/null)"

echo "== load: $LOAD_SECONDS s of concurrent requests ($MIX)"
"$PYTHON" examples/loadgen.py --url "$URL" --duration "$LOAD_SECONDS" --concurrency 8 \
    --mix "$MIX" >"$OUT/loadgen.txt" 2>&1 &
LOADGEN=$!
sleep 1.5

echo "== pyrometer record --pid $MASTER --subprocesses -r $RATE -d $RECORD_SECONDS"
# Each output comes from its own recording of the same 12 s (all attached at
# once: pyrometer only reads the processes, so they do not disturb each other).
"$BIN" record --pid "$MASTER" --subprocesses -r "$RATE" -d "$RECORD_SECONDS" --quiet \
    -f raw -o "$OUT/stacks.txt" 2>"$OUT/record-raw.log" &
RAW=$!
HTML=""
if "$BIN" record --help | grep -qE '^ +- html:|\bhtml\b'; then
    "$BIN" record --pid "$MASTER" --subprocesses -r "$RATE" -d "$RECORD_SECONDS" --quiet \
        -f html -o "$OUT/report.html" 2>"$OUT/record-html.log" &
    HTML=$!
fi
status=0
"$BIN" record --pid "$MASTER" --subprocesses -r "$RATE" -d "$RECORD_SECONDS" \
    -o "$OUT/flamegraph.svg" || status=$?
wait "$RAW" || status=$?
if [ -n "$HTML" ]; then
    wait "$HTML" || status=$?
fi
if [ "$status" -ne 0 ]; then
    cat "$OUT"/record-*.log >&2 || true
    if [ "$status" -eq 4 ]; then
        echo "demo: pyrometer may not read gunicorn's memory: run as root, or" \
            "sudo setcap cap_sys_ptrace=ep $BIN (see README, Permissions)" >&2
    fi
    exit "$status"
fi

wait "$LOADGEN" || true
LOADGEN=""
echo
cat "$OUT/loadgen.txt"

echo
echo "== where the workers spent their time (innermost functions, share of samples)"
awk '{ n = $NF; $NF = ""; sub(/ $/, ""); k = split($0, f, ";"); leaf = f[k]
       sub(/:[0-9]+\)$/, ")", leaf); s[leaf] += n; t += n }
     END { for (x in s) printf "%6.1f %%  %s\n", 100 * s[x] / t, x }' "$OUT/stacks.txt" |
    sort -rn | sed -n 1,8p

cleanup
echo
echo "demo outputs in $OUT/:"
ls -l "$OUT"
echo "open $OUT/flamegraph.svg in a browser (one tower per worker process)"
[ -n "$HTML" ] && echo "open $OUT/report.html for the HTML report"
echo "$OUT/stacks.txt has the folded stacks; $OUT/access.log the requests (last field: µs)"
echo "the old CPU-program demo: scripts/demo.sh --cpu"
