//! Walking a live interpreter: interpreters → thread states → frames, and
//! code objects → names, files and line numbers.
//!
//! Everything read here is untrusted: every loop is bounded, every pointer
//! checked before it is followed, and a read that fails or makes no sense
//! drops the sample (the caller counts it).

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;

use pyrometer_process::{Memory, Settled};

use crate::callsite::CallSites;
use crate::discover::Interpreter;
use crate::error::CpythonError;
use crate::layout::{FrameModel, FrameRoot, Layout};
use crate::linetable::LineTable;
use crate::objects;
use crate::remote::{field, ReadField};

/// At most this many interpreters are walked.
const MAX_INTERPRETERS: usize = 64;
/// At most this many thread states per interpreter.
const MAX_THREADS: usize = 4096;
/// Default cap on frames per stack.
pub const DEFAULT_MAX_DEPTH: usize = 4096;
/// Longest name or file name read.
const MAX_NAME: usize = 1024;

/// Longest `_PyInterpreterFrame` header read in one go (bytes): every field
/// the walk reads lies before `localsplus` (72–80 bytes in 3.11–3.15).
const MAX_FRAME_HEADER: usize = 128;
/// Low bits of an address within its page.
const PAGE_MASK: u64 = 4095;

/// Bytes of a `_PyInterpreterFrame` that hold every field the walk reads.
fn frame_header_len(model: &FrameModel) -> Result<usize, CpythonError> {
    let FrameModel::Interpreter {
        previous,
        executable,
        instr_ptr,
        owner,
        return_offset,
        entry_flag,
        ..
    } = *model
    else {
        return Ok(0);
    };
    let ends = [
        previous.checked_add(8),
        executable.checked_add(8),
        instr_ptr.checked_add(8),
        owner.checked_add(1),
        return_offset.map_or(Some(0), |o| o.checked_add(2)),
        entry_flag.map_or(Some(0), |o| o.checked_add(1)),
    ];
    let mut len = 0u64;
    for end in ends {
        len = len.max(end.ok_or(CpythonError::Corrupt("frame field offset overflows"))?);
    }
    usize::try_from(len)
        .ok()
        .filter(|&n| n <= MAX_FRAME_HEADER)
        .ok_or(CpythonError::Corrupt(
            "frame fields lie beyond the frame header",
        ))
}

/// The little-endian field of `N` bytes at `off` in a frame header.
fn header_field<const N: usize>(header: &[u8], off: u64) -> Result<[u8; N], CpythonError> {
    usize::try_from(off)
        .ok()
        .and_then(|o| header.get(o..o.checked_add(N)?))
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or(CpythonError::Corrupt("frame field outside the header read"))
}
fn header_u64(header: &[u8], off: u64) -> Result<u64, CpythonError> {
    header_field::<8>(header, off).map(u64::from_le_bytes)
}
fn header_u16(header: &[u8], off: u64) -> Result<u16, CpythonError> {
    header_field::<2>(header, off).map(u16::from_le_bytes)
}
fn header_u8(header: &[u8], off: u64) -> Result<u8, CpythonError> {
    header_field::<1>(header, off).map(|[b]| b)
}

/// A string read as a prefix of `len` code points, marked `…` when cut.
fn cut_name(prefix: String, len: u64) -> Arc<str> {
    if (prefix.chars().count() as u64) < len {
        Arc::from(format!("{prefix}…"))
    } else {
        Arc::from(prefix)
    }
}
/// Largest line table read (bytes).
const MAX_LINETABLE: usize = 1 << 20;
/// Largest bytecode scanned for call sites (code units); a larger one is
/// not checked.
const MAX_CODE_UNITS: u64 = 1 << 19;
/// Highest user-space address on x86-64 / aarch64 (47-bit): a pointer above
/// it is garbage, and adding a field offset to it could overflow.
pub(crate) const MAX_USER_ADDRESS: u64 = 0x0000_7fff_ffff_ffff;
/// `PyModuleObject.md_dict`, the same in every supported version.
const MODULE_DICT_OFFSET: u64 = 16;

/// What the reader knows about one code object.
#[derive(Debug, Clone)]
pub struct CodeInfo {
    /// `co_name`.
    pub name: Arc<str>,
    /// `co_qualname` (3.11+), else `co_name`.
    pub qualname: Arc<str>,
    /// `co_filename`.
    pub filename: Arc<str>,
    /// `co_firstlineno`.
    pub first_line: i32,
    /// `co_argcount`.
    pub argcount: i32,
    /// Names of the fast locals (`co_varnames` or `co_localsplusnames`).
    pub varnames: Vec<Arc<str>>,
    /// 3.11+: kinds of the fast locals (`co_localspluskinds`).
    pub kinds: Vec<u8>,
    /// ≤3.10: number of plain locals.
    pub nlocals: usize,
    /// ≤3.10: names of cell variables (`co_cellvars`), whose cells follow
    /// the plain locals in the frame.
    pub cellvars: Vec<Arc<str>>,
    /// Decoded line table.
    pub lines: LineTable,
    /// Address of the first code unit (3.11+), for instruction offsets.
    pub code_start: u64,
    /// 3.11+: its call instructions, to tell a caller caught off them (a
    /// torn read).
    pub calls: CallSites,
    /// The fast local holding a WSGI `environ` or ASGI `scope`, if any.
    pub request_slot: Option<(usize, crate::request::RequestKind)>,
    /// The locals of anyio's worker loop, if this is its code.
    pub worker_slots: Option<crate::request::WorkerSlots>,
    /// Address the code object was read from.
    pub addr: u64,
    /// `co_filename` and `co_name` pointers when it was read: a cheap
    /// identity check that the address still holds the same code.
    pub identity: (u64, u64),
}

impl crate::cache::Weigh for Arc<CodeInfo> {
    fn weigh(&self) -> usize {
        let strs = |v: &[Arc<str>]| -> usize { v.iter().map(|s| s.weigh()).sum() };
        std::mem::size_of::<CodeInfo>()
            + self.name.weigh()
            + self.qualname.weigh()
            + self.filename.weigh()
            + strs(&self.varnames)
            + strs(&self.cellvars)
            + self.kinds.capacity()
            + self.lines.heap_bytes()
            + self.calls.heap_bytes()
    }
}

/// Code objects cached per generation (see [`crate::cache`]): the reader
/// holds at most twice this many, and twice [`CODE_CACHE_BYTES`].
pub const CODE_CACHE_ENTRIES: usize = 50_000;
/// Bytes of decoded code objects cached per generation.
pub const CODE_CACHE_BYTES: usize = 64 << 20;
/// The mark of a cached code object checked in `epoch` (by the batch at
/// its start), and of one also served in it.
fn checked_mark(epoch: u64) -> u64 {
    epoch << 1
}
fn served_mark(epoch: u64) -> u64 {
    (epoch << 1) | 1
}

