/*
 * libpyrometer_memhook: preloaded into a command launched by
 * `pyrometer record --memory`. Intercepts the C allocator, samples
 * allocations by bytes (Poisson: a per-thread countdown of exponentially
 * distributed bytes), and publishes each sampled allocation in a ring in a
 * shared-memory file created by pyrometer (path in $PYROMETER_MEMHOOK),
 * with the allocating thread's Python stack walked here, in-process: for
 * each frame the code object's address and the byte offset of its current
 * instruction. pyrometer resolves those to functions and lines later, from
 * outside; nothing here waits for it. Frees of sampled blocks are reported
 * so live bytes per site are known. Python's own allocator domains
 * (PyMem_*, PyObject_*: pymalloc) are wrapped too, from the constructor,
 * so objects are seen without PYTHONMALLOC=malloc.
 *
 * The walk follows a "recipe" pyrometer writes into the header once it has
 * located the interpreter of a process (the offsets of its version's
 * layout), keyed by the address of `_PyRuntime`. Until a process's recipe
 * is there, its samples carry no stack (counted).
 *
 * Safety rules: never allocate here (dlsym's own allocations pass through
 * the reentrancy guard); never run Python code: the thread state comes from
 * PyGILState_GetThisThreadState (a TSS read); every loop is bounded (depth,
 * steps) and every pointer is checked for NULL, alignment and the user
 * address range before it is followed. Only the thread itself changes its
 * frame chain, so the chain is stable while it is walked. When pyrometer is
 * gone (its heartbeat is stale) sampling stops.
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
#define MEMHOOK_VERSION 2
#define RING_SLOTS 4096u
#define MAX_FRAMES 128u
#define RECIPES 1024u
#define LIVE_SLOTS 65536u
#define LIVE_PROBES 32u
#define HEARTBEAT_STALE_NS 1000000000LL /* pyrometer gone: stop sampling */
#define SYMBOL_RETRY_NS 1000000000LL     /* look for libpython again after */

enum { EVENT_ALLOC = 1, EVENT_FREE = 2 };

/* What the stack of an allocation event is. */
enum {
    STACK_NO_RECIPE = 0,    /* pyrometer has not described this interpreter yet */
    STACK_WALKED = 1,       /* frames[] holds the walk (maybe empty: no Python running) */
    STACK_NO_TSTATE = 2,    /* a thread without a Python thread state (native) */
    STACK_NOT_PYTHON = 3,   /* the process has no Python interpreter */
    STACK_BAD_POINTER = 4,  /* the walk met an implausible pointer and stopped */
};

enum { ROOT_FRAME_AT_TSTATE = 1, ROOT_VIA_POINTER = 2 };
enum { FRAME_OBJECT = 1, FRAME_INTERPRETER = 2 };

/* How to walk one interpreter's frames (written by pyrometer). */
struct memhook_recipe {
    uint64_t ready;   /* 1 once every other field is written (release) */
    uint64_t runtime; /* address of the process's _PyRuntime */
    uint32_t root_kind;  /* ROOT_*: frame at tstate+root, or at *(tstate+root)+root2 */
    uint32_t frame_kind; /* FRAME_* */
    uint64_t root_offset;
    uint64_t root_offset2;
    uint64_t frame_back;     /* f_back / previous */
    uint64_t frame_code;     /* f_code / f_executable */
    uint64_t frame_position; /* f_lasti (int) / prev_instr, instr_ptr (pointer) */
    uint64_t lasti_unit;     /* FRAME_OBJECT: bytes per f_lasti unit */
    uint64_t code_start;     /* FRAME_INTERPRETER: offsetof(PyCodeObject, co_code_adaptive) */
    uint64_t code_tag_mask;  /* low bits of f_executable used as tags */
    uint64_t owner_offset;   /* FRAME_INTERPRETER: offsetof(_PyInterpreterFrame, owner) */
    uint8_t skip_owners[8];  /* owner values of frames that are not Python code */
    uint32_t skip_owner_count;
    uint32_t max_depth;
    uint64_t pad[2];
};

