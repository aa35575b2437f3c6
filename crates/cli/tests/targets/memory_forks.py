# A fork bomb of short-lived children and a churn of threads, all
# allocating, for `record --memory`: prints "ok BAD" (BAD: children that
# did not exit 0).
import os
import threading


def work():
    for _ in range(10):
        block = bytearray(200000)


pids = []
for i in range(100):
    pid = os.fork()
    if pid == 0:
        work()
        os._exit(0)
    pids.append(pid)
bad = sum(os.waitpid(p, 0)[1] != 0 for p in pids)
for _ in range(30):
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print("ok", bad, flush=True)
