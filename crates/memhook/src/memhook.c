/*
 * libpyrometer_memhook: preloaded into a command launched by
 * `pyrometer record --memory`. Intercepts the C allocator, samples
 * allocations by bytes (Poisson: a per-thread countdown of exponentially
 * distributed bytes), and publishes each sampled allocation in a ring in a
 * shared-memory file created by pyrometer (path in $PYROMETER_MEMHOOK).
 * The allocating thread then waits, at most PYROMETER_HANDSHAKE_NS, while
 * pyrometer reads its Python stack from outside. Frees of sampled blocks
 * are reported so live bytes per site are known.
 *
 * Safety rules: never allocate here; every wait is bounded; a thread-local
 * guard makes reentrant calls pass straight through; when pyrometer is gone
 * (its heartbeat is stale) sampling stops and nothing waits.
 *
 * The layout below is mirrored in src/lib.rs (keep them in step).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MEMHOOK_MAGIC 0x4b4f4f484d525950ULL /* "PYRMHOOK" */
#define MEMHOOK_VERSION 1
#define RING_SLOTS 4096u
#define LIVE_SLOTS 65536u
#define LIVE_PROBES 32u
#define HANDSHAKE_NS 2000000LL     /* the longest an allocating thread waits */
#define HEARTBEAT_STALE_NS 1000000000LL /* pyrometer gone: stop sampling */

enum { EVENT_ALLOC = 1, EVENT_FREE = 2 };

struct memhook_slot {
    uint64_t seq;   /* index + 1 once published */
    uint32_t ack;   /* low 32 bits of index + 1 once pyrometer is done */
    uint32_t kind;
    int32_t pid;
    int32_t tid;
    uint64_t addr;
    uint64_t size;
    uint64_t time_ns;
    uint64_t pad[2];
};

struct memhook_live {
    uint64_t addr; /* 0 empty, 1 deleted */
    int64_t pid;
};

struct memhook_header {
    uint64_t magic;
    uint32_t version;
    uint32_t handshake; /* 1: wait for pyrometer to read the stack */
    uint64_t mean_bytes;
    uint64_t heartbeat_ns; /* CLOCK_MONOTONIC, written by pyrometer */
    uint64_t write_seq;    /* next index to reserve */
    uint64_t read_seq;     /* next index pyrometer reads */
    uint32_t doorbell;     /* bumped on publish; pyrometer futex-waits on it */
    uint32_t pad0;
    uint64_t dropped_full;   /* events lost: ring full */
    uint64_t missed_handshakes;
    uint64_t untracked_blocks; /* sampled blocks the live table had no room for */
    uint64_t hooked_processes;
    uint64_t pad1[6];
    struct memhook_slot ring[RING_SLOTS];
    struct memhook_live live[LIVE_SLOTS];
};

_Static_assert(sizeof(struct memhook_slot) == 64, "slot layout");
_Static_assert(sizeof(struct memhook_header) == 1310856, "header layout (mirrored in lib.rs)");

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_alloc_fn)(size_t, size_t);
typedef void *(*memalign_fn)(size_t, size_t);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static free_fn real_free;
static posix_memalign_fn real_posix_memalign;
static aligned_alloc_fn real_aligned_alloc;
static memalign_fn real_memalign;

static struct memhook_header *shared;
static int32_t cached_pid;
/* Sampled blocks of this process still in the live table: frees skip the
 * table lookup while it is zero. */
static int64_t live_blocks;
/* pyrometer's heartbeat when a handshake was last missed: no more waiting
 * until it moves. */
static uint64_t missed_at_heartbeat = UINT64_MAX;

/* dlsym may allocate (calloc) before the real functions are known. */
static char bootstrap_heap[65536] __attribute__((aligned(16)));
static size_t bootstrap_used;
static int resolving;

static __thread int in_hook __attribute__((tls_model("initial-exec")));
static __thread int64_t bytes_until_sample __attribute__((tls_model("initial-exec")));
static __thread uint64_t rng_state __attribute__((tls_model("initial-exec")));

static int from_bootstrap(const void *p) {
    return (const char *)p >= bootstrap_heap && (const char *)p < bootstrap_heap + sizeof bootstrap_heap;
}

static void *bootstrap_alloc(size_t size) {
    size_t start = (bootstrap_used + 15) & ~(size_t)15;
    if (size > sizeof bootstrap_heap || start > sizeof bootstrap_heap - size)
        return NULL;
    bootstrap_used = start + size;
    return bootstrap_heap + start; /* static storage is zeroed: fine for calloc */
}