struct memhook_frame {
    uint64_t code;  /* code object address */
    int64_t offset; /* byte offset of the current instruction in the bytecode; -1: not started */
};

struct memhook_slot {
    uint64_t seq;   /* index + 1 once published */
    uint32_t nframes;
    uint32_t kind;
    int32_t pid;
    int32_t tid;
    uint64_t addr;
    uint64_t size;
    uint64_t time_ns;
    uint32_t stack; /* STACK_* */
    uint32_t truncated;
    uint64_t pad;
};

struct memhook_live {
    uint64_t addr; /* 0 empty, 1 deleted */
    int64_t pid;
};

struct memhook_header {
    uint64_t magic;
    uint32_t version;
    uint32_t pad_flags;
    uint64_t mean_bytes;
    uint64_t heartbeat_ns; /* CLOCK_MONOTONIC, written by pyrometer */
    uint64_t write_seq;    /* next index to reserve */
    uint64_t read_seq;     /* next index pyrometer reads */
    uint32_t doorbell;     /* bumped when the ring fills up; pyrometer futex-waits on it */
    uint32_t reader_waiting;
    uint64_t dropped_full;   /* events lost: ring full */
    uint64_t no_recipe;      /* sampled allocations before their interpreter's recipe */
    uint64_t untracked_blocks; /* sampled blocks the live table had no room for */
    uint64_t hooked_processes;
    uint64_t native_threads; /* sampled allocations of threads without a thread state */
    uint64_t pad1[4];
    struct memhook_recipe recipes[RECIPES];
    struct memhook_slot ring[RING_SLOTS];
    struct memhook_frame frames[RING_SLOTS][MAX_FRAMES];
    struct memhook_live live[LIVE_SLOTS];
};

_Static_assert(sizeof(struct memhook_recipe) == 128, "recipe layout");
_Static_assert(sizeof(struct memhook_slot) == 64, "slot layout");
_Static_assert(sizeof(struct memhook_header) == 128 + 1024 * 128 + 4096 * 64 + 4096 * 128 * 16 + 65536 * 16,
               "header layout (mirrored in lib.rs)");

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*aligned_alloc_fn)(size_t, size_t);
typedef void *(*memalign_fn)(size_t, size_t);
typedef void *(*tstate_fn)(void);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static free_fn real_free;
static posix_memalign_fn real_posix_memalign;
static aligned_alloc_fn real_aligned_alloc;
static memalign_fn real_memalign;

static struct memhook_header *shared;
/* Sampled blocks of this process still in the live table: frees skip the
 * table lookup while it is zero. */
static int64_t live_blocks;

/* The interpreter of this process, looked up once (and again at most once
 * per SYMBOL_RETRY_NS while absent). Inherited by fork children. */
static tstate_fn this_thread_state; /* PyGILState_GetThisThreadState */
static uint64_t runtime_address;    /* &_PyRuntime */
static int symbols_state;           /* 0 not looked up, 1 looking, 2 found, 3 absent */
static uint64_t symbols_absent_at;
static const struct memhook_recipe *recipe; /* this process's, once written */

/* dlsym may allocate (calloc) before the real functions are known. */
static char bootstrap_heap[65536] __attribute__((aligned(16)));
static size_t bootstrap_used;
static int resolving;

static __thread int in_hook __attribute__((tls_model("initial-exec")));
static __thread int64_t bytes_until_sample __attribute__((tls_model("initial-exec")));
static __thread uint64_t rng_state __attribute__((tls_model("initial-exec")));
/* Inside Python's own allocator (wrapped below): the C allocator calls it
 * makes (pymalloc's large blocks, arenas) are not counted twice. */
static __thread int in_python_allocator __attribute__((tls_model("initial-exec")));

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

/* Asked each time, not cached: a vfork child shares the parent's memory
 * (and runs no atfork handler) until it execs. */
