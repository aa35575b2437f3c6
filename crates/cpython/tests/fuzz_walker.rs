//! Fuzzing the whole reader over mutated memory images: the stack walker
//! (`StackReader`: thread list, GIL, frames, code objects, line tables,
//! `≤3.10` method naming and pthread ids), locals and their rendering,
//! thread names, the WSGI/ASGI request reader, every object reader, and, on
//! 3.13+, the `_Py_DebugOffsets` validator feeding the layout the walk uses.
//!
//! Images are real-shaped:
//!
//! * **captured**: every interpreter on the machine
//!   (`pyrometer_testsupport::require_all`) runs `tests/data/fuzz_target.py`;
//!   a full read of it (stacks, locals, renders, thread names, requests)
//!   goes through a recording memory that snapshots each 4 KiB page the
//!   first time it is touched, so the image holds exactly what that read
//!   saw. The clean image must read back exactly as the live process did.
//! * **synthetic**: 3.13–3.15 images from `pyrometer_cpython::synthetic`.
//!
//! Half the iterations read through `pyrometer_process::PageCache`, as the
//! sampler does. Each iteration applies a few mutations, mostly to words the clean read
//! actually touched (boundary values, addresses of other objects, huge and
//! negative lengths, flipped bits), then reads everything. It must not
//! panic, must stay within a read budget (no endless loop) and must not
//! allocate more than [`ALLOC_LIMIT`] at once. Iterations are seeded and
//! deterministic: a failure prints the image and iteration that reproduce it.
//!
//! `PYROMETER_FUZZ_SECS` (default 20) bounds the fuzzing time,
//! `PYROMETER_FUZZ_SEED` changes the seed; `scripts/fuzz.sh` runs it longer.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyrometer_cpython::discover::{layout_for, RuntimeSource, VersionSource};
use pyrometer_cpython::layout::Version;
use pyrometer_cpython::synthetic::{self, CodeSpec, FrameSpec, ImageSpec, ThreadSpec};
use pyrometer_cpython::{debug_offsets, objects, Interpreter, Layout, StackReader};
use pyrometer_process::{ImageMemory, Memory, MemoryError, PageCache, Process};
use pyrometer_testsupport::{try_spawn_python, Interp};

// ---------------------------------------------------------------------------
// Allocation accounting (per thread, so parallel tests do not interfere).

/// Most memory one iteration may hold at once beyond what it started with.
const ALLOC_LIMIT: usize = 256 << 20;

struct CountingAlloc;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get().saturating_add(size);
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(size)));
}

// SAFETY: forwards to the system allocator; the bookkeeping touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Start measuring: the peak becomes the current level, which is returned.
fn reset_peak() -> usize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(live));
    live
}

fn peak() -> usize {
    PEAK.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Memory wrappers

const PAGE: u64 = 4096;

/// Snapshots each page of `inner` the first time a read touches it, and
/// serves later reads from the snapshot; remembers the exact ranges read.
struct RecordingMemory<M: Memory> {
    inner: M,
    /// Snapshot whole pages (a live process); else only note the ranges
    /// (an image, whose regions need not be whole pages).
    snapshot: bool,
    pages: RefCell<BTreeMap<u64, Vec<u8>>>,
    ranges: RefCell<BTreeSet<(u64, usize)>>,
}

impl<M: Memory> RecordingMemory<M> {
    fn new(inner: M, snapshot: bool) -> Self {
        RecordingMemory {
            inner,
            snapshot,
            pages: RefCell::default(),
            ranges: RefCell::default(),
        }
    }

    fn page(&self, page: u64) -> Result<(), MemoryError> {
        if self.pages.borrow().contains_key(&page) {
            return Ok(());
        }
        let mut bytes = vec![0u8; PAGE as usize];
        self.inner.read(page, &mut bytes)?;
        self.pages.borrow_mut().insert(page, bytes);
        Ok(())
    }

    /// The pages read, contiguous ones merged, as an image.
    fn image(&self) -> ImageMemory {
        let mut regions: Vec<(u64, Vec<u8>)> = Vec::new();
        for (addr, bytes) in self.pages.borrow().iter() {
            match regions.last_mut() {
                Some((start, r)) if *start + r.len() as u64 == *addr => r.extend_from_slice(bytes),
                _ => regions.push((*addr, bytes.clone())),
            }
        }
        let mut img = ImageMemory::new();
        for (addr, bytes) in regions {
            img.insert(addr, bytes);
        }
        img
    }

    /// The 8-aligned words covered by the reads, the fuzzer's preferred targets.
    fn hot_words(&self) -> Vec<u64> {
        let mut words = BTreeSet::new();
        for &(addr, len) in self.ranges.borrow().iter() {
            let mut w = addr & !7;
            let end = addr + len.min(1 << 16) as u64;
            while w < end {
                words.insert(w);
                w += 8;
            }
        }
        words.into_iter().collect()
    }
}

impl<M: Memory> Memory for RecordingMemory<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let unmapped = MemoryError::Unmapped {
            addr,
            len: buf.len(),
        };
        let end = addr.checked_add(buf.len() as u64).ok_or(unmapped.clone())?;
        if buf.is_empty() {
            return Ok(());
        }
        if !self.snapshot {
            self.inner.read(addr, buf)?;
            self.ranges.borrow_mut().insert((addr, buf.len()));
            return Ok(());
        }
        let mut page = addr & !(PAGE - 1);
        while page < end {
            self.page(page)?;
            page += PAGE;
        }
        let pages = self.pages.borrow();
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            let p = &pages[&(a & !(PAGE - 1))];
            *b = p[(a & (PAGE - 1)) as usize];
        }
        self.ranges.borrow_mut().insert((addr, buf.len()));
        Ok(())
    }
}

