"""The main thread spins in Python; N threads (argv[1]) block on an event
that is never set (no timeout: they are never woken)."""
import sys
import threading

never = threading.Event()


def idle_worker():
    never.wait()


def spin():
    n = 0
    for i in range(1000):
        n += i
    return n


workers = [threading.Thread(target=idle_worker, name=f"idle-{i}", daemon=True)
           for i in range(int(sys.argv[1]))]
for w in workers:
    w.start()
print("ready", flush=True)
while True:
    spin()