static int32_t current_pid(void) { return (int32_t)getpid(); }

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

/* pyrometer polls the ring every few ms; it is woken only when the ring
 * is a quarter full, so a sample costs the target no system call. */
static void publish(uint64_t index, struct memhook_slot *slot, uint32_t kind, void *addr, size_t size) {
    slot->kind = kind;
    slot->pid = current_pid();
    slot->tid = current_tid();
    slot->addr = (uint64_t)(uintptr_t)addr;
    slot->size = size;
    slot->time_ns = now_ns();
    __atomic_store_n(&slot->seq, index + 1, __ATOMIC_RELEASE);
    uint64_t r = __atomic_load_n(&shared->read_seq, __ATOMIC_ACQUIRE);
    if (index + 1 - r >= RING_SLOTS / 4 && __atomic_load_n(&shared->reader_waiting, __ATOMIC_ACQUIRE)) {
        __atomic_fetch_add(&shared->doorbell, 1, __ATOMIC_RELEASE);
        futex_wake(&shared->doorbell);
    }
}

/* A pointer this process could have made: non-NULL, aligned, user space. */
static int plausible(uint64_t p) { return p >= 4096 && p < 0x800000000000ULL && (p & 7) == 0; }

static uint64_t load_u64(uint64_t base, uint64_t offset) { return *(const uint64_t *)(uintptr_t)(base + offset); }

/* Find this process's interpreter (once; not found: again after a while,
 * for programs that load libpython late). Runs inside the hook guard:
 * dlsym's own allocations pass through. */