/// Code objects served within this many epochs are checked at the start of
/// each epoch; others when a read serves them (at its end, batched). One:
/// the batch pins a page per code object, and one served a second ago but
/// not since is rarely served again soon (10 epochs cost 7 % more CPU at
/// 100 Hz under gunicorn).
const RECENT_EPOCHS: u64 = 1;
/// Cached code objects whose identity check is deferred to the end of a
/// read (see [`StackReader::verify_codes`]); beyond this they are checked
/// at once.
const MAX_UNVERIFIED_CODES: usize = 4096;
/// `Class.method` names cached per generation (≤3.10).
const METHOD_NAME_ENTRIES: usize = 50_000;
/// Bytes of `Class.method` names cached per generation.
const METHOD_NAME_BYTES: usize = 8 << 20;

/// One frame of a sampled stack.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The code object.
    pub code: Arc<CodeInfo>,
    /// The current line, as `frame.f_lineno` reports it (`None`: no line).
    pub line: Option<i32>,
    /// The function name shown to users: the qualified name on 3.11+,
    /// `Class.method` or `function` before.
    pub name: Arc<str>,
    /// Address of the frame in the target (for reading locals).
    pub frame_addr: u64,
}

/// One Python thread at the moment it was read.
#[derive(Debug, Clone)]
pub struct ThreadStack {
    /// `threading.get_ident()` (the pthread id).
    pub thread_id: u64,
    /// The OS thread id, when known.
    pub native_id: Option<i32>,
    /// Address of the thread state.
    pub tstate: u64,
    /// Holds the GIL at the time of the read.
    pub holds_gil: bool,
    /// Waits for the GIL (3.15+, where the interpreter says so).
    pub gil_requested: bool,
    /// Frames, innermost first.
    pub frames: Vec<Frame>,
    /// Frames beyond the depth cap that were not read.
    pub truncated: bool,
    /// The innermost frame pointer the walk started from (for torn-read checks).
    pub top_frame: u64,
    /// 3.15+: the thread's base frame (0 before).
    pub base_frame: u64,
    /// Whether the frames were read (a caller may skip idle threads' stacks).
    pub walked: bool,
    /// The walk failed: the stack changed while it was read.
    pub torn: bool,
}

impl ThreadStack {
    /// A thread whose header could not be read: no ids, no frames, torn.
    fn unreadable(tstate: u64, holds_gil: bool) -> ThreadStack {
        ThreadStack {
            thread_id: 0,
            native_id: None,
            tstate,
            holds_gil,
            gil_requested: false,
            frames: Vec::new(),
            truncated: false,
            top_frame: 0,
            base_frame: 0,
            walked: false,
            torn: true,
        }
    }
}

/// Reads stacks of one interpreter through a memory source.
#[derive(Debug)]
pub struct StackReader<M: Memory> {
    mem: M,
    interp: Interpreter,
    /// Code objects by address, with the mark of the epoch in which each
    /// was last checked to still be the same object (see `checked_mark`).
    codes: crate::cache::BoundedMap<u64, (Arc<CodeInfo>, u64)>,
    /// Current verification epoch (see [`StackReader::code`]).
    epoch: u64,
    created: std::time::Instant,
    /// ≤3.10: offset of the TID inside glibc's `struct pthread`.
    pthread_tid_offset: Option<u64>,
    /// Maximum frames per stack.
    pub max_depth: usize,
    /// 3.14+: the interpreter's code-object generation when the cache was filled.
    code_generation: Option<u64>,
    /// ≤3.10: (code object, class) → `Class.method`.
    method_names: crate::cache::BoundedMap<(u64, u64), Arc<str>>,
    /// Request-dict key strings by address → which field they name.
    pub(crate) request_keys: std::cell::RefCell<FxHashMap<u64, u8>>,
    /// Threadpool calls (see `threadpool_request_of`) → their request and
    /// the failed lookups of its scope.
    pub(crate) threadpool_requests:
        std::cell::RefCell<FxHashMap<u64, (crate::request::RequestInfo, u8)>>,
    /// Thread state → its last threadpool call.
    pub(crate) threadpool_last: std::cell::RefCell<FxHashMap<u64, u64>>,
    /// Cached code objects served this epoch without their identity check
    /// yet (see [`StackReader::verify_codes`]).
    unverified_codes: Vec<u64>,
    /// Cached code objects served in the last epochs → the last epoch each
    /// was served in: all are checked at the start of each epoch.
    recent_codes: FxHashMap<u64, u64>,
    /// Code objects whose call sites were read again this epoch, after a
    /// caller of theirs was found off its call (see
    /// [`StackReader::caller_is_torn`]).
    resighted_codes: rustc_hash::FxHashSet<u64>,
}

impl<M: Memory> StackReader<M> {
    /// A reader for `interp` inside `mem`.
    pub fn new(mem: M, interp: Interpreter) -> Self {
        StackReader {
            mem,
            interp,
            codes: crate::cache::BoundedMap::new(CODE_CACHE_ENTRIES, CODE_CACHE_BYTES),
            epoch: 0,
            created: std::time::Instant::now(),
            pthread_tid_offset: None,
            max_depth: DEFAULT_MAX_DEPTH,
            code_generation: None,
            method_names: crate::cache::BoundedMap::new(METHOD_NAME_ENTRIES, METHOD_NAME_BYTES),
            request_keys: Default::default(),
            threadpool_requests: Default::default(),
            threadpool_last: Default::default(),
            unverified_codes: Vec::new(),
            recent_codes: FxHashMap::default(),
            resighted_codes: Default::default(),
        }
    }

    /// Start a new 100 ms epoch when it is time: the code objects served in
    /// the last epoch are checked at once, in one vectored read, so the
    /// walks of this epoch find them checked (a code object first seen in
    /// a while is checked at the end of the read that sees it).
    fn advance_epoch(&mut self) {
        let epoch = self.created.elapsed().as_millis() as u64 / 100;
        if epoch == self.epoch {
            return;
        }
        self.epoch = epoch;
        self.resighted_codes.clear();
        self.recent_codes
            .retain(|_, served| epoch.saturating_sub(*served) <= RECENT_EPOCHS);
        let room = MAX_UNVERIFIED_CODES.saturating_sub(self.unverified_codes.len());
        let recent = self.recent_codes.keys().take(room);
        self.unverified_codes.extend(recent);
        self.verify_codes();
    }

