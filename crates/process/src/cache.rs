//! A per-sample page cache over a memory source.
//!
//! A stack walk touches the same few pages again and again (frames packed in
//! a datastack chunk, a thread state, the interpreter). Reading them once per
//! sample turns dozens of small `process_vm_readv` calls into a handful, and
//! gives the walk one consistent copy of each page.
//!
//! The snapshot taken at the start of each sample copies the pages the walks
//! of the last samples used. Pages of a thread's frames are copied whole: a
//! stack that grows writes its new frames next to the ones read, and a read
//! outside the snapshot makes a moving stack torn (copying only the spans
//! read of frame pages measured 3.6 % torn thread samples on churn.py
//! against 0.6 % for whole pages). The walker says which pages hold frames
//! ([`Memory::keep_whole`]). Other pages (thread and interpreter states, a
//! request's dict and strings) are copied only in the span read, in whole
//! cache lines: their fields do not move, and copying a quarter of the
//! bytes is a fifth of the snapshot's cost.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use crate::error::MemoryError;
use crate::memory::Memory;

/// Page size of the cache (and of the kernel: a page is mapped or not).
pub const PAGE: u64 = 4096;
/// Pages kept before the cache resets itself (bounds memory within a sample).
const MAX_PAGES: usize = 256;
/// Pages of the last samples fetched ahead of the next one.
const MAX_PREFETCH: usize = 64;
/// A page used by any of the last this many samples is fetched ahead: a
/// stack that moves up and down (recursion, request handling) then finds
/// the pages of its deeper moments in the snapshot instead of fetching them
/// while the target runs, which risks a torn read.
const KEEP_WARM_SAMPLES: u8 = 8;
/// Pages only transient reads used (objects a sample looks at after its
/// walk: a request's dict and strings, new with every request) are fetched
/// ahead only for the sample right after one that used them.
const KEEP_WARM_TRANSIENT: u8 = 1;
/// Spans are copied in whole cache lines.
const LINE: u32 = 64;
/// Room copied above a page's span (the rest of a string or of a dict's
/// entries, fields read only sometimes).
const GROWTH_ROOM: u32 = 256;

/// Counters of a [`PageCache`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served.
    pub reads: u64,
    /// Pages fetched from the target (one syscall each).
    pub page_fetches: u64,
    /// Reads that went straight to the target (unmapped neighbours, large reads).
    pub direct_reads: u64,
    /// Pages fetched ahead, in vectored reads (counted in `page_fetches` as
    /// one fetch per vectored read).
    pub prefetched: u64,
    /// Bytes copied by those vectored reads.
    pub prefetched_bytes: u64,
    /// Of `page_fetches`, those for transient reads.
    pub transient_fetches: u64,
    /// Pages fetched for settled reads (not counted in `page_fetches`: they
    /// hold objects that do not change under a walk).
    pub settled_fetches: u64,
}

/// A cached page.
#[derive(Debug)]
struct CachedPage {
    addr: u64,
    buf: Box<[u8]>,
    /// The bytes of `buf` that hold the page's contents: `[loaded.0, loaded.1)`.
    loaded: (u32, u32),
    /// What read it this sample: walks (ordinary reads), transient reads.
    used: Cell<bool>,
    used_transient: Cell<bool>,
    /// Samples since it was last used.
    age: u8,
    /// Whether any ordinary read used it while it stayed warm (it is kept
    /// warm longer than a page only transient reads use).
    walked: bool,
    /// The bytes read while it stayed warm: the next snapshot copies these.
    span: Cell<(u32, u32)>,
    /// It holds frames ([`Memory::keep_whole`]), or a read fell outside the
    /// span copied: the page is copied whole while it stays warm.
    whole: bool,
}

impl CachedPage {
    #[inline]
    fn touch(&self, off: u32, end: u32, transient: bool) {
        if transient {
            self.used_transient.set(true);
        } else {
            self.used.set(true);
        }
        let (lo, hi) = self.span.get();
        self.span.set((lo.min(off), hi.max(end)));
    }
}