static int find_interpreter(void) {
    int state = __atomic_load_n(&symbols_state, __ATOMIC_ACQUIRE);
    if (state == 2)
        return 1;
    if (state == 1)
        return 0;
    if (state == 3 && now_ns() - symbols_absent_at < (uint64_t)SYMBOL_RETRY_NS)
        return 0;
    if (!__atomic_compare_exchange_n(&symbols_state, &state, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return 0;
    tstate_fn fn = (tstate_fn)dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
    void *runtime = dlsym(RTLD_DEFAULT, "_PyRuntime");
    if (fn && runtime) {
        this_thread_state = fn;
        runtime_address = (uint64_t)(uintptr_t)runtime;
        __atomic_store_n(&symbols_state, 2, __ATOMIC_RELEASE);
        return 1;
    }
    symbols_absent_at = now_ns();
    __atomic_store_n(&symbols_state, 3, __ATOMIC_RELEASE);
    return 0;
}

/* A recipe is followed only if it is sane: small offsets, known kinds. */
static int recipe_sane(const struct memhook_recipe *r) {
    const uint64_t most = 65536;
    return (r->root_kind == ROOT_FRAME_AT_TSTATE || r->root_kind == ROOT_VIA_POINTER) &&
           (r->frame_kind == FRAME_OBJECT || r->frame_kind == FRAME_INTERPRETER) && r->root_offset < most &&
           r->root_offset2 < most && r->frame_back < most && r->frame_code < most && r->frame_position < most &&
           r->owner_offset < most && r->code_start < most && r->lasti_unit <= 8;
}

static const struct memhook_recipe *find_recipe(void) {
    const struct memhook_recipe *r = __atomic_load_n(&recipe, __ATOMIC_ACQUIRE);
    if (r)
        return r;
    for (uint32_t i = 0; i < RECIPES; i++) {
        const struct memhook_recipe *c = &shared->recipes[i];
        if (__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE) == 1 && c->runtime == runtime_address && recipe_sane(c)) {
            __atomic_store_n(&recipe, c, __ATOMIC_RELEASE);
            return c;
        }
    }
    return NULL;
}

/* Walk this thread's Python frames into `out`: returns the STACK_* kind. */
static uint32_t walk_stack(struct memhook_slot *slot, struct memhook_frame *out) {
    slot->nframes = 0;
    slot->truncated = 0;
    if (!find_interpreter()) {
        if (__atomic_load_n(&symbols_state, __ATOMIC_ACQUIRE) == 3)
            return STACK_NOT_PYTHON;
        __atomic_fetch_add(&shared->no_recipe, 1, __ATOMIC_RELAXED);
        return STACK_NO_RECIPE;
    }
    const struct memhook_recipe *r = find_recipe();
    if (!r) {
        __atomic_fetch_add(&shared->no_recipe, 1, __ATOMIC_RELAXED);
        return STACK_NO_RECIPE;
    }
    uint64_t tstate = (uint64_t)(uintptr_t)this_thread_state();
    if (!tstate) {
        __atomic_fetch_add(&shared->native_threads, 1, __ATOMIC_RELAXED);
        return STACK_NO_TSTATE;
    }
    if (!plausible(tstate))
        return STACK_BAD_POINTER;
    uint64_t frame = load_u64(tstate, r->root_offset);
    if (r->root_kind == ROOT_VIA_POINTER) {
        if (!frame)
            return STACK_WALKED;
        if (!plausible(frame))
            return STACK_BAD_POINTER;
        frame = load_u64(frame, r->root_offset2);
    }
    uint32_t max = r->max_depth < MAX_FRAMES ? r->max_depth : MAX_FRAMES;
    uint32_t n = 0;
    /* Skipped (non-code) frames count against the step bound too. */
    for (uint32_t steps = 0; frame && steps < 2 * MAX_FRAMES + 16; steps++) {
        if (n >= max) {
            slot->truncated = 1;
            break;
        }
        if (!plausible(frame)) {
            slot->nframes = n;
            return STACK_BAD_POINTER;
        }
        uint64_t code = load_u64(frame, r->frame_code) & ~r->code_tag_mask;
        int64_t offset = -1;
        int keep = plausible(code);
        if (r->frame_kind == FRAME_OBJECT) {
            int32_t lasti = *(const int32_t *)(uintptr_t)(frame + r->frame_position);
            if (lasti >= 0)
                offset = (int64_t)lasti * (int64_t)r->lasti_unit;
        } else {
            uint8_t owner = *(const uint8_t *)(uintptr_t)(frame + r->owner_offset);
            for (uint32_t i = 0; i < r->skip_owner_count && i < 8; i++)
                if (owner == r->skip_owners[i])
                    keep = 0;
            uint64_t ip = load_u64(frame, r->frame_position);
            uint64_t start = code + r->code_start;
            if (keep && ip >= start && ip - start < (1ULL << 40))
                offset = (int64_t)(ip - start);
        }
        if (keep) {
            out[n].code = code;
            out[n].offset = offset;
            n++;
        }
        frame = load_u64(frame, r->frame_back);
    }
    slot->nframes = n;
    return STACK_WALKED;
}

static inline uint64_t live_hash(uint64_t addr) {
    addr ^= addr >> 33;
    addr *= 0xff51afd7ed558ccdULL;
    addr ^= addr >> 33;
    return addr;
}

/* A per-process counting filter in front of the shared live table: a
 * free whose counter is zero was not sampled, and skips the table (whose
 * probe sequences lengthen with deleted entries: probing it on every free
 * cost the target ~15 % CPU on allocation-heavy work). Counters saturate
 * at 255 and then stay (a few extra probes, never a missed free). */
#define FILTER_SLOTS 8192u /* 8 KiB: stays in L1 (64 KiB missed it on every free: 2-3 % CPU) */
static uint8_t maybe_live[FILTER_SLOTS];

static inline uint8_t *filter_slot(uint64_t h) { return &maybe_live[(h >> 40) % FILTER_SLOTS]; }

static void filter_add(uint64_t h) {
    uint8_t *c = filter_slot(h);
    uint8_t v = __atomic_load_n(c, __ATOMIC_RELAXED);
    while (v < 255 && !__atomic_compare_exchange_n(c, &v, (uint8_t)(v + 1), 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void filter_remove(uint64_t h) {
    uint8_t *c = filter_slot(h);
    uint8_t v = __atomic_load_n(c, __ATOMIC_RELAXED);
    while (v > 0 && v < 255 && !__atomic_compare_exchange_n(c, &v, (uint8_t)(v - 1), 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void live_insert(void *p) {
    uint64_t addr = (uint64_t)(uintptr_t)p;
    uint64_t h = live_hash(addr);
    /* Counted before the entry exists: a free never misses it. */
    filter_add(h);
    for (uint32_t i = 0; i < LIVE_PROBES; i++) {
        struct memhook_live *e = &shared->live[(h + i) % LIVE_SLOTS];
        uint64_t cur = __atomic_load_n(&e->addr, __ATOMIC_ACQUIRE);
        if (cur > 1)
            continue;
        /* Claim with a sentinel, then set the owner, then the address. */
        if (__atomic_compare_exchange_n(&e->addr, &cur, 2, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_store_n(&e->pid, current_pid(), __ATOMIC_RELAXED);
            __atomic_store_n(&e->addr, addr, __ATOMIC_RELEASE);
            __atomic_fetch_add(&live_blocks, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    filter_remove(h);
    __atomic_fetch_add(&shared->untracked_blocks, 1, __ATOMIC_RELAXED);
}

/* True if `p` was a sampled block of this process (and forgets it). */
static int live_remove(void *p, uint64_t h) {
    uint64_t addr = (uint64_t)(uintptr_t)p;
    for (uint32_t i = 0; i < LIVE_PROBES; i++) {
        struct memhook_live *e = &shared->live[(h + i) % LIVE_SLOTS];
        uint64_t cur = __atomic_load_n(&e->addr, __ATOMIC_ACQUIRE);
        if (cur == 0)
            return 0;
        if (cur == addr && __atomic_load_n(&e->pid, __ATOMIC_RELAXED) == current_pid()) {
            if (__atomic_compare_exchange_n(&e->addr, &cur, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
                __atomic_fetch_sub(&live_blocks, 1, __ATOMIC_RELAXED);
                filter_remove(h);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

/* The slow path of a sampled allocation (kept out of line: the fast path
 * of every malloc is a countdown). */
static __attribute__((noinline)) void sampled_alloc(void *p, size_t size) {
    if (!shared) {
        /* Not hooked (no ring): look again after a while. */
        bytes_until_sample = 1 << 20;
        return;
    }
    if (!p || in_hook)
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
    /* Before reserving: the first lookup (dlsym) may take a while, and a
     * reserved slot must be published promptly. */
    find_interpreter();
    int64_t index = reserve_slot();
    if (index >= 0) {
        live_insert(p);
        uint32_t at = (uint32_t)((uint64_t)index % RING_SLOTS);
        struct memhook_slot *slot = &shared->ring[at];
        slot->stack = walk_stack(slot, shared->frames[at]);
        publish((uint64_t)index, slot, EVENT_ALLOC, p, size);
    }
    in_hook = 0;
}

static inline void on_alloc(void *p, size_t size) {
    if (in_python_allocator)
        return;
    bytes_until_sample -= (int64_t)size;
    if (__builtin_expect(bytes_until_sample > 0, 1))
        return;
    sampled_alloc(p, size);
}

static __attribute__((noinline)) void sampled_free(void *p, uint64_t h) {
    if (!shared || in_hook)
        return;
    in_hook = 1;
    if (live_remove(p, h) && pyrometer_alive()) {
        int64_t index = reserve_slot();
        if (index >= 0) {
            struct memhook_slot *slot = &shared->ring[(uint64_t)index % RING_SLOTS];
            slot->nframes = 0;
            slot->truncated = 0;
            slot->stack = STACK_WALKED;
            publish((uint64_t)index, slot, EVENT_FREE, p, 0);
        }
    }
    in_hook = 0;
}

/* Every free: two loads when the block was not sampled. */
static inline void on_free(void *p) {
    if (__builtin_expect(__atomic_load_n(&live_blocks, __ATOMIC_RELAXED) <= 0, 1) || in_python_allocator)
        return;
    uint64_t h = live_hash((uint64_t)(uintptr_t)p);
    if (__builtin_expect(__atomic_load_n(filter_slot(h), __ATOMIC_RELAXED) == 0, 1))
        return;
    sampled_free(p, h);
}

static void after_fork_in_child(void) {
    /* The parent's sampled blocks stay the parent's. */
    live_blocks = 0;
    memset(maybe_live, 0, sizeof maybe_live);
    /* Forked while another thread looked the symbols up: look again. */
    int looking = 1;
    __atomic_compare_exchange_n(&symbols_state, &looking, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    if (shared)
        __atomic_fetch_add(&shared->hooked_processes, 1, __ATOMIC_RELAXED);
}

/* Python's allocator domains (PyMemAllocatorEx), wrapped so objects are
 * seen without PYTHONMALLOC=malloc (which costs 3.11 ~20 % CPU): pymalloc
 * keeps working, the hook samples what it hands out. */
struct py_allocator {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t n, size_t size);
    void *(*realloc)(void *ctx, void *p, size_t size);
    void (*free)(void *ctx, void *p);
};
typedef void (*py_allocator_fn)(int domain, struct py_allocator *allocator);
enum { PYMEM_DOMAIN_MEM = 1, PYMEM_DOMAIN_OBJ = 2 };
static struct py_allocator python_original[3];

static void *py_malloc(void *ctx, size_t size) {
    struct py_allocator *o = ctx;
    in_python_allocator++;
    void *p = o->malloc(o->ctx, size);
    in_python_allocator--;
    on_alloc(p, size);
    return p;
}

static void *py_calloc(void *ctx, size_t n, size_t size) {
    struct py_allocator *o = ctx;
    in_python_allocator++;
    void *p = o->calloc(o->ctx, n, size);
    in_python_allocator--;
    if (p && (!size || n <= SIZE_MAX / size))
        on_alloc(p, n * size);
    return p;
}

static void *py_realloc(void *ctx, void *old, size_t size) {
    struct py_allocator *o = ctx;
    in_python_allocator++;
    void *p = o->realloc(o->ctx, old, size);
    in_python_allocator--;
    /* As realloc below: a failed one keeps the old block. */
    if (old && p)
        on_free(old);
    if (p)
        on_alloc(p, size);
    return p;
}

static void py_free(void *ctx, void *p) {
    struct py_allocator *o = ctx;
    if (p)
        on_free(p);
    in_python_allocator++;
    o->free(o->ctx, p);
    in_python_allocator--;
}

/* In the constructor, before the interpreter starts (one thread; setting
 * allocators before Py_Initialize is allowed; PYTHONMALLOC, -X dev set
 * their own later, then the C allocator hooks see what they use). */
static void wrap_python_allocators(void) {
    py_allocator_fn get = (py_allocator_fn)dlsym(RTLD_DEFAULT, "PyMem_GetAllocator");
    py_allocator_fn set = (py_allocator_fn)dlsym(RTLD_DEFAULT, "PyMem_SetAllocator");
    void *version = dlsym(RTLD_DEFAULT, "Py_GetVersion");
    if (!get || !set || !version)
        return;
    for (int domain = PYMEM_DOMAIN_MEM; domain <= PYMEM_DOMAIN_OBJ; domain++) {
        get(domain, &python_original[domain]);
        if (!python_original[domain].malloc || !python_original[domain].free)
            continue;
        struct py_allocator wrapper = {&python_original[domain], py_malloc, py_calloc, py_realloc, py_free};
        set(domain, &wrapper);
    }
}

__attribute__((constructor)) static void memhook_init(void) {
    resolve();
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
    wrap_python_allocators();
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
    void *p = real_realloc(old, size);
    /* A failed realloc leaves the old block in place (still live, still
     * tracked); realloc(old, 0) frees it. */
    if (old && (p || size == 0))
        on_free(old);
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