    /// Check the cached code objects due for their identity check, all in
    /// one vectored read: one whose name or file pointer changed was freed
    /// and its address reused, and is read again when next seen. (This
    /// read's samples, like those of the epoch before the check, may still
    /// name it the old way: the cost of not checking each one at once.)
    pub fn verify_codes(&mut self) {
        if self.unverified_codes.is_empty() {
            return;
        }
        let addrs = std::mem::take(&mut self.unverified_codes);
        let l = &self.interp.layout;
        let (name_at, file_at) = (l.code_name, l.code_filename);
        let mut fields = vec![[0u8; 8]; addrs.len() * 2];
        let mut read_ok = vec![false; fields.len()];
        {
            let mut reqs: Vec<(u64, &mut [u8])> = Vec::with_capacity(fields.len());
            for (addr, pair) in addrs.iter().zip(fields.chunks_mut(2)) {
                let [file, name] = pair else { continue };
                reqs.push((addr.wrapping_add(file_at), &mut file[..]));
                reqs.push((addr.wrapping_add(name_at), &mut name[..]));
            }
            // (The kernel pins the page once per range: side by side ranges
            // of one object merge into one in `Process::read_many`.)
            // One it cannot read (a code object freed and unmapped) is
            // skipped, the others still read.
            self.mem.read_each_settled(&mut reqs, &mut read_ok);
        }
        if let Some(j) = read_ok.iter().position(|ok| !ok) {
            let again = Settled(&self.mem).read_u64(addrs[j / 2].wrapping_add(file_at));
            if matches!(again, Err(pyrometer_process::MemoryError::ProcessGone)) {
                // The process exited: nothing it held can have changed.
                return;
            }
        }
        for (i, addr) in addrs.iter().enumerate() {
            let field = |k: usize| {
                let j = 2 * i + k;
                read_ok[j].then(|| u64::from_le_bytes(fields[j]))
            };
            let Some((c, mark)) = self.codes.get_mut(addr) else {
                continue;
            };
            if field(0) != Some(c.identity.0) || field(1) != Some(c.identity.1) {
                self.codes.remove(addr);
            } else if *mark != served_mark(self.epoch) {
                *mark = checked_mark(self.epoch);
            }
        }
        let mut addrs = addrs;
        addrs.clear();
        self.unverified_codes = addrs;
    }

    /// The located interpreter.
    pub fn interpreter(&self) -> &Interpreter {
        &self.interp
    }

    /// The layout in use.
    pub fn layout(&self) -> &Layout {
        &self.interp.layout
    }

    /// The memory source.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Number of cached code objects.
    pub fn cached_codes(&self) -> usize {
        self.codes.len()
    }

    /// Bytes held by cached code objects (as they weigh themselves).
    pub fn cached_code_bytes(&self) -> usize {
        self.codes.bytes()
    }

    /// Bound the code-object cache to `entries` and `bytes` per generation
    /// (it holds at most twice that); drops what it holds.
    pub fn set_code_cache_limits(&mut self, entries: usize, bytes: usize) {
        self.codes.set_limits(entries, bytes);
    }

    /// Addresses of all thread states of all interpreters, with the GIL
    /// holder of each interpreter.
    pub fn thread_states(&self) -> Result<Vec<(u64, bool)>, CpythonError> {
        let l = &self.interp.layout;
        let mut out = Vec::new();
        let mut interp = self
            .mem
            .u64_at(self.interp.runtime, l.runtime_interpreters_head)?;
        if interp == 0 {
            return Err(CpythonError::NotInitialized);
        }
        for _ in 0..MAX_INTERPRETERS {
            if interp == 0 {
                break;
            }
            if interp > MAX_USER_ADDRESS {
                return Err(CpythonError::Corrupt("implausible interpreter pointer"));
            }
            let holder = self.gil_holder(interp).unwrap_or(0);
            let mut ts = self.mem.u64_at(interp, l.interp_threads_head)?;
            let mut seen = 0;
            while ts != 0 {
                if seen >= MAX_THREADS {
                    return Err(CpythonError::Corrupt("thread list too long (cycle?)"));
                }
                if ts > MAX_USER_ADDRESS {
                    return Err(CpythonError::Corrupt("implausible thread state pointer"));
                }
                seen += 1;
                out.push((ts, ts == holder));
                ts = self.mem.u64_at(ts, l.tstate_next)?;
            }
            interp = self.mem.u64_at(interp, l.interp_next)?;
        }
        Ok(out)
    }

    /// The thread state holding the GIL of `interp` (0 if none).
    fn gil_holder(&self, interp: u64) -> Result<u64, CpythonError> {
        let l = &self.interp.layout;
        let gil = if let Some(off) = l.interp_gil_inline {
            field(interp, off)?
        } else if let Some(off) = l.interp_gil_ptr {
            self.mem.u64_at(interp, off)?
        } else if let Some(off) = l.runtime_gil {
            field(self.interp.runtime, off)?
        } else {
            return Ok(0);
        };
        if gil == 0 {
            return Ok(0);
        }
        let locked = self.mem.i32_at(gil, l.gil_locked)?;
        if locked == 0 {
            return Ok(0);
        }
        self.mem.u64_at(gil, l.gil_last_holder)
    }

    /// Read every Python thread and its stack.
    /// Any thread whose stack cannot be read fails the whole read.
    pub fn read_all(&mut self) -> Result<Vec<ThreadStack>, CpythonError> {
        self.read_threads(|_| true, true)
    }

    /// Read every Python thread; walk the stacks only of those for which
    /// `walk` (given the thread's header: ids, GIL, top frame) says so. The
    /// others come back with `walked: false` and no frames.
    /// A thread whose header or stack cannot be read (it changed under the
    /// walk, or holds a garbage pointer) comes back with `torn: true`; the
    /// others are kept. `walk` is called once per thread, in order, torn
    /// ones included.
    pub fn read_all_filtered(
        &mut self,
        walk: impl FnMut(&ThreadStack) -> bool,
    ) -> Result<Vec<ThreadStack>, CpythonError> {
        self.read_threads(walk, false)
    }

    fn read_threads(
        &mut self,
        mut walk: impl FnMut(&ThreadStack) -> bool,
        strict: bool,
    ) -> Result<Vec<ThreadStack>, CpythonError> {
        self.advance_epoch();
        self.check_code_generation()?;
        let states = self.thread_states()?;
        let mut out = Vec::with_capacity(states.len());
        for (ts, holds_gil) in states {
            // A thread state whose header cannot be read (a garbage `cframe`
            // or top-frame pointer) spoils that thread's sample only: it comes
            // back torn, and `walk` still sees it, so callers keep one entry
            // per thread in order.
            let mut st = match self.read_header(ts, holds_gil) {
                Ok(st) => st,
                Err(e @ CpythonError::Memory(pyrometer_process::MemoryError::ProcessGone)) => {
                    return Err(e)
                }
                Err(e) if strict => return Err(e),
                Err(_) => {
                    let st = ThreadStack::unreadable(ts, holds_gil);
                    walk(&st);
                    out.push(st);
                    continue;
                }
            };
            if walk(&st) {
                // One thread's stack changing under the walk spoils only
                // that thread's sample.
                match self.walk(ts, st.top_frame, st.base_frame) {
                    Ok((frames, truncated)) => {
                        st.frames = frames;
                        st.truncated = truncated;
                        st.walked = true;
                    }
                    Err(e @ CpythonError::Memory(pyrometer_process::MemoryError::ProcessGone)) => {
                        return Err(e)
                    }
                    Err(e) if strict => return Err(e),
                    Err(_) => st.torn = true,
                }
            }
            out.push(st);
        }
        self.verify_codes();
        Ok(out)
    }

