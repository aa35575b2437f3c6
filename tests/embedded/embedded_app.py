# The script run by tests/embedded/launcher.c: a request handler that
# blocks at a known line in a named function (the marker comments are what
# crates/cli/tests/embedded.rs looks for), with a worker thread.
import json
import os
import sys
import threading
import time


def worker_loop():
    while True:
        time.sleep(0.05)  # WORKER_LINE


def handle_request():
    while True:
        time.sleep(0.02)  # HANDLER_LINE


def main():
    threading.Thread(target=worker_loop, name="embedded-worker", daemon=True).start()
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "embedded_by": getattr(sys, "embedded_by", None),
                "executable": sys.executable,
                "version": "%d.%d.%d" % sys.version_info[:3],
            }
        ),
        flush=True,
    )
    handle_request()


main()
