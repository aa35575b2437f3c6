//! Reading another address space. Everything read through [`Memory`] is
//! untrusted: callers bound every length and loop.

use crate::error::MemoryError;

/// An address space that can be read: a live process, a core file, or a
/// synthetic image built by a test. The interpreter model is generic over it.
pub trait Memory {
    /// Fill `buf` with the bytes at `addr`. A partial read is an error.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Read several ranges; return how many of them, from the first, were
    /// read in full (a source may stop at the first that fails). Live
    /// processes do this in one system call.
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        let mut n = 0;
        for (addr, buf) in reqs.iter_mut() {
            if self.read(*addr, buf).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    /// Read every range of `reqs` that can be read: `read[i]` says whether
    /// range `i` was read in full. Returns how many [`Memory::read_many`]
    /// calls that took: one (one `process_vm_readv` on a live process) when
    /// every range is readable; a range that is not (a page unmapped since)
    /// is skipped and the ones after it read in one more call each time.
    /// Ranges beyond `read.len()` are not read.
    fn read_each(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        let len = reqs.len().min(read.len());
        read.fill(false);
        let mut calls = 0;
        let mut start = 0;
        while let Some(rest) = reqs.get_mut(start..len) {
            if rest.is_empty() {
                break;
            }
            // A source stops at the first range it cannot read (and reports
            // how many it read before it, never more than it was given).
            let n = self.read_many(rest).min(rest.len());
            calls += 1;
            for ok in read.iter_mut().skip(start).take(n) {
                *ok = true;
            }
            start += n + 1;
        }
        calls
    }

    /// Fill `buf` with bytes that do not change while the target runs
    /// (code objects, their strings and line tables): a snapshotting source
    /// may fetch them late without that making the walk inconsistent, and
    /// need not keep them for the next snapshot. Defaults to [`Memory::read`].
    fn read_settled(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read(addr, buf)
    }

    /// [`Memory::read_each`] of settled bytes: a snapshotting source serves
    /// what its snapshot holds and reads the rest in one go, without making
    /// the walk torn. Returns how many reads of the source that took (a
    /// vectored read counting one); the default reads each range on its own
    /// with [`Memory::read_settled`]. Ranges beyond `read.len()` are not read.
    fn read_each_settled(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        read.fill(false);
        let mut calls = 0;
        for ((addr, buf), ok) in reqs.iter_mut().zip(read.iter_mut()) {
            *ok = self.read_settled(*addr, buf).is_ok();
            calls += 1;
        }
        calls
    }

    /// Fill `buf` with bytes of objects a sample reads after its walk (a
    /// web request's dict and strings): read like [`Memory::read`], but a
    /// snapshotting source need not keep them for long, as they are new with
    /// every request. Defaults to [`Memory::read`].
    fn read_transient(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read(addr, buf)
    }

    /// `addr` lies in memory that moves between samples (a thread's frames,
    /// pushed and popped next to each other): a snapshotting source copies
    /// its page whole next time, not only the bytes read. Nothing for others.
    fn keep_whole(&self, _addr: u64) {}

    /// Read a little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Read a little-endian `i64`.
    fn read_i64(&self, addr: u64) -> Result<i64, MemoryError> {
        Ok(self.read_u64(addr)? as i64)
    }
    /// Read a little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Read a little-endian `i32`.
    fn read_i32(&self, addr: u64) -> Result<i32, MemoryError> {
        Ok(self.read_u32(addr)? as i32)
    }
    /// Read one byte.
    fn read_u8(&self, addr: u64) -> Result<u8, MemoryError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }
    /// Read `len` bytes into a new vector; `len` must already be bounded by
    /// the caller.
    fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(addr, buf)
    }
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        (**self).read_many(reqs)
    }
    fn read_each(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        (**self).read_each(reqs, read)
    }
    fn read_settled(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_settled(addr, buf)
    }
    fn read_transient(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_transient(addr, buf)
    }
    fn read_each_settled(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        (**self).read_each_settled(reqs, read)
    }
    fn keep_whole(&self, addr: u64) {
        (**self).keep_whole(addr)
    }
}

/// A view of `M` whose every read is [`Memory::read_settled`]: hand it to
/// readers of objects that do not change under a walk.
#[derive(Debug, Clone, Copy)]
pub struct Settled<M>(pub M);

impl<M: Memory> Memory for Settled<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read_settled(addr, buf)
    }
    fn read_each(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        self.0.read_each_settled(reqs, read)
    }
    fn read_each_settled(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        self.0.read_each_settled(reqs, read)
    }
    fn read_settled(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read_settled(addr, buf)
    }
}

/// A view of `M` whose every read is [`Memory::read_transient`]: hand it to
/// readers of per-request objects.
#[derive(Debug, Clone, Copy)]
pub struct Transient<M>(pub M);

impl<M: Memory> Memory for Transient<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read_transient(addr, buf)
    }
    fn read_each_settled(&self, reqs: &mut [(u64, &mut [u8])], read: &mut [bool]) -> usize {
        self.0.read_each_settled(reqs, read)
    }
    fn read_settled(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read_settled(addr, buf)
    }
    fn read_transient(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0.read_transient(addr, buf)
    }
}

