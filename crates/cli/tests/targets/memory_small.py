# Small objects (pymalloc's, ≤ 512 bytes) next to big buffers: 134.4 MB
# (with the loop index's ints, 28 bytes each from 257 on) and 100 MB: the small ones are seen only if the hook wraps Python's allocator
# (pyrometer no longer sets PYTHONMALLOC=malloc).
import time


def small_objects():
    for _ in range(20):
        # 25000 bytes objects of 233 bytes (200 + header: one allocation
        # each) and the 200 KB list: 6.0 MB, dropped at once.
        block = [None] * 25000
        for i in range(25000):
            block[i] = bytes(200)
        del block


def big_buffers():
    for _ in range(20):
        block = bytearray(5 * 1000 * 1000)
        del block


time.sleep(0.5)
for _ in range(5):
    small_objects()
    big_buffers()
print("done", flush=True)
