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

    /// Fill `buf` with bytes that do not change while the target runs
    /// (code objects, their strings and line tables): a snapshotting source
    /// may fetch them late without that making the walk inconsistent, and
    /// need not keep them for the next snapshot. Defaults to [`Memory::read`].
    fn read_settled(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read(addr, buf)
    }

    /// [`Memory::read_many`] of settled bytes: a snapshotting source serves
    /// what its snapshot holds and reads the rest in one go, without making
    /// the walk torn.
    fn read_many_settled(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        let mut n = 0;
        for (addr, buf) in reqs.iter_mut() {
            if self.read_settled(*addr, buf).is_err() {
                break;
            }
            n += 1;
        }
        n
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
    fn read_settled(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_settled(addr, buf)
    }
    fn read_transient(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_transient(addr, buf)
    }
    fn read_many_settled(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        (**self).read_many_settled(reqs)
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
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        self.0.read_many_settled(reqs)
    }
    fn read_many_settled(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        self.0.read_many_settled(reqs)
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
    fn read_many_settled(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        self.0.read_many_settled(reqs)
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