/// Most reads one iteration may make: far above a real read (a few
/// thousand), far below what an endless loop does.
const READ_BUDGET: u64 = 2_000_000;

/// Counts reads; refuses every read past [`READ_BUDGET`] and remembers it.
struct CountingMemory<'a> {
    inner: &'a ImageMemory,
    reads: Cell<u64>,
}

impl Memory for CountingMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.reads.set(self.reads.get() + 1);
        if self.reads.get() > READ_BUDGET {
            return Err(MemoryError::Unmapped {
                addr,
                len: buf.len(),
            });
        }
        self.inner.read(addr, buf)
    }
}

// ---------------------------------------------------------------------------
// Reading everything, as `dump --locals` and the web attribution do.

/// What a full read saw, for comparing the clean image with the live process.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    threads: Vec<String>,
    names: BTreeMap<u64, String>,
    requests: Vec<String>,
}

fn read_everything<M: Memory>(reader: &mut StackReader<M>, tids: &[i32], main: i32) -> Seen {
    let mut seen = Seen::default();
    reader.learn_pthread_tid_offset(tids, Some(main));
    // Twice: the second pass takes the code-object cache path.
    for pass in 0..2 {
        let stacks = match pass {
            0 => reader.read_all_filtered(|_| true),
            _ => reader.read_all(),
        };
        let Ok(stacks) = stacks else {
            continue;
        };
        if pass == 1 {
            break;
        }
        for st in &stacks {
            let _ = reader.frame_position(st.top_frame);
            let _ = reader.top_frame(st.tstate);
            let mut frames = Vec::new();
            for f in &st.frames {
                let locals: Vec<String> = reader
                    .locals(f)
                    .into_iter()
                    .map(|(n, v)| format!("{n}={}", reader.render(v)))
                    .collect();
                frames.push(format!(
                    "{} ({}:{:?}) [{}]",
                    f.name,
                    f.code.filename,
                    f.line,
                    locals.join(", ")
                ));
            }
            seen.threads.push(format!(
                "{} {:?} gil={} torn={} {}",
                st.thread_id,
                st.native_id,
                st.holds_gil,
                st.torn,
                frames.join(" <- ")
            ));
            if let Some(r) = reader.request_of(st) {
                seen.requests.push(format!(
                    "{:?} {} {} @{}",
                    r.kind, r.method, r.path, r.frame_index
                ));
            }
        }
    }
    seen.names = reader.thread_names().into_iter().collect();
    seen
}

