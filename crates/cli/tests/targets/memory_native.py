# Allocations of native threads (no Python thread state) next to a Python
# function's: 20 threads made with pthread_create whose start routine is
# malloc itself, each allocating 4 MiB (80 MB), and py_alloc churning 80 MB.
import ctypes
import time

libc = ctypes.CDLL(None)
libc.pthread_create.argtypes = [ctypes.POINTER(ctypes.c_ulong), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
libc.pthread_join.argtypes = [ctypes.c_ulong, ctypes.POINTER(ctypes.c_void_p)]
libc.free.argtypes = [ctypes.c_void_p]
malloc = ctypes.cast(libc.malloc, ctypes.c_void_p).value


def native_alloc():
    for _ in range(20):
        t = ctypes.c_ulong()
        assert libc.pthread_create(ctypes.byref(t), None, malloc, 4 << 20) == 0
        block = ctypes.c_void_p()
        assert libc.pthread_join(t.value, ctypes.byref(block)) == 0
        libc.free(block)
        time.sleep(0.02)


def py_alloc():
    for _ in range(20):
        for _ in range(32):
            block = bytearray(125000)
        time.sleep(0.02)


# Let pyrometer locate the interpreter (and publish the walk recipe) first.
time.sleep(1.0)
native_alloc()
py_alloc()
print("done", flush=True)