static void resolve(void) {
    if (real_malloc || resolving)
        return;
    resolving = 1;
    real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
    real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
    real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    real_free = (free_fn)dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (posix_memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (aligned_alloc_fn)dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (memalign_fn)dlsym(RTLD_NEXT, "memalign");
    resolving = 0;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int32_t current_tid(void) { return (int32_t)syscall(SYS_gettid); }

static uint64_t next_random(void) {
    if (rng_state == 0)
        rng_state = (now_ns() ^ ((uint64_t)current_tid() << 32)) | 1;
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Bytes until the next sample: exponential with mean `mean_bytes`. */
static int64_t draw_countdown(uint64_t mean) {
    double u = ((double)(next_random() >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
    double bytes = -log(u) * (double)mean;
    if (bytes > 4e18)
        bytes = 4e18;
    return (int64_t)bytes + 1;
}

static void futex_wake(uint32_t *addr) { syscall(SYS_futex, addr, FUTEX_WAKE, 1, NULL, NULL, 0); }

static void futex_wait(uint32_t *addr, uint32_t expected, long ns) {
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, NULL, 0);
}

static int pyrometer_alive(void) {
    uint64_t beat = __atomic_load_n(&shared->heartbeat_ns, __ATOMIC_ACQUIRE);
    uint64_t now = now_ns();
    return beat != 0 && (now < beat || now - beat < (uint64_t)HEARTBEAT_STALE_NS);
}

/* Reserve a ring slot, or fail when pyrometer has fallen a full ring behind. */
static int64_t reserve_slot(void) {
    uint64_t w = __atomic_load_n(&shared->write_seq, __ATOMIC_RELAXED);
    for (int tries = 0; tries < 64; tries++) {
        uint64_t r = __atomic_load_n(&shared->read_seq, __ATOMIC_ACQUIRE);
        if (w - r >= RING_SLOTS) {
            __atomic_fetch_add(&shared->dropped_full, 1, __ATOMIC_RELAXED);
            return -1;
        }
        if (__atomic_compare_exchange_n(&shared->write_seq, &w, w + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return (int64_t)w;
    }
    __atomic_fetch_add(&shared->dropped_full, 1, __ATOMIC_RELAXED);
    return -1;
}

static struct memhook_slot *publish(uint64_t index, uint32_t kind, void *addr, size_t size) {
    struct memhook_slot *slot = &shared->ring[index % RING_SLOTS];
    slot->kind = kind;
    slot->pid = cached_pid;
    slot->tid = current_tid();
    slot->addr = (uint64_t)(uintptr_t)addr;
    slot->size = size;
    slot->time_ns = now_ns();
    __atomic_store_n(&slot->ack, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->seq, index + 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&shared->doorbell, 1, __ATOMIC_RELEASE);
    futex_wake(&shared->doorbell);
    return slot;
}

static uint64_t live_hash(uint64_t addr) {
    addr ^= addr >> 33;
    addr *= 0xff51afd7ed558ccdULL;
    addr ^= addr >> 33;
    return addr;
}

static void live_insert(void *p) {
    uint64_t addr = (uint64_t)(uintptr_t)p;
    uint64_t h = live_hash(addr);
    for (uint32_t i = 0; i < LIVE_PROBES; i++) {
        struct memhook_live *e = &shared->live[(h + i) % LIVE_SLOTS];
        uint64_t cur = __atomic_load_n(&e->addr, __ATOMIC_ACQUIRE);
        if (cur > 1)
            continue;
        /* Claim with a sentinel, then set the owner, then the address. */
        if (__atomic_compare_exchange_n(&e->addr, &cur, 2, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_store_n(&e->pid, cached_pid, __ATOMIC_RELAXED);
            __atomic_store_n(&e->addr, addr, __ATOMIC_RELEASE);
            __atomic_fetch_add(&live_blocks, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    __atomic_fetch_add(&shared->untracked_blocks, 1, __ATOMIC_RELAXED);
}

/* True if `p` was a sampled block of this process (and forgets it). */
static int live_remove(void *p) {
    uint64_t addr = (uint64_t)(uintptr_t)p;
    uint64_t h = live_hash(addr);
    for (uint32_t i = 0; i < LIVE_PROBES; i++) {
        struct memhook_live *e = &shared->live[(h + i) % LIVE_SLOTS];
        uint64_t cur = __atomic_load_n(&e->addr, __ATOMIC_ACQUIRE);
        if (cur == 0)
            return 0;
        if (cur == addr && __atomic_load_n(&e->pid, __ATOMIC_RELAXED) == cached_pid) {
            if (__atomic_compare_exchange_n(&e->addr, &cur, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
                __atomic_fetch_sub(&live_blocks, 1, __ATOMIC_RELAXED);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

static void on_alloc(void *p, size_t size) {
    if (!shared || !p || in_hook)
        return;
    bytes_until_sample -= (int64_t)size;
    if (bytes_until_sample > 0)
        return;
    in_hook = 1;
    uint64_t mean = shared->mean_bytes ? shared->mean_bytes : 524288;
    /* Several samples may fall in one big block: pyrometer weighs by size. */
    while (bytes_until_sample <= 0)
        bytes_until_sample += draw_countdown(mean);
    if (!pyrometer_alive()) {
        in_hook = 0;
        return;
    }
    int64_t index = reserve_slot();
    if (index >= 0) {
        live_insert(p);
        struct memhook_slot *slot = publish((uint64_t)index, EVENT_ALLOC, p, size);
        uint64_t beat = __atomic_load_n(&shared->heartbeat_ns, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&shared->handshake, __ATOMIC_RELAXED) && beat != missed_at_heartbeat) {
            uint32_t want = (uint32_t)((uint64_t)index + 1);
            uint64_t start = now_ns();
            for (;;) {
                uint32_t ack = __atomic_load_n(&slot->ack, __ATOMIC_ACQUIRE);
                if (ack == want)
                    break;
                uint64_t waited = now_ns() - start;
                if (waited >= (uint64_t)HANDSHAKE_NS) {
                    __atomic_fetch_add(&shared->missed_handshakes, 1, __ATOMIC_RELAXED);
                    missed_at_heartbeat = beat;
                    break;
                }
                futex_wait(&slot->ack, ack, (long)((uint64_t)HANDSHAKE_NS - waited));
            }
        }
    }
    in_hook = 0;
}

static void on_free(void *p) {
    if (!shared || !p || in_hook || __atomic_load_n(&live_blocks, __ATOMIC_RELAXED) <= 0)
        return;
    in_hook = 1;
    if (live_remove(p) && pyrometer_alive()) {
        int64_t index = reserve_slot();
        if (index >= 0)
            publish((uint64_t)index, EVENT_FREE, p, 0);
    }
    in_hook = 0;
}

static void after_fork_in_child(void) {
    cached_pid = (int32_t)getpid();
    /* The parent's sampled blocks stay the parent's. */
    live_blocks = 0;
    missed_at_heartbeat = UINT64_MAX;
    if (shared)
        __atomic_fetch_add(&shared->hooked_processes, 1, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void memhook_init(void) {
    resolve();
    cached_pid = (int32_t)getpid();
    const char *path = getenv("PYROMETER_MEMHOOK");
    if (!path || !*path)
        return;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct memhook_header)) {
        close(fd);
        return;
    }
    void *map = mmap(NULL, sizeof(struct memhook_header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return;
    struct memhook_header *h = map;
    if (h->magic != MEMHOOK_MAGIC || h->version != MEMHOOK_VERSION) {
        munmap(map, sizeof(struct memhook_header));
        return;
    }
    bytes_until_sample = draw_countdown(h->mean_bytes ? h->mean_bytes : 524288);
    pthread_atfork(NULL, NULL, after_fork_in_child);
    __atomic_fetch_add(&h->hooked_processes, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&shared, h, __ATOMIC_RELEASE);
}

void *malloc(size_t size) {
    if (!real_malloc) {
        resolve();
        if (!real_malloc)
            return bootstrap_alloc(size);
    }
    void *p = real_malloc(size);
    on_alloc(p, size);
    return p;
}

void *calloc(size_t n, size_t size) {
    if (!real_calloc) {
        resolve();
        if (!real_calloc) {
            if (size && n > SIZE_MAX / size)
                return NULL;
            return bootstrap_alloc(n * size);
        }
    }
    void *p = real_calloc(n, size);
    if (p && (!size || n <= SIZE_MAX / size))
        on_alloc(p, n * size);
    return p;
}

void *realloc(void *old, size_t size) {
    if (from_bootstrap(old)) {
        /* Rare: a bootstrap block grown after dlsym is done. */
        void *p = malloc(size);
        if (p && old) {
            size_t room = (size_t)(bootstrap_heap + sizeof bootstrap_heap - (char *)old);
            memcpy(p, old, size < room ? size : room);
        }
        return p;
    }
    if (!real_realloc) {
        resolve();
        if (!real_realloc)
            return NULL;
    }
    if (old)
        on_free(old);
    void *p = real_realloc(old, size);
    if (p)
        on_alloc(p, size);
    return p;
}

void free(void *p) {
    if (!p || from_bootstrap(p))
        return;
    if (!real_free) {
        resolve();
        if (!real_free)
            return; /* leak rather than crash */
    }
    on_free(p);
    real_free(p);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!real_posix_memalign) {
        resolve();
        if (!real_posix_memalign)
            return ENOMEM;
    }
    int rc = real_posix_memalign(out, alignment, size);
    if (rc == 0)
        on_alloc(*out, size);
    return rc;
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (!real_aligned_alloc) {
        resolve();
        if (!real_aligned_alloc)
            return NULL;
    }
    void *p = real_aligned_alloc(alignment, size);
    on_alloc(p, size);
    return p;
}

void *memalign(size_t alignment, size_t size) {
    if (!real_memalign) {
        resolve();
        if (!real_memalign)
            return NULL;
    }
    void *p = real_memalign(alignment, size);
    on_alloc(p, size);
    return p;
}