/// Every object reader on `obj`.
fn read_object<M: Memory>(m: &M, l: &Layout, obj: u64) {
    let _ = objects::type_name(m, l, obj);
    let _ = objects::read_str(m, l, obj, 4096);
    let _ = objects::read_str_prefix(m, l, obj, 64);
    let _ = objects::read_bytes(m, l, obj, 4096);
    let _ = objects::read_bytes_prefix(m, l, obj, 64);
    let _ = objects::read_int(m, l, obj);
    let _ = objects::read_int_value(m, l, obj, objects::DEFAULT_MAX_INT_DIGITS);
    let _ = objects::read_float(m, l, obj);
    let _ = objects::read_bool(m, l, obj);
    let _ = objects::is_none(m, l, obj);
    let _ = objects::tuple_items(m, l, obj, 1024);
    let _ = objects::list_items(m, l, obj, 1024);
    let _ = objects::dict_items(m, l, obj, 1024);
    let _ = objects::dict_get_str(m, l, obj, "PATH_INFO");
    let _ = objects::instance_attrs(m, l, obj, 64);
    let _ = objects::get_attr(m, l, obj, "_name");
    let _ = objects::render_value(m, l, obj, objects::RENDER_MAX);
}

// ---------------------------------------------------------------------------
// Images

struct Target {
    label: String,
    image: ImageMemory,
    interp: Interpreter,
    /// Words the clean read touched.
    hot: Vec<u64>,
    /// The hot words that hold a pointer into the image.
    pointers: Vec<u64>,
    /// Bytes of the image.
    size: u64,
    /// Words holding object pointers (locals), for the object readers.
    objects: Vec<u64>,
    tids: Vec<i32>,
    main_tid: i32,
}

fn capture(py: &Interp) -> Result<(Target, Seen), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_target.py");
    let (child, _ready) = try_spawn_python(py, &script, &[], Duration::from_secs(60))?;
    let process = Process::attach(child.pid()).map_err(|e| format!("attach: {e}"))?;
    let interp = pyrometer_cpython::locate(&process).map_err(|e| format!("locate: {e}"))?;
    let tids = process.threads().map_err(|e| format!("threads: {e}"))?;
    let main_tid = child.pid();
    let live = Process::attach(child.pid()).map_err(|e| format!("attach: {e}"))?;
    let rec = RecordingMemory::new(live, true);
    let _ = debug_offsets::read(&rec, interp.runtime);
    let mut reader = StackReader::new(rec, interp.clone());
    let seen = read_everything(&mut reader, &tids, main_tid);
    let objects = local_objects(&mut reader);
    let rec = reader.memory();
    let image = rec.image();
    let hot = rec.hot_words();
    let target = Target {
        label: format!("captured {}", py.label),
        pointers: pointer_words(&image, &hot),
        size: rec.pages.borrow().len() as u64 * PAGE,
        image,
        interp,
        hot,
        objects,
        tids,
        main_tid,
    };
    drop(child);
    Ok((target, seen))
}

/// Object pointers held by the locals of every frame.
fn local_objects<M: Memory>(reader: &mut StackReader<M>) -> Vec<u64> {
    let Ok(stacks) = reader.read_all_filtered(|_| true) else {
        return Vec::new();
    };
    stacks
        .iter()
        .flat_map(|st| st.frames.iter())
        .flat_map(|f| reader.locals(f))
        .map(|(_, v)| v)
        .collect()
}

/// The words of `hot` whose value points into `image`.
fn pointer_words(image: &ImageMemory, hot: &[u64]) -> Vec<u64> {
    hot.iter()
        .copied()
        .filter(|w| {
            image
                .read_u64(*w)
                .is_ok_and(|v| v != 0 && v.is_multiple_of(8) && image.read_u64(v).is_ok())
        })
        .collect()
}

