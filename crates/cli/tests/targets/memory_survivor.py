# Allocates steadily while `record --memory` is killed; reports to files
# (argv[1] directory) whether it got to the end without errors.
import os
import sys
import time

out = sys.argv[1]
sys.stderr = open(os.path.join(out, "stderr.txt"), "w")
open(os.path.join(out, "started"), "w").close()
start = time.monotonic()
rounds = 0
try:
    deadline = start + 4.0
    while time.monotonic() < deadline:
        blocks = [bytearray(50000) for _ in range(40)]
        del blocks
        rounds += 1
        if rounds == 50:
            open(os.path.join(out, "allocating"), "w").close()
        time.sleep(0.002)
    # After the kill: the same work must still run at full speed.
    t = time.monotonic()
    for _ in range(200):
        blocks = [bytearray(50000) for _ in range(40)]
    tail = time.monotonic() - t
    with open(os.path.join(out, "result.tmp"), "w") as f:
        f.write("ok %d %.3f\n" % (rounds, tail))
    os.rename(os.path.join(out, "result.tmp"), os.path.join(out, "result"))
except BaseException as e:
    with open(os.path.join(out, "result"), "w") as f:
        f.write("error %r\n" % (e,))
