//! Resident memory of a process, cheaply: `/proc/PID/statm` is opened once
//! and re-read with `pread`, so a reading costs one system call.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::ProcessError;

/// Reads a process's resident set size (RSS) from a kept-open
/// `/proc/PID/statm`.
#[derive(Debug)]
pub struct StatmReader {
    file: File,
    page_size: u64,
    buf: [u8; 256],
}

impl StatmReader {
    /// Open `/proc/PID/statm`.
    pub fn open(pid: i32) -> Result<Self, ProcessError> {
        let path = format!("/proc/{pid}/statm");
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ProcessError::NoSuchProcess(pid),
            std::io::ErrorKind::PermissionDenied => ProcessError::PermissionDenied {
                pid,
                what: format!("reading {path}"),
            },
            _ => ProcessError::io(path, e),
        })?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(StatmReader {
            file,
            page_size: u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
            buf: [0; 256],
        })
    }

    /// Resident bytes now; `None` when the process is gone (or the file
    /// no longer parses).
    pub fn rss_bytes(&mut self) -> Option<u64> {
        let n = self.file.read_at(&mut self.buf, 0).ok()?;
        let text = self.buf.get(..n)?;
        parse_statm_resident(text)?.checked_mul(self.page_size)
    }
}

/// The second field of statm (resident pages).
pub fn parse_statm_resident(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_resident_field() {
        assert_eq!(parse_statm_resident(b"1000 250 30 4 0 90 0\n"), Some(250));
        assert_eq!(parse_statm_resident(b"1000"), None);
        assert_eq!(parse_statm_resident(b"a b c"), None);
    }

    #[test]
    fn own_rss_follows_a_touched_allocation() {
        let mut r = StatmReader::open(std::process::id() as i32).unwrap();
        let before = r.rss_bytes().unwrap();
        assert!(before > 0);
        // Touch 64 MiB: RSS must rise by most of it.
        let mut v = vec![0u8; 64 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        let after = r.rss_bytes().unwrap();
        std::hint::black_box(&v);
        assert!(
            after >= before + (48 << 20),
            "rss before {before}, after touching 64 MiB {after}"
        );
    }
}