fn synthetic_target(minor: u8) -> Target {
    let version = Version {
        major: 3,
        minor,
        micro: 0,
        level: 0xF,
    };
    let mut method = CodeSpec::new(
        "Worker.run",
        "/srv/worker.py",
        40,
        &[(1, 0), (4, 1), (6, 2)],
    );
    method.argcount = 1;
    method.varnames = vec!["self".into(), "environ".into()];
    let codes = vec![
        method,
        CodeSpec::new("<module>", "/srv/main.py", 1, &[(2, 0), (10, 5), (8, 300)]),
        CodeSpec::new("gen_ü_λ", "/srv/gen.py", 9, &[(3, 0), (2, -3)]),
    ];
    let entry = FrameSpec::Shim {
        owner: synthetic::OWNED_BY_INTERPRETER_OR_CSTACK,
        code: None,
    };
    let mut spec = ImageSpec::new(version);
    spec.codes = codes;
    spec.threads = vec![
        ThreadSpec {
            thread_id: 0x7f00_0000_1000,
            native_id: 101,
            frames: vec![
                FrameSpec::Python {
                    code: 2,
                    unit: 3,
                    owner: synthetic::OWNED_BY_GENERATOR,
                    tag: 0,
                },
                FrameSpec::py(0, 6),
                entry,
                FrameSpec::py(1, 12),
                entry,
            ],
        },
        ThreadSpec {
            thread_id: 0x7f00_0000_2000,
            native_id: 100,
            frames: vec![FrameSpec::py(1, 3), entry],
        },
    ];
    spec.gil_holder = Some(1);
    spec.gil_waiters = vec![0];
    let image = synthetic::build(&spec);
    let interp = interpreter_from_table(&image.memory, image.runtime, Some(image.code_type))
        .expect("the synthetic table is valid");
    let rec = RecordingMemory::new(&image.memory, false);
    let _ = debug_offsets::read(&rec, image.runtime);
    let mut reader = StackReader::new(&rec, interp.clone());
    let seen = read_everything(&mut reader, &[100, 101], 100);
    assert_eq!(
        seen.threads.len(),
        2,
        "synthetic 3.{minor}: both threads read: {seen:?}"
    );
    let hot = rec.hot_words();
    Target {
        label: format!("synthetic 3.{minor}"),
        pointers: pointer_words(&image.memory, &hot),
        size: 0,
        hot,
        objects: image.codes.clone(),
        image: image.memory.clone(),
        interp,
        tids: vec![100, 101],
        main_tid: 100,
    }
}

/// The production path for 3.13+: the table → a layout → an interpreter.
fn interpreter_from_table<M: Memory>(
    mem: &M,
    runtime: u64,
    code_type: Option<u64>,
) -> Option<Interpreter> {
    let debug = debug_offsets::read(mem, runtime).ok()??;
    let version = Version::from_hex(debug.version);
    let layout = layout_for(version, Some(&debug)).ok()?;
    Some(Interpreter {
        version,
        layout,
        runtime,
        binary: PathBuf::from("<image>"),
        code_type,
        runtime_source: RuntimeSource::Symbol,
        version_source: VersionSource::DebugOffsets,
        heap: pyrometer_cpython::heap::HeapLocation::Unavailable("synthetic image".into()),
    })
}

// ---------------------------------------------------------------------------
// Mutation

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        v.get(self.below(v.len() as u64) as usize)
    }
}

/// One mutation: write `bytes` at `addr`.
#[derive(Debug, Clone)]
struct Mutation {
    addr: u64,
    bytes: Vec<u8>,
}