    /// Where the frame at `frame` is in its code: `instr_ptr` (3.11+) or
    /// `f_lasti` (≤3.10). With the frame address it identifies the point a
    /// thread is parked at.
    pub fn frame_position(&self, frame: u64) -> Result<u64, CpythonError> {
        if frame == 0 || frame > MAX_USER_ADDRESS {
            return Ok(0);
        }
        Ok(match self.interp.layout.frame {
            FrameModel::FrameObject { lasti, .. } => self.mem.u32_at(frame, lasti)? as u64,
            FrameModel::Interpreter { instr_ptr, .. } => self.mem.u64_at(frame, instr_ptr)?,
        })
    }

    /// A frame captured inside the target (the allocation hook's walk): its
    /// code object at `code_addr` (read from outside, cached; `None` when it
    /// is not a code object) at byte `offset` of its bytecode (`None`: not
    /// started, the first line).
    pub fn captured_frame(
        &mut self,
        code_addr: u64,
        offset: Option<u64>,
    ) -> Result<Option<Frame>, CpythonError> {
        self.advance_epoch();
        self.check_code_generation()?;
        let Some(info) = self.code_if_code(code_addr)? else {
            return Ok(None);
        };
        let line = match offset {
            Some(o) => info.lines.line_at(o),
            None => Some(info.first_line),
        };
        Ok(Some(Frame {
            name: info.qualname.clone(),
            code: info,
            line,
            frame_addr: 0,
        }))
    }

    /// 3.14+: drop cached code objects when the interpreter says some were
    /// freed (their addresses may now hold other code).
    fn check_code_generation(&mut self) -> Result<(), CpythonError> {
        let Some(off) = self.interp.layout.interp_code_generation else {
            return Ok(());
        };
        let l = &self.interp.layout;
        let interp = self
            .mem
            .u64_at(self.interp.runtime, l.runtime_interpreters_head)?;
        if interp == 0 {
            return Ok(());
        }
        let generation = self.mem.u64_at(interp, off)?;
        if self.code_generation != Some(generation) {
            self.codes.clear();
            self.code_generation = Some(generation);
        }
        Ok(())
    }

    /// Read one thread state and its stack.
    pub fn read_thread(
        &mut self,
        tstate: u64,
        holds_gil: bool,
    ) -> Result<ThreadStack, CpythonError> {
        let mut st = self.read_header(tstate, holds_gil)?;
        let (frames, truncated) = self.walk(tstate, st.top_frame, st.base_frame)?;
        st.frames = frames;
        st.truncated = truncated;
        st.walked = true;
        Ok(st)
    }

    /// Read a thread state's ids, GIL flags and top frame, not its stack.
    fn read_header(&mut self, tstate: u64, holds_gil: bool) -> Result<ThreadStack, CpythonError> {
        let l = self.interp.layout.clone();
        let thread_id = self.mem.u64_at(tstate, l.tstate_thread_id)?;
        let native_id = match l.tstate_native_thread_id {
            Some(off) => Some(self.mem.u64_at(tstate, off)? as i32).filter(|t| *t > 0),
            None => self.native_id_from_pthread(thread_id),
        };
        let (holds_gil, gil_requested) = match (l.tstate_holds_gil, l.tstate_gil_requested) {
            (Some(h), Some(r)) => (
                self.mem.i32_at(tstate, h)? != 0,
                self.mem.i32_at(tstate, r)? != 0,
            ),
            _ => (holds_gil, false),
        };
        let base = match l.tstate_base_frame {
            Some(off) => self.mem.u64_at(tstate, off)?,
            None => 0,
        };
        let top = self.top_frame(tstate)?;
        Ok(ThreadStack {
            thread_id,
            native_id,
            tstate,
            holds_gil,
            gil_requested,
            frames: Vec::new(),
            truncated: false,
            top_frame: top,
            base_frame: base,
            walked: false,
            torn: false,
        })
    }

    /// The innermost frame pointer of a thread (0 when it runs no Python).
    pub fn top_frame(&self, tstate: u64) -> Result<u64, CpythonError> {
        top_frame_of(&self.mem, &self.interp.layout, tstate)
    }