/// A page to fetch ahead at the next snapshot (see [`CachedPage`]).
#[derive(Debug, Clone, Copy)]
struct WarmPage {
    addr: u64,
    age: u8,
    walked: bool,
    span: (u32, u32),
    whole: bool,
}

/// The span of a transient page to copy ahead: whole lines, with room above.
fn snapshot_span((lo, hi): (u32, u32)) -> (u32, u32) {
    let lo = lo / LINE * LINE;
    let hi = (hi.saturating_add(GROWTH_ROOM).div_ceil(LINE) * LINE).min(PAGE as u32);
    (lo.min(hi), hi)
}

/// Caches pages of `M` until [`PageCache::clear`] is called.
#[derive(Debug)]
pub struct PageCache<M: Memory> {
    inner: M,
    /// A sample touches a handful of pages: a linear scan beats hashing.
    pages: RefCell<Vec<CachedPage>>,
    /// Pages fetched this sample for settled reads only. Kept apart: a
    /// walk's ordinary read of one of them would see the target later than
    /// the snapshot without counting as a fetch.
    settled: RefCell<Vec<(u64, Box<[u8]>)>>,
    /// Page buffers kept for reuse, so a sample allocates nothing.
    spare: RefCell<Vec<Box<[u8]>>>,
    reads: Cell<u64>,
    page_fetches: Cell<u64>,
    direct_reads: Cell<u64>,
    prefetched: Cell<u64>,
    prefetched_bytes: Cell<u64>,
    settled_fetches: Cell<u64>,
    transient_fetches: Cell<u64>,
    snapshot_took: Cell<Duration>,
}

impl<M: Memory> PageCache<M> {
    /// Wrap a memory source.
    pub fn new(inner: M) -> Self {
        PageCache {
            inner,
            pages: RefCell::new(Vec::new()),
            settled: RefCell::new(Vec::new()),
            spare: RefCell::new(Vec::new()),
            reads: Cell::new(0),
            page_fetches: Cell::new(0),
            direct_reads: Cell::new(0),
            prefetched: Cell::new(0),
            prefetched_bytes: Cell::new(0),
            settled_fetches: Cell::new(0),
            transient_fetches: Cell::new(0),
            snapshot_took: Cell::new(Duration::ZERO),
        }
    }

