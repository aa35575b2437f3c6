"""One thread, blocked reading the FIFO argv[1] (nothing wakes it by
itself): a byte written to it lets it call second_nap, which blocks on the
FIFO again."""
import sys


def second_nap(fifo):
    fifo.read(1)


def first_nap():
    # Blocks in open until the test opens the FIFO for writing, then reads.
    with open(sys.argv[1], "rb", buffering=0) as fifo:
        fifo.read(1)
        second_nap(fifo)


print("ready", flush=True)
first_nap()