/// A sparse in-memory address space, for tests and synthetic images of
/// interpreters that cannot run on this machine.
#[derive(Debug, Default, Clone)]
pub struct ImageMemory {
    regions: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl ImageMemory {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }
    /// Place `bytes` at `addr` (regions must not overlap).
    pub fn insert(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.insert(addr, bytes);
    }
    /// Write into an existing region.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        let (start, region) = self
            .regions
            .range_mut(..=addr)
            .next_back()
            .expect("write outside any region");
        let off = (addr - *start) as usize;
        region[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

impl Memory for ImageMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let fail = || MemoryError::Unmapped {
            addr,
            len: buf.len(),
        };
        let (start, region) = self.regions.range(..=addr).next_back().ok_or_else(fail)?;
        let off = (addr - start) as usize;
        let end = off.checked_add(buf.len()).ok_or_else(fail)?;
        let src = region.get(off..end).ok_or_else(fail)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// An image that counts the batched reads made of it and the ranges
    /// they were given.
    struct Counting {
        image: ImageMemory,
        batches: Cell<usize>,
        ranges: Cell<usize>,
    }

    impl Memory for Counting {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.image.read(addr, buf)
        }
        fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
            self.batches.set(self.batches.get() + 1);
            self.ranges.set(self.ranges.get() + reqs.len());
            self.image.read_many(reqs)
        }
    }

    const MAPPED: u64 = 0x10000;
    const UNMAPPED: u64 = 0x90000;

    fn counting() -> Counting {
        let mut image = ImageMemory::new();
        image.insert(MAPPED, (0..=255).collect());
        Counting {
            image,
            batches: Cell::new(0),
            ranges: Cell::new(0),
        }
    }

    /// Reads 8-byte ranges at `MAPPED + 8 * i` for a `true` in `mapped`,
    /// at `UNMAPPED` otherwise: (what was read, the first byte of each
    /// range, the calls `read_each` reported).
    fn read_each_of(mem: &impl Memory, mapped: &[bool]) -> (Vec<bool>, Vec<u8>, usize) {
        let mut bufs = vec![[0xEEu8; 8]; mapped.len()];
        let mut reqs: Vec<(u64, &mut [u8])> = mapped
            .iter()
            .zip(bufs.iter_mut())
            .enumerate()
            .map(|(i, (m, b))| {
                let addr = if *m { MAPPED + 8 * i as u64 } else { UNMAPPED };
                (addr, &mut b[..])
            })
            .collect();
        let mut read = vec![false; mapped.len()];
        let calls = mem.read_each(&mut reqs, &mut read);
        drop(reqs);
        (read, bufs.iter().map(|b| b[0]).collect(), calls)
    }

    #[test]
    fn read_each_is_one_batch_when_every_range_is_readable() {
        let mem = counting();
        let (read, first, calls) = read_each_of(&mem, &[true; 5]);
        assert_eq!(read, [true; 5]);
        assert_eq!(first, [0, 8, 16, 24, 32]);
        assert_eq!((calls, mem.batches.get(), mem.ranges.get()), (1, 1, 5));
    }

    #[test]
    fn read_each_skips_an_unreadable_first_range() {
        let mem = counting();
        let (read, first, calls) = read_each_of(&mem, &[false, true, true, true]);
        assert_eq!(read, [false, true, true, true]);
        assert_eq!(first, [0xEE, 8, 16, 24]);
        // The whole list, then the three after the unreadable one.
        assert_eq!((calls, mem.batches.get(), mem.ranges.get()), (2, 2, 4 + 3));
    }

    #[test]
    fn read_each_skips_an_unreadable_middle_range() {
        let mem = counting();
        let (read, first, calls) = read_each_of(&mem, &[true, true, false, true, true]);
        assert_eq!(read, [true, true, false, true, true]);
        assert_eq!(first, [0, 8, 0xEE, 24, 32]);
        assert_eq!((calls, mem.batches.get(), mem.ranges.get()), (2, 2, 5 + 2));
    }

    #[test]
    fn read_each_makes_no_call_past_an_unreadable_last_range() {
        let mem = counting();
        let (read, _, calls) = read_each_of(&mem, &[true, true, false]);
        assert_eq!(read, [true, true, false]);
        assert_eq!((calls, mem.batches.get()), (1, 1));
    }

    #[test]
    fn read_each_makes_one_call_per_unreadable_range_at_most() {
        let mem = counting();
        let (read, first, calls) = read_each_of(&mem, &[false, false, true, false, true]);
        assert_eq!(read, [false, false, true, false, true]);
        assert_eq!(first, [0xEE, 0xEE, 16, 0xEE, 32]);
        assert_eq!((calls, mem.batches.get()), (4, 4));
        let mem = counting();
        let (read, _, calls) = read_each_of(&mem, &[false; 3]);
        assert_eq!(read, [false; 3]);
        assert_eq!((calls, mem.batches.get()), (3, 3));
        let mem = counting();
        let (read, _, calls) = read_each_of(&mem, &[]);
        assert!(read.is_empty());
        assert_eq!((calls, mem.batches.get()), (0, 0));
    }

    /// Flags for fewer ranges than given: only those are read, and a stale
    /// `true` is not kept for a range not read.
    #[test]
    fn read_each_reads_only_the_ranges_it_has_flags_for() {
        let mem = counting();
        let (mut a, mut b, mut c) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let mut reqs: Vec<(u64, &mut [u8])> =
            vec![(UNMAPPED, &mut a), (MAPPED, &mut b), (MAPPED + 8, &mut c)];
        let mut read = [true; 2];
        assert_eq!(mem.read_each(&mut reqs, &mut read), 2);
        drop(reqs);
        assert_eq!(read, [false, true]);
        assert_eq!(c, [0; 8]);
        assert_eq!(mem.ranges.get(), 2 + 1);
    }

    /// A settled view reads through `read_each_settled` (by default each
    /// range on its own), with the same answer.
    #[test]
    fn settled_read_each_reads_each_range() {
        let mem = counting();
        let (read, first, calls) = read_each_of(&Settled(&mem), &[true, false, true]);
        assert_eq!(read, [true, false, true]);
        assert_eq!(first, [0, 0xEE, 16]);
        assert_eq!((calls, mem.batches.get()), (3, 0));
    }
}
