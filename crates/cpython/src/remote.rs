//! Reading a field of a structure in the target: `base + offset`, checked.
//!
//! `base` is almost always a pointer read from the target, so it can be
//! anything (a torn read, a freed object): adding a field offset to it must
//! not overflow (a panic in debug builds, a silently wrapped address in
//! release). Every such address goes through [`field`], and an overflow is a
//! [`CpythonError::Corrupt`] read, which the sampler drops and counts as torn.

use pyrometer_process::Memory;

use crate::error::CpythonError;

/// `base + off`, or a corrupt-data error when it overflows.
pub(crate) fn field(base: u64, off: u64) -> Result<u64, CpythonError> {
    base.checked_add(off)
        .ok_or(CpythonError::Corrupt("address overflow (garbage pointer)"))
}

/// Reads of fields at `base + off` with the address checked by [`field`].
pub(crate) trait ReadField: Memory {
    /// The `u64` at `base + off`.
    fn u64_at(&self, base: u64, off: u64) -> Result<u64, CpythonError> {
        Ok(self.read_u64(field(base, off)?)?)
    }
    /// The `i32` at `base + off`.
    fn i32_at(&self, base: u64, off: u64) -> Result<i32, CpythonError> {
        Ok(self.read_i32(field(base, off)?)?)
    }
    /// The `u32` at `base + off`.
    fn u32_at(&self, base: u64, off: u64) -> Result<u32, CpythonError> {
        Ok(self.read_u32(field(base, off)?)?)
    }
}

impl<M: Memory + ?Sized> ReadField for M {}

#[cfg(test)]
mod tests {
    use super::*;
    use pyrometer_process::ImageMemory;

    #[test]
    fn overflowing_field_addresses_are_corrupt_reads() {
        let mut img = ImageMemory::new();
        img.insert(0x1000, vec![7; 16]);
        assert_eq!(img.u32_at(0x1000, 8).unwrap(), 0x0707_0707);
        for base in [u64::MAX, u64::MAX - 7, 1 << 63 | (u64::MAX >> 1)] {
            assert!(matches!(
                img.u64_at(base, 16),
                Err(CpythonError::Corrupt(_))
            ));
            assert!(matches!(img.i32_at(base, 8), Err(CpythonError::Corrupt(_))));
        }
        assert!(matches!(field(u64::MAX, 1), Err(CpythonError::Corrupt(_))));
        assert_eq!(field(0x7fff_ffff_ffff, 8).unwrap(), 0x8000_0000_0007);
    }
}