fn mutations(t: &Target, rng: &mut Rng) -> Vec<Mutation> {
    let n = match rng.below(8) {
        0..=3 => 1,
        4 | 5 => 2,
        6 => 4,
        _ => 1 + rng.below(16),
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let addr = match rng.below(20) {
            0..=8 => rng.pick(&t.pointers),
            9..=17 => rng.pick(&t.hot),
            _ => None,
        };
        let addr = match addr {
            Some(a) => *a,
            None => match rng.pick(&t.objects) {
                Some(o) => o + 8 * rng.below(8),
                None => *rng.pick(&t.hot).unwrap_or(&0),
            },
        };
        let mut old = [0u8; 8];
        if t.image.read(addr, &mut old).is_err() {
            continue;
        }
        let old = u64::from_le_bytes(old);
        let other = *rng.pick(&t.hot).unwrap_or(&0);
        let bytes = match rng.below(24) {
            // Garbage "pointers" near the top of the address space.
            20 => (u64::MAX - 8 * rng.below(4)).to_le_bytes().to_vec(),
            21 => 0xffff_8000_0000_0000u64.to_le_bytes().to_vec(),
            22 => 0x8000_0000_0000u64.to_le_bytes().to_vec(),
            0 => 0u64.to_le_bytes().to_vec(),
            1 => 1u64.to_le_bytes().to_vec(),
            2 => u64::MAX.to_le_bytes().to_vec(),
            3 => 0x7fff_ffff_ffffu64.to_le_bytes().to_vec(),
            4 => 0x7fff_ffff_fff8u64.to_le_bytes().to_vec(),
            5 => (1u64 << 63).to_le_bytes().to_vec(),
            6 => (i64::MAX as u64).to_le_bytes().to_vec(),
            7 => other.to_le_bytes().to_vec(),
            8 => (other & !7)
                .wrapping_sub(8 * rng.below(4))
                .to_le_bytes()
                .to_vec(),
            9 => old
                .wrapping_add(8 * (1 + rng.below(8)))
                .to_le_bytes()
                .to_vec(),
            10 => old
                .wrapping_sub(8 * (1 + rng.below(8)))
                .to_le_bytes()
                .to_vec(),
            11 => (old ^ (1 << rng.below(64))).to_le_bytes().to_vec(),
            12 => (1u64 << (20 + rng.below(44))).to_le_bytes().to_vec(),
            13 => (-(1 + rng.below(1 << 20) as i64)).to_le_bytes().to_vec(),
            // The low half only: 32-bit fields (lasti, lengths, flags).
            14 => (u32::MAX - rng.below(2) as u32 * (1 << 31))
                .to_le_bytes()
                .to_vec(),
            15 => (rng.below(64) as u32).to_le_bytes().to_vec(),
            16 => vec![[0u8, 0xff, 0x80, 0x7f][rng.below(4) as usize]],
            17 => vec![rng.next() as u8],
            18 => rng.next().to_le_bytes().to_vec(),
            _ => rng.below(4096).to_le_bytes().to_vec(),
        };
        let addr = if bytes.len() < 8 {
            addr + rng.below(8 - bytes.len() as u64 + 1)
        } else {
            addr
        };
        // Stay inside the region holding `addr`.
        let mut probe = vec![0u8; bytes.len()];
        if t.image.read(addr, &mut probe).is_ok() {
            out.push(Mutation { addr, bytes });
        }
    }
    out
}

/// What went wrong in one iteration.
#[derive(Debug, Clone)]
struct Failure {
    target: String,
    iteration: u64,
    what: String,
    mutations: Vec<Mutation>,
}

thread_local! {
    /// Set while an iteration runs, whose panics the hook records.
    static IN_ITERATION: Cell<bool> = const { Cell::new(false) };
}

/// The last panic's message and location, recorded by the hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn one_iteration(t: &Target, seed: u64, iteration: u64) -> Result<u64, Failure> {
    let mut rng = Rng(seed ^ iteration.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let muts = mutations(t, &mut rng);
    let mut image = t.image.clone();
    for m in &muts {
        image.write(m.addr, &m.bytes);
    }
    let fail = |what: String| Failure {
        target: t.label.clone(),
        iteration,
        what,
        mutations: muts.clone(),
    };
    let mem = CountingMemory {
        inner: &image,
        reads: Cell::new(0),
    };
    let rederive = t.interp.version.minor >= 13 && rng.below(4) == 0;
    let through_cache = rng.below(2) == 0;
    let objs: Vec<u64> = (0..4)
        .filter_map(|_| match rng.below(3) {
            0 => rng.pick(&t.hot).and_then(|a| image.read_u64(*a).ok()),
            _ => rng.pick(&t.objects).copied(),
        })
        .collect();
    let base = reset_peak();
    IN_ITERATION.with(|f| f.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let interp = if rederive {
            interpreter_from_table(&mem, t.interp.runtime, t.interp.code_type)
        } else {
            Some(t.interp.clone())
        };
        if let Some(interp) = interp {
            let layout = interp.layout.clone();
            if through_cache {
                // The sampler's stack: the reader over the page cache.
                let mut reader = StackReader::new(PageCache::new(&mem), interp);
                read_everything(&mut reader, &t.tids, t.main_tid);
                for o in &objs {
                    read_object(reader.memory(), &layout, *o);
                }
            } else {
                let mut reader = StackReader::new(&mem, interp);
                read_everything(&mut reader, &t.tids, t.main_tid);
                for o in &objs {
                    read_object(&mem, &layout, *o);
                }
            }
        }
    }));
    IN_ITERATION.with(|f| f.set(false));
    let used = peak().saturating_sub(base);
    if result.is_err() {
        let msg = LAST_PANIC
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .unwrap_or_else(|| "panic".into());
        return Err(fail(format!("panicked: {msg}")));
    }
    if mem.reads.get() > READ_BUDGET {
        return Err(fail(format!(
            "more than {READ_BUDGET} reads (an unbounded loop?)"
        )));
    }
    if used > ALLOC_LIMIT {
        return Err(fail(format!("allocated {used} bytes at once")));
    }
    Ok(mem.reads.get())
}