    fn spare_buf(&self) -> Box<[u8]> {
        self.spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; PAGE as usize].into_boxed_slice())
    }

    /// Forget every cached page: call at the start of each sample. The
    /// pages the last few samples used are fetched again at once, in one
    /// vectored read: the next walk most likely needs the same ones, and
    /// reads them from one snapshot.
    pub fn clear(&self) {
        self.snapshot_took.set(Duration::ZERO);
        let mut pages = self.pages.borrow_mut();
        let mut hot: Vec<WarmPage> = pages
            .iter()
            .filter_map(|p| {
                let walked = p.walked || p.used.get();
                let age = if p.used.get() || p.used_transient.get() {
                    0
                } else {
                    p.age.saturating_add(1)
                };
                let keep = if walked {
                    KEEP_WARM_SAMPLES
                } else {
                    KEEP_WARM_TRANSIENT
                };
                (age < keep).then(|| WarmPage {
                    addr: p.addr,
                    age,
                    walked,
                    span: p.span.get(),
                    whole: p.whole,
                })
            })
            .collect();
        // Pages stay in the order the walks first needed them (thread
        // state, innermost frames, then outer ones): the kernel copies them
        // in that order, so the frames that change fastest are copied
        // closest in time to the pointer to the innermost frame. (Sorting
        // them by address measured 20 times more undetected torn stacks.)
        // If there are too many, the most recently used are kept.
        hot.sort_by_key(|h| h.age);
        hot.truncate(MAX_PREFETCH);
        {
            let mut spare = self.spare.borrow_mut();
            spare.extend(pages.drain(..).map(|p| p.buf));
            spare.extend(self.settled.borrow_mut().drain(..).map(|(_, b)| b));
        }
        if hot.is_empty() {
            return;
        }
        let mut bufs: Vec<Box<[u8]>> = hot.iter().map(|_| self.spare_buf()).collect();
        let spans: Vec<(u32, u32)> = hot
            .iter()
            .map(|h| {
                if h.whole {
                    (0, PAGE as u32)
                } else {
                    snapshot_span(h.span)
                }
            })
            .collect();
        let mut reqs: Vec<(u64, &mut [u8])> = hot
            .iter()
            .zip(bufs.iter_mut())
            .zip(&spans)
            .map(|((h, b), &(lo, hi))| (h.addr + u64::from(lo), &mut b[lo as usize..hi as usize]))
            .collect();
        // A page unmapped since is skipped; the rest are still read.
        let mut read_ok = vec![false; reqs.len()];
        let started = Instant::now();
        let calls = self.inner.read_each(&mut reqs, &mut read_ok);
        self.snapshot_took.set(started.elapsed());
        let (mut pages_read, mut bytes) = (0u64, 0u64);
        for ((_, b), _) in reqs.iter().zip(&read_ok).filter(|(_, ok)| **ok) {
            pages_read += 1;
            bytes += b.len() as u64;
        }
        self.page_fetches
            .set(self.page_fetches.get() + calls as u64);
        self.prefetched.set(self.prefetched.get() + pages_read);
        self.prefetched_bytes
            .set(self.prefetched_bytes.get() + bytes);
        drop(reqs);
        let mut spare = self.spare.borrow_mut();
        for (((h, buf), ok), loaded) in hot.into_iter().zip(bufs).zip(read_ok).zip(spans) {
            let WarmPage {
                addr,
                age,
                walked,
                span,
                whole,
            } = h;
            if ok {
                pages.push(CachedPage {
                    addr,
                    buf,
                    loaded,
                    used: Cell::new(false),
                    used_transient: Cell::new(false),
                    age,
                    walked,
                    span: Cell::new(span),
                    whole,
                });
            } else {
                spare.push(buf);
            }
        }
        spare.truncate(MAX_PAGES);
    }

    /// The uncached source, for reads that must see the target's present
    /// state (torn-read checks).
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// How long the last snapshot (the vectored read in [`PageCache::clear`])
    /// took. The kernel copies its pages one after another while the target
    /// runs: a snapshot that took long (pyrometer was preempted in the middle
    /// of it, on a busy machine) may mix moments, and is no proof of
    /// consistency.
    pub fn snapshot_duration(&self) -> Duration {
        self.snapshot_took.get()
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            reads: self.reads.get(),
            page_fetches: self.page_fetches.get(),
            direct_reads: self.direct_reads.get(),
            prefetched: self.prefetched.get(),
            prefetched_bytes: self.prefetched_bytes.get(),
            settled_fetches: self.settled_fetches.get(),
            transient_fetches: self.transient_fetches.get(),
        }
    }

    /// One page from the target into a spare buffer.
    fn fetch(&self, page: u64) -> Result<Box<[u8]>, MemoryError> {
        let mut buf = self.spare_buf();
        if let Err(e) = self.inner.read(page, &mut buf) {
            self.spare.borrow_mut().push(buf);
            return Err(e);
        }
        Ok(buf)
    }

    /// Serve `[off, end)` of `page` (an ordinary or a transient read): from
    /// the snapshot when it holds those bytes, else from the whole page
    /// fetched now (a miss).
    #[inline]
    fn with_page<R>(
        &self,
        page: u64,
        (off, end): (u32, u32),
        transient: bool,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, MemoryError> {
        {
            let pages = self.pages.borrow();
            if let Some(p) = pages.iter().find(|p| p.addr == page) {
                if p.loaded.0 <= off && end <= p.loaded.1 {
                    p.touch(off, end, transient);
                    return Ok(f(&p.buf));
                }
            }
        }
        let buf = self.fetch(page)?;
        self.page_fetches.set(self.page_fetches.get() + 1);
        if transient {
            self.transient_fetches.set(self.transient_fetches.get() + 1);
        }
        let r = f(&buf);
        let mut pages = self.pages.borrow_mut();
        if let Some(p) = pages.iter_mut().find(|p| p.addr == page) {
            // Only part of it was in the snapshot: it is whole now, and in
            // the next snapshots.
            let old = std::mem::replace(&mut p.buf, buf);
            self.spare.borrow_mut().push(old);
            p.loaded = (0, PAGE as u32);
            p.whole = true;
            p.touch(off, end, transient);
            return Ok(r);
        }
        if pages.len() >= MAX_PAGES {
            let mut spare = self.spare.borrow_mut();
            spare.extend(pages.drain(..).map(|p| p.buf));
            spare.truncate(MAX_PAGES);
        }
        let fresh = CachedPage {
            addr: page,
            buf,
            loaded: (0, PAGE as u32),
            used: Cell::new(false),
            used_transient: Cell::new(false),
            age: 0,
            walked: false,
            span: Cell::new((off, end)),
            whole: false,
        };
        fresh.touch(off, end, transient);
        pages.push(fresh);
        Ok(r)
    }

    /// A page for a settled read: from the snapshot if it holds the bytes
    /// (without marking it used), else from this sample's settled pages,
    /// else fetched into them.
    fn with_settled_page<R>(
        &self,
        page: u64,
        (off, end): (u32, u32),
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, MemoryError> {
        if let Some(p) = self
            .pages
            .borrow()
            .iter()
            .find(|p| p.addr == page && p.loaded.0 <= off && end <= p.loaded.1)
        {
            return Ok(f(&p.buf));
        }
        if let Some((_, p)) = self.settled.borrow().iter().find(|(a, _)| *a == page) {
            return Ok(f(p));
        }
        let buf = self.fetch(page)?;
        self.settled_fetches.set(self.settled_fetches.get() + 1);
        let r = f(&buf);
        let mut settled = self.settled.borrow_mut();
        if settled.len() >= MAX_PAGES {
            let mut spare = self.spare.borrow_mut();
            spare.extend(settled.drain(..).map(|(_, b)| b));
            spare.truncate(MAX_PAGES);
        }
        settled.push((page, buf));
        Ok(r)
    }

    /// Read `buf` at `addr` page by page through `page_of`, which is given
    /// the page, the byte range wanted in it, and where to copy it.
    fn read_pages(
        &self,
        addr: u64,
        buf: &mut [u8],
        page_of: impl Fn(u64, (u32, u32), &mut dyn FnMut(&[u8])) -> Result<(), MemoryError>,
    ) -> Result<(), MemoryError> {
        self.reads.set(self.reads.get() + 1);
        let len = buf.len() as u64;
        let Some(end) = addr.checked_add(len) else {
            return Err(MemoryError::Unmapped {
                addr,
                len: buf.len(),
            });
        };
        // Large reads (line tables, big strings) go straight through.
        if len > 2 * PAGE {
            self.direct_reads.set(self.direct_reads.get() + 1);
            return self.inner.read(addr, buf);
        }
        let mut cur = addr;
        while cur < end {
            let page = cur & !(PAGE - 1);
            let off = (cur - page) as usize;
            // Saturating: the last page of the address space ends at 2^64.
            let n = (page.saturating_add(PAGE).min(end) - cur) as usize;
            let dst_off = (cur - addr) as usize;
            let dst = &mut buf[dst_off..dst_off + n];
            let range = (off as u32, (off + n) as u32);
            match page_of(page, range, &mut |p| dst.copy_from_slice(&p[off..off + n])) {
                Ok(()) => {}
                Err(MemoryError::Unmapped { .. }) => {
                    // The page may be only partly readable (it is not, on
                    // Linux, but other sources may be byte-granular).
                    self.direct_reads.set(self.direct_reads.get() + 1);
                    self.inner.read(cur, dst)?;
                }
                Err(e) => return Err(e),
            }
            cur += n as u64;
        }
        Ok(())
    }
}

impl<M: Memory> Memory for PageCache<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_pages(addr, buf, |page, range, f| {
            self.with_page(page, range, false, f)
        })
    }

    fn read_settled(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_pages(addr, buf, |page, range, f| {
            self.with_settled_page(page, range, f)
        })
    }

    fn read_transient(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_pages(addr, buf, |page, range, f| {
            self.with_page(page, range, true, f)
        })
    }

    fn keep_whole(&self, addr: u64) {
        let page = addr & !(PAGE - 1);
        if let Some(p) = self.pages.borrow_mut().iter_mut().find(|p| p.addr == page) {
            p.whole = true;
        }
    }

    /// Ranges within one page that this sample's snapshot or settled pages
    /// hold are served from them; the others are read from the target with
    /// [`Memory::read_each`] (one vectored read, more only past ranges it
    /// cannot read; each counted as a settled fetch), not cached.
    fn read_each_settled(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        let held = |addr: u64, len: usize| -> bool {
            let page = addr & !(PAGE - 1);
            let off = (addr - page) as u32;
            let Some(end) = u32::try_from(len)
                .ok()
                .and_then(|len| off.checked_add(len))
                .filter(|e| *e <= PAGE as u32)
            else {
                return false;
            };
            self.pages
                .borrow()
                .iter()
                .any(|p| p.addr == page && p.loaded.0 <= off && end <= p.loaded.1)
                || self.settled.borrow().iter().any(|(a, _)| *a == page)
        };
        read.fill(false);
        // Served ones first, then the rest from the target.
        let mut missing: Vec<usize> = Vec::new();
        for (i, ((addr, buf), ok)) in reqs.iter_mut().zip(read.iter_mut()).enumerate() {
            *ok = held(*addr, buf.len()) && self.read_settled(*addr, buf).is_ok();
            if !*ok {
                missing.push(i);
            }
        }
        if missing.is_empty() {
            return 0;
        }
        let mut rest: Vec<(u64, &mut [u8])> = Vec::with_capacity(missing.len());
        let mut it = missing.iter().peekable();
        for (i, (addr, buf)) in reqs.iter_mut().enumerate() {
            if it.peek() == Some(&&i) {
                it.next();
                rest.push((*addr, &mut buf[..]));
            }
        }
        let mut rest_read = vec![false; rest.len()];
        let calls = self.inner.read_each(&mut rest, &mut rest_read);
        self.settled_fetches
            .set(self.settled_fetches.get() + calls as u64);
        for (&i, ok) in missing.iter().zip(rest_read) {
            if let Some(r) = read.get_mut(i) {
                *r = ok;
            }
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    /// Found by the walker fuzz (crates/cpython/tests/fuzz_walker.rs): a
    /// garbage pointer into the last page overflowed `page + PAGE`.
    #[test]
    fn reads_in_the_last_page_of_the_address_space() {
        use super::*;
        use crate::memory::ImageMemory;
        let last = u64::MAX - (PAGE - 1);
        let mut img = ImageMemory::new();
        img.insert(last, (0..PAGE).map(|i| i as u8).collect());
        let cache = PageCache::new(&img);
        let mut buf = [0u8; 8];
        cache.read(u64::MAX - 15, &mut buf).unwrap();
        assert_eq!(buf, [240, 241, 242, 243, 244, 245, 246, 247]);
        // Up to the last byte but one (an end of 2^64 does not fit a u64).
        cache.read(u64::MAX - 8, &mut buf).unwrap();
        assert_eq!(buf[7], 254);
        assert!(cache.read(u64::MAX - 3, &mut buf).is_err());
        assert!(PageCache::new(ImageMemory::new())
            .read(u64::MAX - 7, &mut buf)
            .is_err());
    }

    use super::*;
    use crate::memory::{ImageMemory, Settled};

    #[test]
    fn serves_reads_across_pages_from_few_fetches() {
        let mut img = ImageMemory::new();
        let data: Vec<u8> = (0..3 * PAGE as usize).map(|i| (i % 251) as u8).collect();
        img.insert(0x10000, data.clone());
        let cache = PageCache::new(img);
        let mut buf = [0u8; 100];
        cache.read(0x10000 + PAGE - 50, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[PAGE as usize - 50..PAGE as usize + 50]);
        for i in 0..20 {
            cache.read_u64(0x10000 + i * 64).unwrap();
        }
        assert_eq!(cache.stats().page_fetches, 2);
        // Clearing fetches the two pages again in one vectored read.
        cache.clear();
        assert_eq!(cache.stats().page_fetches, 3);
        assert_eq!(cache.stats().prefetched, 2);
        cache.read_u64(0x10000).unwrap();
        cache.read_u64(0x10000 + 2 * PAGE).unwrap();
        assert_eq!(cache.stats().page_fetches, 4);
    }

    /// Settled reads (code objects) fetched during a walk are not misses of
    /// the snapshot (a miss makes a moving stack torn), are served again
    /// within the sample, and are not fetched ahead for the next one; an
    /// ordinary read of such a page still counts as a miss.
    #[test]
    fn settled_reads_are_not_snapshot_misses_nor_kept_warm() {
        let mut img = ImageMemory::new();
        img.insert(0x10000, (0..2 * PAGE).map(|i| (i % 249) as u8).collect());
        let cache = PageCache::new(img);
        cache.read_u64(0x10000).unwrap();
        cache.clear();
        let fetches = cache.stats().page_fetches;
        // The frame page comes from the snapshot; the code page is settled.
        cache.read_u64(0x10000).unwrap();
        let code = 0x10000 + PAGE + 8;
        let expected =
            u64::from_le_bytes(std::array::from_fn(|i| ((PAGE + 8 + i as u64) % 249) as u8));
        assert_eq!(Settled(&cache).read_u64(code).unwrap(), expected);
        assert_ne!(Settled(&cache).read_u64(code + 8).unwrap(), 0);
        assert_eq!(cache.stats().page_fetches, fetches);
        assert_eq!(cache.stats().settled_fetches, 1);
        // A walk reading that page the ordinary way sees a miss.
        assert_eq!(cache.read_u64(code).unwrap(), expected);
        assert_eq!(cache.stats().page_fetches, fetches + 1);
        // Settled pages are not part of the next snapshot.
        let cache = PageCache::new(&cache.inner);
        Settled(&cache).read_u64(code).unwrap();
        cache.clear();
        assert_eq!(cache.stats().prefetched, 0);
        assert_eq!(cache.stats().page_fetches, 0);
        Settled(&cache).read_u64(code).unwrap();
        assert_eq!(cache.stats().settled_fetches, 2);
    }

    #[test]
    fn keeps_recently_used_pages_warm_and_skips_unmapped_ones() {
        let mut img = ImageMemory::new();
        img.insert(0x10000, vec![1u8; 4 * PAGE as usize]);
        let cache = PageCache::new(img);
        // One sample uses pages 0 and 2, the next ones only page 0: page 2
        // is in the snapshot of the next KEEP_WARM_SAMPLES samples.
        cache.read_u64(0x10000).unwrap();
        cache.read_u64(0x10000 + 2 * PAGE).unwrap();
        for _ in 0..KEEP_WARM_SAMPLES {
            cache.clear();
            let fetches = cache.stats().page_fetches;
            cache.read_u64(0x10000).unwrap();
            // Page 2 is still in the snapshot: no fetch while walking.
            cache.read_u64(0x10000 + 2 * PAGE).unwrap();
            assert_eq!(cache.stats().page_fetches, fetches);
            // ...but reading it counts as a use: forget that.
            cache.pages.borrow().iter().for_each(|p| {
                if p.addr == 0x10000 + 2 * PAGE {
                    p.used.set(false)
                }
            });
        }
        cache.clear();
        let fetches = cache.stats().page_fetches;
        cache.read_u64(0x10000 + 2 * PAGE).unwrap();
        assert_eq!(cache.stats().page_fetches, fetches + 1, "page 2 went cold");

        // A warm page that is unmapped by the next sample does not keep the
        // pages after it out of the snapshot.
        let mut img = ImageMemory::new();
        img.insert(0x10000, vec![1u8; PAGE as usize]);
        img.insert(0x30000, vec![3u8; PAGE as usize]);
        let cache = PageCache::new(img);
        cache.read_u64(0x10000).unwrap();
        cache.read_u64(0x30000).unwrap();
        cache.pages.borrow_mut().insert(
            1,
            CachedPage {
                addr: 0x20000,
                buf: vec![0u8; PAGE as usize].into_boxed_slice(),
                loaded: (0, PAGE as u32),
                used: Cell::new(true),
                used_transient: Cell::new(false),
                age: 0,
                walked: true,
                span: Cell::new((0, 8)),
                whole: false,
            },
        );
        let fetches = cache.stats().page_fetches;
        cache.clear();
        assert_eq!(cache.stats().prefetched, 2);
        // Both read only at their start: copied in that span.
        let (lo, hi) = snapshot_span((0, 8));
        assert_eq!(cache.stats().prefetched_bytes, 2 * u64::from(hi - lo));
        // One vectored read, and one more for the page after the unmapped one.
        assert_eq!(cache.stats().page_fetches, fetches + 2);
        let fetches = cache.stats().page_fetches;
        assert_eq!(cache.read_u8(0x30000).unwrap(), 3);
        assert_eq!(cache.stats().page_fetches, fetches);
    }

    #[test]
    fn byte_granular_sources_still_read() {
        let mut img = ImageMemory::new();
        img.insert(0x10010, vec![7u8; 32]);
        let cache = PageCache::new(img);
        assert_eq!(cache.read_u64(0x10018).unwrap(), 0x0707070707070707);
        assert!(cache.read_u64(0x10000).is_err());
    }

    /// Pages said to hold frames are copied whole; other pages, walked or
    /// transient, only in the span read (whole lines, with room above); a
    /// read outside a span fetches the page, which is then copied whole.
    #[test]
    fn frame_pages_are_copied_whole_and_others_in_their_span() {
        let mut img = ImageMemory::new();
        img.insert(0x10000, (0..3 * PAGE).map(|i| (i % 253) as u8).collect());
        let cache = PageCache::new(&img);
        let transient = crate::memory::Transient(&cache);
        let frames = 0x10000;
        let state = 0x10000 + PAGE;
        let request = 0x10000 + 2 * PAGE;
        cache.read_u64(frames + 100).unwrap();
        cache.keep_whole(frames + 100);
        cache.read_u64(state + 1000).unwrap();
        transient.read_u64(request + 3000).unwrap();
        cache.clear();
        let s = cache.stats();
        assert_eq!(s.prefetched, 3);
        let state_span = snapshot_span((1000, 1008));
        let request_span = snapshot_span((3000, 3008));
        assert_eq!(request_span.0, 2944);
        assert_eq!(
            s.prefetched_bytes,
            PAGE + u64::from(state_span.1 - state_span.0)
                + u64::from(request_span.1 - request_span.0)
        );
        // The frame page: anywhere in it from the snapshot.
        let fetches = s.page_fetches;
        assert_eq!(cache.read_u8(frames + 4000).unwrap(), (4000 % 253) as u8);
        // The state page: inside its span from the snapshot.
        assert_eq!(
            cache.read_u8(state + 1100).unwrap(),
            ((PAGE + 1100) % 253) as u8
        );
        // The transient page: inside its span from the snapshot...
        assert_eq!(
            transient.read_u8(request + 2950).unwrap(),
            ((2 * PAGE + 2950) % 253) as u8
        );
        assert_eq!(cache.stats().page_fetches, fetches);
        // ...outside it, a miss that brings the whole page.
        assert_eq!(
            transient.read_u8(request + 10).unwrap(),
            ((2 * PAGE + 10) % 253) as u8
        );
        assert_eq!(cache.stats().page_fetches, fetches + 1);
        assert_eq!(cache.stats().transient_fetches, 2);
        // From then on it is copied whole; the frame page stays whole; the
        // state page's span grew by the byte read above it.
        cache.clear();
        let state_span = snapshot_span((1000, 1101));
        assert_eq!(
            cache.stats().prefetched_bytes - s.prefetched_bytes,
            2 * PAGE + u64::from(state_span.1 - state_span.0)
        );
    }

    /// Pages only transient reads used are fetched ahead for one sample;
    /// pages a walk used, for several.
    #[test]
    fn transient_pages_go_cold_after_one_sample() {
        let mut img = ImageMemory::new();
        img.insert(0x10000, vec![5u8; 2 * PAGE as usize]);
        let cache = PageCache::new(&img);
        let walk_page = 0x10000;
        let request_page = 0x10000 + PAGE;
        cache.read_u64(walk_page).unwrap();
        crate::memory::Transient(&cache)
            .read_u64(request_page)
            .unwrap();
        assert_eq!(cache.stats().transient_fetches, 1);
        cache.clear();
        assert_eq!(
            cache.stats().prefetched,
            2,
            "both fetched for the next sample"
        );
        // Neither is used in this sample.
        cache.clear();
        assert_eq!(
            cache.stats().prefetched,
            2 + 1,
            "only the walk's page stays warm"
        );
        let fetches = cache.stats().page_fetches;
        cache.read_u64(walk_page).unwrap();
        assert_eq!(cache.stats().page_fetches, fetches);
    }

    /// Settled ranges are served from the snapshot where it holds them and
    /// read in one call otherwise, without counting as snapshot misses.
    #[test]
    fn settled_batches_are_one_read_and_no_miss() {
        let mut img = ImageMemory::new();
        img.insert(0x10000, (0..3 * PAGE).map(|i| (i % 241) as u8).collect());
        let cache = PageCache::new(&img);
        cache.read_u64(0x10000).unwrap();
        cache.clear();
        let before = cache.stats();
        let (mut a, mut b, mut c) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let mut reqs: Vec<(u64, &mut [u8])> = vec![
            (0x10000 + 8, &mut a),
            (0x10000 + PAGE + 16, &mut b),
            (0x10000 + 2 * PAGE + 24, &mut c),
        ];
        let mut read = [false; 3];
        assert_eq!(cache.read_each_settled(&mut reqs, &mut read), 1);
        assert_eq!(read, [true; 3]);
        drop(reqs);
        assert_eq!(a[0], 8);
        assert_eq!(b[0], ((PAGE + 16) % 241) as u8);
        assert_eq!(c[0], ((2 * PAGE + 24) % 241) as u8);
        let after = cache.stats();
        assert_eq!(after.page_fetches, before.page_fetches);
        assert_eq!(after.settled_fetches, before.settled_fetches + 1);
        // A range it cannot read is skipped, the ones after it still read
        // (one more call); one the snapshot holds costs none.
        let (mut d, mut e, mut f) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let mut reqs: Vec<(u64, &mut [u8])> = vec![
            (0x10000, &mut d),
            (0x90000, &mut e),
            (0x10000 + PAGE + 40, &mut f),
        ];
        let mut read = [false; 3];
        assert_eq!(cache.read_each_settled(&mut reqs, &mut read), 2);
        drop(reqs);
        assert_eq!(read, [true, false, true]);
        assert_eq!(f[0], ((PAGE + 40) % 241) as u8);
        assert_eq!(cache.stats().settled_fetches, after.settled_fetches + 2);
        assert_eq!(cache.stats().page_fetches, before.page_fetches);
    }
}
