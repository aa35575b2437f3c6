"""The main thread blocks on an event that is never set; a second thread,
ending_worker, blocks reading the FIFO argv[1] and ends once a byte comes:
nothing else runs when it goes."""
import sys
import threading

never = threading.Event()


def ending_worker():
    with open(sys.argv[1], "rb", buffering=0) as fifo:
        fifo.read(1)


def main_wait():
    never.wait()


threading.Thread(target=ending_worker, name="ending", daemon=True).start()
print("ready", flush=True)
main_wait()