fn fuzz_secs() -> f64 {
    std::env::var("PYROMETER_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0)
}

fn fuzz_seed() -> u64 {
    std::env::var("PYROMETER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x05ee_d0ff_0220)
}

/// Only `PYROMETER_FUZZ_ONLY=LABEL,ITERATION` is replayed (a reproducer).
fn only() -> Option<(String, u64)> {
    let v = std::env::var("PYROMETER_FUZZ_ONLY").ok()?;
    let (label, it) = v.rsplit_once(',')?;
    Some((label.to_string(), it.parse().ok()?))
}

#[test]
fn walker_survives_mutated_images() {
    let t0 = Instant::now();
    let pythons = pyrometer_testsupport::require_all();
    let mut targets = Vec::new();
    let mut capture_errors = Vec::new();
    for py in &pythons {
        match capture(py) {
            Ok((t, seen)) => {
                // The clean image reads back exactly as the live process did.
                let mut reader = StackReader::new(&t.image, t.interp.clone());
                let again = read_everything(&mut reader, &t.tids, t.main_tid);
                assert_eq!(
                    again, seen,
                    "{}: the clean image reads differently",
                    t.label
                );
                let frames: usize = seen
                    .threads
                    .iter()
                    .map(|s| s.matches(" <- ").count() + 1)
                    .sum();
                assert!(
                    seen.threads.len() >= 4 && frames >= 10,
                    "{}: too little captured: {seen:#?}",
                    t.label
                );
                assert!(
                    seen.requests
                        .iter()
                        .any(|r| r.contains("POST /process/123"))
                        && seen.requests.iter().any(|r| r.contains("GET /users/42")),
                    "{}: requests not read: {:?}",
                    t.label,
                    seen.requests
                );
                println!(
                    "{:<28} {:>4} KiB image, {:>5} hot words ({} pointers), {} threads, {} frames, {} names",
                    t.label,
                    t.size / 1024,
                    t.hot.len(),
                    t.pointers.len(),
                    seen.threads.len(),
                    frames,
                    seen.names.len()
                );
                targets.push(t);
            }
            Err(e) => capture_errors.push(format!("{}: {e}", py.label)),
        }
    }
    assert!(
        capture_errors.is_empty(),
        "capture failed: {capture_errors:#?}"
    );
    for minor in [13, 14, 15] {
        targets.push(synthetic_target(minor));
    }
    println!("images ready in {:.1}s", t0.elapsed().as_secs_f64());

    // Panics inside an iteration are recorded quietly; any other panic (an
    // assertion of another test) is reported as usual.
    let prev_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !IN_ITERATION.with(Cell::get) {
            return prev_hook(info);
        }
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if let Ok(mut g) = LAST_PANIC.lock() {
            *g = Some(format!("{msg} at {loc}"));
        }
    }));

    let seed = fuzz_seed();
    let deadline = Instant::now() + Duration::from_secs_f64(fuzz_secs());
    let failures: Arc<Mutex<Vec<Failure>>> = Arc::default();
    let mut counts = vec![0u64; targets.len()];
    let mut reads = vec![0u64; targets.len()];
    if let Some((label, it)) = only() {
        for t in targets.iter().filter(|t| t.label == label) {
            if let Err(f) = one_iteration(t, seed, it) {
                failures.lock().unwrap().push(f);
            }
        }
    } else {
        // Round-robin, so every image gets its share of the time.
        let mut iteration = 0u64;
        while Instant::now() < deadline {
            for (i, t) in targets.iter().enumerate() {
                match one_iteration(t, seed, iteration) {
                    Ok(r) => reads[i] += r,
                    Err(f) => failures.lock().unwrap().push(f),
                }
                counts[i] += 1;
            }
            iteration += 1;
        }
    }

    let total: u64 = counts.iter().sum();
    for (i, t) in targets.iter().enumerate() {
        println!(
            "{:<28} {:>7} iterations, {:>10} reads",
            t.label, counts[i], reads[i]
        );
    }
    let failures = failures.lock().unwrap();
    let distinct: BTreeSet<String> = failures.iter().map(|f| f.what.clone()).collect();
    println!(
        "fuzz: {total} iterations (seed {seed:#x}), {} failures, {} distinct",
        failures.len(),
        distinct.len()
    );
    let mut report = String::new();
    for what in &distinct {
        let f = failures.iter().find(|f| &f.what == what).unwrap();
        report.push_str(&format!(
            "\n{what}\n  reproduce: PYROMETER_FUZZ_SEED={seed} PYROMETER_FUZZ_ONLY='{},{}' \
             cargo test -p pyrometer-cpython --test fuzz_walker\n  mutations: {:x?}\n",
            f.target, f.iteration, f.mutations
        ));
    }
    assert!(failures.is_empty(), "fuzzing found failures:{report}");
    assert!(
        only().is_some() || total >= 100,
        "only {total} iterations ran"
    );
}