    /// Walk from `frame` to the bottom of the chain. With a `base` sentinel
    /// (3.15+), the chain must end there; one that ends elsewhere is torn.
    /// 3.11+: a frame the thread owns must lie in the data stack of
    /// `tstate`; one outside it is torn.
    fn walk(
        &mut self,
        tstate: u64,
        mut frame: u64,
        base: u64,
    ) -> Result<(Vec<Frame>, bool), CpythonError> {
        let model = self.interp.layout.frame;
        let mut data_stack = self
            .interp
            .layout
            .tstate_datastack
            .map(|layout| DataStackBounds::new(layout, tstate));
        let mut frames = Vec::new();
        // Brent's cycle detection: O(1) memory, no allocation per walk.
        let (mut tortoise, mut power, mut lam) = (0u64, 1usize, 0usize);
        let mut steps = 0usize;
        // Interpreter-owned frames are skipped but still count against the
        // bound, so a cycle cannot loop forever.
        let step_limit = self.max_depth.saturating_mul(2).max(16);
        // The last frame walked was pushed inline by the one it links to
        // (3.11+), which must then be stopped on a call instruction.
        let mut pushed_by_next = false;
        let header_len = frame_header_len(&model)?;
        let mut header_buf = [0u8; MAX_FRAME_HEADER];
        let mut last_page = u64::MAX;
        while frame != 0 {
            if base != 0 && frame == base {
                return Ok((frames, false));
            }
            if frames.len() >= self.max_depth {
                return Ok((frames, true));
            }
            steps += 1;
            if steps > step_limit {
                return Err(CpythonError::Corrupt("frame chain too long (cycle?)"));
            }
            if !frame.is_multiple_of(8) || frame > MAX_USER_ADDRESS {
                return Err(CpythonError::Corrupt("implausible frame pointer"));
            }
            if frame == tortoise {
                return Err(CpythonError::Corrupt("frame chain loops"));
            }
            lam += 1;
            if lam == power {
                tortoise = frame;
                power *= 2;
                lam = 0;
            }
            match model {
                FrameModel::FrameObject {
                    back,
                    code,
                    lasti,
                    lasti_unit,
                    localsplus,
                    ..
                } => {
                    let code_addr = self.mem.u64_at(frame, code)?;
                    let info = self.code(code_addr)?;
                    let lasti = self.mem.i32_at(frame, lasti)?;
                    let line = if lasti < 0 {
                        Some(info.first_line)
                    } else {
                        info.lines.line_at(lasti as u64 * lasti_unit)
                    };
                    let name = self.legacy_name(&info, field(frame, localsplus)?);
                    frames.push(Frame {
                        code: info,
                        line,
                        name,
                        frame_addr: frame,
                    });
                    // Frames are pushed and popped in place: their pages
                    // are copied whole by the next snapshot.
                    self.mem.keep_whole(frame);
                    frame = self.mem.u64_at(frame, back)?;
                }
                FrameModel::Interpreter {
                    previous,
                    executable,
                    instr_ptr,
                    instr_ptr_is_previous,
                    owner,
                    skip_owners,
                    executable_tag_mask,
                    return_offset,
                    entry_flag,
                    ..
                } => {
                    // One read of the frame's header serves every field.
                    let header = &mut header_buf[..header_len];
                    self.mem.read(frame, header)?;
                    let header = &*header;
                    let owner_value = header_u8(header, owner)?;
                    if owner_value == FRAME_OWNED_BY_THREAD {
                        if let Some(bounds) = data_stack.as_mut() {
                            if !bounds.contains(&self.mem, frame)? {
                                return Err(CpythonError::Corrupt(
                                    "frame outside the thread's data stack",
                                ));
                            }
                        }
                    }
                    let code_addr = header_u64(header, executable)? & !executable_tag_mask;
                    let called_inline = std::mem::take(&mut pushed_by_next);
                    if !skip_owners.contains(&owner_value) && code_addr != 0 {
                        if let Some(info) = self.code_if_code(code_addr)? {
                            let ip = header_u64(header, instr_ptr)?;
                            let line = if ip < info.code_start {
                                Some(info.first_line)
                            } else {
                                info.lines.line_at(ip - info.code_start)
                            };
                            if called_inline && info.calls.known() {
                                // Before the first instruction (a frame not
                                // started yet) is no call either.
                                let offset = ip.checked_sub(info.code_start).unwrap_or(u64::MAX);
                                let returns = return_offset
                                    .map(|off| header_u16(header, off))
                                    .transpose()?;
                                if !info.calls.may_be_calling_at(
                                    offset,
                                    instr_ptr_is_previous,
                                    returns,
                                ) {
                                    self.caller_is_torn(
                                        &info,
                                        offset,
                                        instr_ptr_is_previous,
                                        returns,
                                    );
                                    return Err(CpythonError::Corrupt(
                                        "a caller is not stopped on a call (torn read)",
                                    ));
                                }
                            }
                            // A generator's frame is also linked straight
                            // to its caller by `gen.throw()` into a
                            // generator it delegates to (`yield from`,
                            // `await`), from C: only one that is running
                            // (calling inline itself) was resumed by the
                            // bytecode of the frame it links to.
                            pushed_by_next = match entry_flag {
                                Some(off) => header_u8(header, off)? == 0,
                                None => true,
                            } && (owner_value != FRAME_OWNED_BY_GENERATOR
                                || called_inline);
                            // `__init__`'s shim (3.13+) is checked as a
                            // caller but not shown: it is not code anyone wrote.
                            if !info.calls.is_init_shim() {
                                frames.push(Frame {
                                    name: info.qualname.clone(),
                                    code: info,
                                    line,
                                    frame_addr: frame,
                                });
                            }
                        }
                    }
                    // Frames are pushed and popped in place: their pages
                    // are copied whole by the next snapshot.
                    if frame & !PAGE_MASK != last_page {
                        last_page = frame & !PAGE_MASK;
                        self.mem.keep_whole(frame);
                    }
                    frame = header_u64(header, previous)?;
                }
            }
        }
        if base != 0 {
            return Err(CpythonError::Corrupt(
                "frame chain did not end at the thread's base frame",
            ));
        }
        Ok((frames, false))
    }

    /// On 3.13+ `f_executable` may hold objects that are not code (frames
    /// of C functions on some builds): those are skipped.
    fn code_if_code(&mut self, addr: u64) -> Result<Option<Arc<CodeInfo>>, CpythonError> {
        if let Some(cached) = self.cached_code(addr) {
            return Ok(Some(cached));
        }
        if !addr.is_multiple_of(8) || addr > MAX_USER_ADDRESS {
            return Err(CpythonError::Corrupt("bad code object pointer"));
        }
        let l = &self.interp.layout;
        let ty = self.mem.u64_at(addr, l.ob_type)?;
        let is_code = match self.interp.code_type {
            Some(code_type) => ty == code_type,
            None => objects::type_name(&self.mem, l, addr)
                .map(|n| n == "code")
                .unwrap_or(false),
        };
        if !is_code {
            return Ok(None);
        }
        self.code(addr).map(Some)
    }

    /// Read (or fetch from the cache) the code object at `addr`.
    ///
    /// A code object can be freed and its address reused by another (the
    /// main script compiled where startup modules' code was, `exec`, module
    /// reloads). Before 3.14 nothing says so, so a cached entry is checked
    /// once per 100 ms epoch against the object's name and file pointers;
    /// 3.14+ also drops the cache when the interpreter's code-object
    /// generation changes.
    pub fn code(&mut self, addr: u64) -> Result<Arc<CodeInfo>, CpythonError> {
        if let Some(cached) = self.cached_code(addr) {
            return Ok(cached);
        }
        if addr == 0 || !addr.is_multiple_of(8) || addr > MAX_USER_ADDRESS {
            return Err(CpythonError::Corrupt("bad code object pointer"));
        }
        let info = Arc::new(self.read_code(addr)?);
        // The cache is bounded by entries and bytes: a process that keeps
        // compiling code (exec, eval) must not grow pyrometer's memory.
        if self.recent_codes.len() < MAX_UNVERIFIED_CODES {
            self.recent_codes.insert(addr, self.epoch);
        }
        self.codes
            .insert(addr, (info.clone(), served_mark(self.epoch)));
        Ok(info)
    }

    /// The cached code object at `addr`, if it is cached and still the same
    /// object (see [`StackReader::code`]). One map lookup when it was already
    /// served this epoch: this runs for every frame of every sample.
    fn cached_code(&mut self, addr: u64) -> Option<Arc<CodeInfo>> {
        let served = served_mark(self.epoch);
        let entry = self.codes.get_mut(&addr)?;
        if entry.1 == served {
            return Some(entry.0.clone());
        }
        // Checked at the start of this epoch; or else checked at the end of
        // this read, with the others due, in one vectored read (one by one
        // they cost a system call each); or else, past that many, now.
        let trusted = if entry.1 == checked_mark(self.epoch) {
            true
        } else if self.unverified_codes.len() < MAX_UNVERIFIED_CODES {
            self.unverified_codes.push(addr);
            true
        } else {
            let l = &self.interp.layout;
            let m = Settled(&self.mem);
            let filename = m.u64_at(addr, l.code_filename);
            // The process exited: its code cannot have changed since (the
            // allocation hook's captured frames are resolved after exit).
            if matches!(
                filename,
                Err(CpythonError::Memory(
                    pyrometer_process::MemoryError::ProcessGone
                ))
            ) {
                return Some(entry.0.clone());
            }
            filename.ok() == Some(entry.0.identity.0)
                && m.u64_at(addr, l.code_name).ok() == Some(entry.0.identity.1)
        };
        if !trusted {
            self.codes.remove(&addr);
            return None;
        }
        entry.1 = served;
        self.recent_codes.insert(addr, self.epoch);
        Some(entry.0.clone())
    }