// ---------------------------------------------------------------------------
// Regressions: one test per distinct bug the fuzzer (or review) found, each
// a garbage pointer where the reader added a field offset to it and
// overflowed (a panic in these debug builds, a wrapped address in release).

/// A garbage pointer near the top of the address space.
const GARBAGE: u64 = 0xffff_ffff_ffff_fff8;

/// An image that can be changed while a reader borrows it.
struct Mutable(RefCell<ImageMemory>);

impl Mutable {
    fn set_u64(&self, addr: u64, v: u64) {
        self.0.borrow_mut().write(addr, &v.to_le_bytes());
    }
}

impl Memory for Mutable {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.borrow().read(addr, buf)
    }
}

/// A captured image of an interpreter of version 3.`minor`.
fn captured(minor: u8) -> Target {
    let py = pyrometer_testsupport::require_all()
        .into_iter()
        .find(|p| p.minor() == (3, minor))
        .unwrap_or_else(|| panic!("no CPython 3.{minor}"));
    capture(&py).unwrap_or_else(|e| panic!("{e}")).0
}

fn thread_states(t: &Target, mem: &Mutable) -> Vec<u64> {
    let reader = StackReader::new(mem, t.interp.clone());
    let states = reader.thread_states().expect("clean thread list");
    assert!(states.len() >= 4, "{}: {states:?}", t.label);
    states.into_iter().map(|(ts, _)| ts).collect()
}

#[test]
fn garbage_interpreter_pointer_in_code_generation_and_thread_names() {
    // 3.14+ reads the code-object generation through the interpreter
    // pointer before the thread list checks it.
    let t = synthetic_target(14);
    let mem = Mutable(RefCell::new(t.image.clone()));
    let head = t.interp.runtime + t.interp.layout.runtime_interpreters_head;
    mem.set_u64(head, GARBAGE);
    let mut reader = StackReader::new(&mem, t.interp.clone());
    assert!(reader.thread_names().is_empty());
    assert!(reader.read_all().is_err());
    assert!(reader.read_all_filtered(|_| true).is_err());
}

#[test]
fn garbage_threading_module_pointer_in_thread_names() {
    let t = captured(12);
    let mem = Mutable(RefCell::new(t.image.clone()));
    let l = &t.interp.layout;
    let reader = StackReader::new(&mem, t.interp.clone());
    assert_eq!(reader.thread_names().len(), 4, "clean image");
    let interp = mem
        .read_u64(t.interp.runtime + l.runtime_interpreters_head)
        .unwrap();
    let modules = mem.read_u64(interp + l.interp_modules).unwrap();
    let threading = objects::dict_get_str(&mem, l, modules, "threading")
        .unwrap()
        .expect("threading is imported");
    // `sys.modules["threading"]` now holds garbage.
    let mut replaced = 0;
    for w in &t.hot {
        if mem.read_u64(*w) == Ok(threading) {
            mem.set_u64(*w, GARBAGE);
            replaced += 1;
        }
    }
    assert!(replaced > 0);
    assert!(reader.thread_names().is_empty());
}

#[test]
fn garbage_thread_id_while_learning_the_pthread_tid_offset() {
    let t = captured(10);
    let mem = Mutable(RefCell::new(t.image.clone()));
    let newest = thread_states(&t, &mem)[0];
    mem.set_u64(newest + t.interp.layout.tstate_thread_id, GARBAGE);
    let mut reader = StackReader::new(&mem, t.interp.clone());
    reader.learn_pthread_tid_offset(&t.tids, Some(t.main_tid));
    // The torn id spoils the learning (every thread must agree), not the read.
    let stacks = reader.read_all().expect("stacks still read");
    assert!(stacks.iter().all(|s| s.native_id.is_none()), "{stacks:?}");
}

#[test]
fn garbage_pthread_pointer_after_learning_the_tid_offset() {
    let t = captured(10);
    let mem = Mutable(RefCell::new(t.image.clone()));
    let newest = thread_states(&t, &mem)[0];
    let mut reader = StackReader::new(&mem, t.interp.clone());
    reader.learn_pthread_tid_offset(&t.tids, Some(t.main_tid));
    let clean = reader.read_all().expect("clean");
    assert!(clean.iter().all(|s| s.native_id.is_some()), "{clean:?}");
    mem.set_u64(newest + t.interp.layout.tstate_thread_id, GARBAGE);
    let torn = reader.read_all().expect("stacks still read");
    for s in &torn {
        assert_eq!(s.native_id.is_none(), s.tstate == newest, "{s:?}");
    }
}

#[test]
fn garbage_cframe_pointer() {
    for minor in [11, 12] {
        let t = captured(minor);
        let mem = Mutable(RefCell::new(t.image.clone()));
        let pyrometer_cpython::layout::FrameRoot::CFrame { cframe, .. } =
            t.interp.layout.frame_root
        else {
            panic!("3.{minor} reads frames through a cframe");
        };
        let newest = thread_states(&t, &mem)[0];
        mem.set_u64(newest + cframe, u64::MAX);
        let mut reader = StackReader::new(&mem, t.interp.clone());
        // A thread whose top frame cannot be found is dropped (torn); the
        // other threads are still read (the sampler's read).
        let threads = reader
            .read_all_filtered(|_| true)
            .unwrap_or_else(|e| panic!("3.{minor}: one bad thread failed the read: {e}"));
        let bad = threads
            .iter()
            .find(|s| s.tstate == newest)
            .expect("the bad thread is listed");
        assert!(bad.torn && bad.frames.is_empty(), "3.{minor}: {bad:?}");
        assert!(
            threads
                .iter()
                .any(|s| s.tstate != newest && !s.torn && !s.frames.is_empty()),
            "3.{minor}: the other threads were not read: {threads:?}"
        );
        // The strict read (`read_all`) still fails as a whole.
        assert!(reader.read_all().is_err());
        assert!(reader.top_frame(newest).is_err());
    }
}

#[test]
fn garbage_gil_pointer() {
    let t = captured(12);
    let mem = Mutable(RefCell::new(t.image.clone()));
    let gil_ptr = t
        .interp
        .layout
        .interp_gil_ptr
        .expect("3.12 points at its GIL");
    let reader = StackReader::new(&mem, t.interp.clone());
    let interp = mem
        .read_u64(t.interp.runtime + t.interp.layout.runtime_interpreters_head)
        .unwrap();
    mem.set_u64(interp + gil_ptr, GARBAGE);
    let states = reader.thread_states().expect("the thread list is intact");
    assert!(
        states.len() >= 4 && states.iter().all(|(_, gil)| !gil),
        "{states:?}"
    );
}

#[test]
fn garbage_pointer_into_the_last_page_through_the_page_cache() {
    let t = captured(12);
    let mem = Mutable(RefCell::new(t.image.clone()));
    let gil_ptr = t
        .interp
        .layout
        .interp_gil_ptr
        .expect("3.12 points at its GIL");
    let interp = mem
        .read_u64(t.interp.runtime + t.interp.layout.runtime_interpreters_head)
        .unwrap();
    // `gil + field` lands in the address space's last page.
    mem.set_u64(interp + gil_ptr, u64::MAX - (PAGE - 1) + 8);
    let reader = StackReader::new(PageCache::new(&mem), t.interp.clone());
    let states = reader.thread_states().expect("the thread list is intact");
    assert!(
        states.len() >= 4 && states.iter().all(|(_, gil)| !gil),
        "{states:?}"
    );
}