    fn read_code(&self, addr: u64) -> Result<CodeInfo, CpythonError> {
        let l = &self.interp.layout;
        // A code object and what it points to never change: reading them
        // late (a first sight, or the identity check each epoch) does not
        // make the walk torn, and they need not be in the next snapshot.
        let m = &Settled(&self.mem);
        if let Some(code_type) = self.interp.code_type {
            if m.u64_at(addr, l.ob_type)? != code_type {
                return Err(CpythonError::Corrupt("frame's code is not a code object"));
            }
        }
        // A name or file name longer than MAX_NAME is cut, not an error:
        // an error would drop every sample of a thread running that code.
        let string = |off: u64| -> Result<Arc<str>, CpythonError> {
            let p = m.u64_at(addr, off)?;
            objects::read_str_prefix(m, l, p, MAX_NAME)
                .map(|(s, len)| cut_name(s, len))
                .map_err(|_| CpythonError::Corrupt("unreadable string in code object"))
        };
        let name = string(l.code_name)?;
        let filename = string(l.code_filename)?;
        let name_ptr = m.u64_at(addr, l.code_name)?;
        let filename_ptr = m.u64_at(addr, l.code_filename)?;
        let qualname = match l.code_qualname {
            Some(off) => string(off)?,
            None => name.clone(),
        };
        let first_line = m.i32_at(addr, l.code_firstlineno)?;
        let argcount = m.i32_at(addr, l.code_argcount)?;
        let table_ptr = m.u64_at(addr, l.code_linetable)?;
        let table = objects::read_bytes(m, l, table_ptr, MAX_LINETABLE)
            .map_err(|_| CpythonError::Corrupt("unreadable line table"))?;
        let lines = LineTable::decode(l.line_table, &table, first_line);
        let varnames_ptr = m.u64_at(addr, l.code_varnames)?;
        let varnames = objects::tuple_items(m, l, varnames_ptr, 4096)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                objects::read_str(m, l, p, MAX_NAME)
                    .map(Arc::from)
                    .unwrap_or_else(|_| Arc::from("?"))
            })
            .collect::<Vec<Arc<str>>>();
        let kinds = match l.code_localspluskinds {
            Some(off) => {
                let p = m.u64_at(addr, off)?;
                objects::read_bytes(m, l, p, 4096).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let nlocals = match l.code_nlocals {
            Some(off) => m.i32_at(addr, off)?.max(0) as usize,
            None => varnames.len(),
        };
        let cellvars = match l.code_cellvars {
            Some(off) => {
                let p = m.u64_at(addr, off)?;
                objects::tuple_items(m, l, p, 4096)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| {
                        objects::read_str(m, l, p, MAX_NAME)
                            .map(Arc::from)
                            .unwrap_or_else(|_| Arc::from("?"))
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let code_start = match l.code_code_adaptive {
            Some(o) => field(addr, o)?,
            None => 0,
        };
        let calls = self.read_call_sites(addr, code_start);
        let request_slot = crate::request::request_slot(&varnames, nlocals);
        let worker_slots = crate::request::worker_slots(&filename, &name, &varnames, nlocals);
        Ok(CodeInfo {
            name,
            qualname,
            filename,
            first_line,
            argcount,
            varnames,
            kinds,
            nlocals,
            cellvars,
            lines,
            code_start,
            calls,
            addr,
            request_slot,
            worker_slots,
            identity: (filename_ptr, name_ptr),
        })
    }

    /// A caller running `info` was found off its call. Usually the stack
    /// moved under the read; but a code object freed and its address reused
    /// by another with the same name and file (`exec` of `"<string>"`s) keeps
    /// its cached call sites until its identity check sees otherwise, and
    /// would drop that code's stacks every time. So, once per epoch per code
    /// object, its bytecode is read again: if the position is a call there,
    /// the cached entry is stale and forgotten (the next read reads it anew).
    fn caller_is_torn(
        &mut self,
        info: &CodeInfo,
        offset: u64,
        at_last_unit: bool,
        return_offset: Option<u16>,
    ) {
        if !self.resighted_codes.insert(info.addr) {
            return;
        }
        let fresh = self.read_call_sites(info.addr, info.code_start);
        if fresh.known() && fresh.may_be_calling_at(offset, at_last_unit, return_offset) {
            self.codes.remove(&info.addr);
        }
    }

    /// 3.11+: the call instructions of the code object at `addr`, whose
    /// bytecode starts at `code_start`. Bytecode that cannot be read (or is
    /// huge) leaves its frames unchecked rather than failing the read.
    fn read_call_sites(&self, addr: u64, code_start: u64) -> CallSites {
        let l = &self.interp.layout;
        let FrameModel::Interpreter {
            calls: Some(calls), ..
        } = l.frame
        else {
            return CallSites::unknown();
        };
        if l.code_code_adaptive.is_none() {
            return CallSites::unknown();
        }
        let m = &Settled(&self.mem);
        // Every `PyVarObject` keeps `ob_size` where a tuple does: for a code
        // object it counts code units.
        let units = match m.u64_at(addr, l.tuple_size) {
            Ok(n) if n > 0 && n <= MAX_CODE_UNITS => n,
            _ => return CallSites::unknown(),
        };
        let mut bytecode = vec![0u8; units as usize * 2];
        match m.read(code_start, &mut bytecode) {
            Ok(()) => CallSites::scan(calls, &bytecode),
            Err(_) => CallSites::unknown(),
        }
    }

    /// ≤3.10 has no `co_qualname`: name methods `Class.method` when the
    /// first argument is `self` or `cls`, as py-spy does.
    fn legacy_name(&mut self, code: &CodeInfo, localsplus: u64) -> Arc<str> {
        if code.argcount < 1 {
            return code.name.clone();
        }
        let is_self = match code.varnames.first().map(|n| &**n) {
            Some("self") => true,
            Some("cls") => false,
            _ => return code.name.clone(),
        };
        let Some(first) = code.varnames.first() else {
            return code.name.clone();
        };
        let mut value = self.mem.read_u64(localsplus).unwrap_or(0);
        if value == 0 {
            // An argument captured by a closure lives in its cell (≤3.10
            // clears the argument's own slot).
            if let Some(i) = code.cellvars.iter().position(|c| c == first) {
                value = slot_addr(localsplus, code.nlocals.saturating_add(i))
                    .and_then(|slot| self.mem.read_u64(slot).ok())
                    .filter(|c| *c != 0 && *c <= MAX_USER_ADDRESS)
                    .and_then(|cell| self.mem.u64_at(cell, 16).ok())
                    .unwrap_or(0);
            }
        }
        if value == 0 || value > MAX_USER_ADDRESS {
            return code.name.clone();
        }
        let l = &self.interp.layout;
        let ty = if is_self {
            match self.mem.u64_at(value, l.ob_type) {
                Ok(t) => t,
                Err(_) => return code.name.clone(),
            }
        } else {
            value
        };
        // A torn read can leave anything in `ob_type`.
        if ty == 0 || ty > MAX_USER_ADDRESS {
            return code.name.clone();
        }
        if let Some(n) = self.method_names.get(&(code.addr, ty)) {
            return n.clone();
        }
        let class = self
            .mem
            .u64_at(ty, l.type_tp_name)
            .ok()
            .and_then(|p| objects::read_c_string(&self.mem, p, 256).ok());
        let name: Arc<str> = match class {
            Some(c) => Arc::from(format!("{}.{}", short_type_name(&c), code.name)),
            None => return code.name.clone(),
        };
        self.method_names.insert((code.addr, ty), name.clone());
        name
    }

    /// The local variables of a frame: (name, object address), in the order
    /// the code object declares them. Unset locals are left out.
    pub fn locals(&self, frame: &Frame) -> Vec<(Arc<str>, u64)> {
        let l = &self.interp.layout;
        let code = &frame.code;
        let Some(base) = localsplus_of(l, frame.frame_addr) else {
            return Vec::new();
        };
        let count = if l.has_interpreter_frames() {
            code.varnames.len()
        } else {
            code.nlocals.min(code.varnames.len())
        };
        let mut out = Vec::new();
        for (i, name) in code.varnames.iter().take(count.min(1024)).enumerate() {
            // 3.11+: CO_FAST_LOCAL 0x20, CO_FAST_CELL 0x40, CO_FAST_FREE 0x80,
            // CO_FAST_HIDDEN 0x10 (3.12+ comprehension temporaries).
            let kind = code.kinds.get(i).copied().unwrap_or(0x20);
            if kind & 0x10 != 0 {
                continue;
            }
            let Some(Ok(mut obj)) = slot_addr(base, i).map(|a| self.mem.read_u64(a)) else {
                break;
            };
            if obj == 0 {
                continue;
            }
            if kind & 0xc0 != 0 {
                // A cell (once MAKE_CELL ran): its value is `ob_ref`.
                match self.cell_contents(obj) {
                    Some(v) => obj = v,
                    None => continue,
                }
            }
            out.push((name.clone(), obj));
        }
        // ≤3.10: cell variables follow the plain locals.
        if !l.has_interpreter_frames() {
            for (i, name) in code.cellvars.iter().take(1024).enumerate() {
                let Some(v) = slot_addr(base, code.nlocals.saturating_add(i))
                    .and_then(|slot| self.mem.read_u64(slot).ok())
                    .and_then(|cell| self.cell_contents(cell))
                else {
                    continue;
                };
                out.retain(|(n, _)| n != name);
                out.push((name.clone(), v));
            }
        }
        out
    }

    /// The object in fast local `index` of a frame (cells dereferenced).
    pub fn local_value(&self, frame: &Frame, index: usize) -> Option<u64> {
        let l = &self.interp.layout;
        let base = localsplus_of(l, frame.frame_addr)?;
        let obj = self.mem.read_u64(slot_addr(base, index)?).ok()?;
        let kind = frame.code.kinds.get(index).copied().unwrap_or(0x20);
        if kind & 0xc0 != 0 {
            return self.cell_contents(obj);
        }
        (obj != 0 && obj <= MAX_USER_ADDRESS).then_some(obj)
    }

    /// The value inside a cell object (`None` for an empty cell); an object
    /// that is not a cell is returned as it is.
    fn cell_contents(&self, obj: u64) -> Option<u64> {
        if obj == 0 || obj > MAX_USER_ADDRESS {
            return None;
        }
        let l = &self.interp.layout;
        match objects::type_name(&self.mem, l, obj) {
            Ok(t) if t == "cell" => self.mem.u64_at(obj, 16).ok().filter(|v| *v != 0),
            Ok(_) => Some(obj),
            Err(_) => None,
        }
    }

    /// Thread names from `threading._active` (ident → name). Empty when
    /// `threading` was never imported.
    pub fn thread_names(&self) -> HashMap<u64, String> {
        let mut out = HashMap::new();
        let _ = self.collect_thread_names(&mut out);
        out
    }

    fn collect_thread_names(&self, out: &mut HashMap<u64, String>) -> Result<(), CpythonError> {
        let l = &self.interp.layout;
        let m = &self.mem;
        let interp = m.u64_at(self.interp.runtime, l.runtime_interpreters_head)?;
        if interp == 0 {
            return Ok(());
        }
        let modules = m.u64_at(interp, l.interp_modules)?;
        let bad = |_| CpythonError::Corrupt("unreadable object");
        let Some(threading) = objects::dict_get_str(m, l, modules, "threading").map_err(bad)?
        else {
            return Ok(());
        };
        let md_dict = m.u64_at(threading, MODULE_DICT_OFFSET)?;
        let Some(active) = objects::dict_get_str(m, l, md_dict, "_active").map_err(bad)? else {
            return Ok(());
        };
        for (key, thread) in objects::dict_items(m, l, active, 4096).map_err(bad)? {
            let Some(ident) = objects::read_int(m, l, key).ok() else {
                continue;
            };
            let Ok(Some(name_obj)) = objects::get_attr(m, l, thread, "_name") else {
                continue;
            };
            if let Ok((name, len)) = objects::read_str_prefix(m, l, name_obj, 256) {
                out.insert(ident as u64, cut_name(name, len).to_string());
            }
        }
        Ok(())
    }

    /// ≤3.10 thread states carry only the pthread id; the OS thread id lives
    /// inside glibc's `struct pthread`. Its offset is learned once from the
    /// main thread (whose TID equals the PID), then checked per thread.
    fn native_id_from_pthread(&mut self, pthread: u64) -> Option<i32> {
        let off = self.pthread_tid_offset?;
        let tid = self.mem.i32_at(pthread, off).ok()?;
        (tid > 0).then_some(tid)
    }

    /// Learn the TID offset inside `struct pthread` (≤3.10 only). `tids` are
    /// the process's thread ids as the process itself sees them (inside a
    /// container, its PID namespace's ids: that is what glibc stores), and
    /// `main_tid` the id of its main thread (its PID in that namespace).
    pub fn learn_pthread_tid_offset(&mut self, tids: &[i32], main_tid: Option<i32>) {
        if self.interp.layout.tstate_native_thread_id.is_some() || tids.is_empty() {
            return;
        }
        let Ok(states) = self.thread_states() else {
            return;
        };
        let l = self.interp.layout.clone();
        let idents: Vec<u64> = states
            .iter()
            .filter_map(|(ts, _)| self.mem.u64_at(*ts, l.tstate_thread_id).ok())
            .filter(|p| *p != 0)
            .collect();
        // New thread states are pushed at the head: the main thread is last.
        let Some(main) = idents.last() else {
            return;
        };
        let Ok(block) = self.mem.read_vec(*main, 2048) else {
            return;
        };
        // The offset must give, for every thread, a distinct TID of the
        // process, and the main thread's id for the main thread. Small
        // namespace ids (1, 2, 3) occur in many fields: distinctness and the
        // main-thread check rule those out.
        for off in (0..block.len() - 4).step_by(4) {
            let v =
                i32::from_le_bytes([block[off], block[off + 1], block[off + 2], block[off + 3]]);
            if main_tid.is_some_and(|m| m != v) || !tids.contains(&v) {
                continue;
            }
            let mut values: Vec<i32> = Vec::with_capacity(idents.len());
            let all = idents
                .iter()
                .all(|p| match self.mem.i32_at(*p, off as u64) {
                    Ok(t) if tids.contains(&t) && !values.contains(&t) => {
                        values.push(t);
                        true
                    }
                    _ => false,
                });
            if all {
                self.pthread_tid_offset = Some(off as u64);
                return;
            }
        }
    }
}

/// The innermost frame pointer of the thread state at `tstate`, read through
/// any memory source (the torn-read check reads it again, uncached).
pub fn top_frame_of<M2: Memory>(
    mem: &M2,
    layout: &Layout,
    tstate: u64,
) -> Result<u64, CpythonError> {
    Ok(match layout.frame_root {
        FrameRoot::FrameObject { frame } => mem.u64_at(tstate, frame)?,
        FrameRoot::CFrame {
            cframe,
            current_frame,
        } => {
            let cf = mem.u64_at(tstate, cframe)?;
            if cf == 0 {
                0
            } else {
                mem.u64_at(cf, current_frame)?
            }
        }
        FrameRoot::Direct { current_frame } => mem.u64_at(tstate, current_frame)?,
    })
}

/// `FRAME_OWNED_BY_THREAD` (3.11+): a frame on the thread's data stack.
const FRAME_OWNED_BY_THREAD: u8 = 0;
/// `FRAME_OWNED_BY_GENERATOR` (3.11+): a generator's or coroutine's frame.
const FRAME_OWNED_BY_GENERATOR: u8 = 1;
/// Most data stack chunks followed per thread: the first is 16 KiB and each
/// new one at least as large, so 64 hold far deeper stacks than the depth cap.
const MAX_STACK_CHUNKS: usize = 64;
/// Largest data stack chunk believed (bytes).
const MAX_STACK_CHUNK_BYTES: u64 = 1 << 32;

/// The address ranges of one thread's data stack chunks, read lazily:
/// most walks need only the newest chunk (and its bounds are in the thread
/// state), older chunks are read only when a frame is not in the newer ones.
#[derive(Debug)]
struct DataStackBounds {
    layout: crate::layout::DataStack,
    tstate: u64,
    /// `[start, end)` of the chunks read so far, newest first.
    ranges: Vec<(u64, u64)>,
    /// The next (older) chunk to read; 0 when there is none.
    next: u64,
    started: bool,
}

impl DataStackBounds {
    fn new(layout: crate::layout::DataStack, tstate: u64) -> Self {
        DataStackBounds {
            layout,
            tstate,
            ranges: Vec::new(),
            next: 0,
            started: false,
        }
    }

    /// Whether `frame` lies in one of the thread's chunks. A thread state
    /// without a data stack (none allocated yet) accepts every frame: there
    /// is nothing to check against.
    fn contains<M: Memory>(&mut self, mem: &M, frame: u64) -> Result<bool, CpythonError> {
        if !self.started {
            self.started = true;
            let chunk = mem.u64_at(self.tstate, self.layout.chunk)?;
            if chunk == 0 {
                return Ok(true);
            }
            let (start, end) = self.chunk_range(mem, chunk)?;
            // The newest chunk ends at its limit, and is in use up to `top`.
            let limit = match self.layout.limit {
                Some(off) => mem.u64_at(self.tstate, off)?,
                None => end,
            };
            let end = if limit > start && limit <= end {
                limit
            } else {
                end
            };
            // The part in use ends at `top`, but a frame may lie above the
            // `top` read: on 3.11 and 3.12 the innermost frame pointer is on
            // the C stack, another page than the thread state, copied at
            // another instant while the stack moves. Frames are checked
            // against the whole chunk; `top` only has to be in it.
            if let Some(off) = self.layout.top {
                let top = mem.u64_at(self.tstate, off)?;
                if top < start || top > end {
                    return Err(CpythonError::Corrupt("data stack top outside its chunk"));
                }
            }
            self.ranges.push((start, end));
            self.next = mem.u64_at(chunk, self.layout.chunk_previous)?;
        }
        if self.ranges.is_empty() {
            return Ok(true);
        }
        if self.ranges.iter().any(|&(a, b)| (a..b).contains(&frame)) {
            return Ok(true);
        }
        while self.next != 0 {
            if self.ranges.len() >= MAX_STACK_CHUNKS {
                return Err(CpythonError::Corrupt("data stack chunk list too long"));
            }
            let chunk = self.next;
            let (start, end) = self.chunk_range(mem, chunk)?;
            self.ranges.push((start, end));
            self.next = mem.u64_at(chunk, self.layout.chunk_previous)?;
            if (start..end).contains(&frame) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `[data, chunk + size)` of the chunk at `chunk`.
    fn chunk_range<M: Memory>(&self, mem: &M, chunk: u64) -> Result<(u64, u64), CpythonError> {
        if !chunk.is_multiple_of(8) || chunk > MAX_USER_ADDRESS {
            return Err(CpythonError::Corrupt("implausible data stack chunk"));
        }
        let size = mem.u64_at(chunk, self.layout.chunk_size)?;
        let start = field(chunk, self.layout.chunk_data)?;
        match chunk.checked_add(size) {
            Some(end)
                if size <= MAX_STACK_CHUNK_BYTES && end >= start && end <= MAX_USER_ADDRESS =>
            {
                Ok((start, end))
            }
            _ => Err(CpythonError::Corrupt("implausible data stack chunk size")),
        }
    }
}

/// Where a frame's fast locals start (`None`: a garbage frame address).
fn localsplus_of(l: &Layout, frame: u64) -> Option<u64> {
    let off = match l.frame {
        FrameModel::FrameObject { localsplus, .. } => localsplus,
        FrameModel::Interpreter { localsplus, .. } => localsplus,
    };
    frame.checked_add(off)
}

/// The address of fast-local slot `index` (8-byte pointers) after `base`.
fn slot_addr(base: u64, index: usize) -> Option<u64> {
    u64::try_from(index)
        .ok()?
        .checked_mul(8)
        .and_then(|off| base.checked_add(off))
}

/// `module.Class` → `Class`.
fn short_type_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

impl<M: Memory> StackReader<M> {
    /// A short, safe rendering of an object for `dump --locals`.
    pub fn render(&self, obj: u64) -> String {
        objects::render_value(&self.mem, &self.interp.layout, obj, 200)
    }
}
