//! A live Linux process seen through /proc and `process_vm_readv`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{MemoryError, ProcessError};
use crate::maps::{parse_maps, MapEntry};
use crate::memory::Memory;

/// A running process, identified by PID. Reads its memory without stopping it.
#[derive(Debug)]
pub struct Process {
    pid: i32,
    /// `/proc/PID/mem`, opened lazily as a fallback when `process_vm_readv`
    /// is unavailable.
    mem_fallback: std::sync::OnceLock<Option<File>>,
}

/// The scheduler's view of one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedState {
    /// Running or runnable (`R`).
    Running,
    /// Sleeping, waiting on I/O, stopped or anything else.
    Sleeping,
    /// The thread is gone.
    Gone,
}

impl Process {
    /// Check that `pid` names a live, user-space process that can be read.
    pub fn attach(pid: i32) -> Result<Self, ProcessError> {
        if pid <= 0 {
            return Err(ProcessError::InvalidPid(pid as i64));
        }
        let stat_path = format!("/proc/{pid}/stat");
        let stat = match std::fs::read_to_string(&stat_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProcessError::NoSuchProcess(pid))
            }
            Err(e) => return Err(ProcessError::io(stat_path, e)),
        };
        let fields = stat_fields(&stat);
        let state = fields.first().copied().unwrap_or("?");
        if state == "Z" || state == "X" {
            return Err(ProcessError::Exited(pid));
        }
        // Field 9 of stat is `flags`; PF_KTHREAD marks kernel threads.
        let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
        if flags & 0x0020_0000 != 0 {
            return Err(ProcessError::NotProfileable {
                pid,
                why: "it is a kernel thread, not a user program".into(),
            });
        }
        let process = Process {
            pid,
            mem_fallback: std::sync::OnceLock::new(),
        };
        // Probe access now so permission problems surface before any work.
        match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(ProcessError::PermissionDenied {
                    pid,
                    what: "reading /proc/PID/exe".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProcessError::NotProfileable {
                    pid,
                    why: "it has no executable (a kernel thread or an exiting process)".into(),
                })
            }
            Err(e) => return Err(ProcessError::io(format!("/proc/{pid}/exe"), e)),
        }
        Ok(process)
    }

    /// The PID as the caller gave it (in the caller's PID namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `/proc/PID/root`: paths of the target's binaries are resolved below it
    /// so that targets in other mount namespaces (containers) work.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// A path as the target sees it, made openable from here.
    pub fn path_in_root(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let candidate = self.root().join(rel);
        if candidate.exists() {
            candidate
        } else {
            path.to_path_buf()
        }
    }

    /// The memory map.
    pub fn maps(&self) -> Result<Vec<MapEntry>, ProcessError> {
        let path = format!("/proc/{}/maps", self.pid);
        let text = self.read_proc_text(&path)?;
        Ok(parse_maps(&text))
    }

    /// The executable's path as the target sees it.
    pub fn exe(&self) -> Result<PathBuf, ProcessError> {
        let path = format!("/proc/{}/exe", self.pid);
        std::fs::read_link(&path).map_err(|e| self.map_io(path, e))
    }

    /// The device and inode of the running executable: they change when
    /// the process execs another program.
    pub fn exe_identity(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        // `metadata` follows the magic link to the file itself, in whatever
        // mount namespace it lives.
        let m = std::fs::metadata(format!("/proc/{}/exe", self.pid)).ok()?;
        Some((m.dev(), m.ino()))
    }

    /// The command line, arguments joined by spaces.
    pub fn cmdline(&self) -> Result<String, ProcessError> {
        let path = format!("/proc/{}/cmdline", self.pid);
        let raw = std::fs::read(&path).map_err(|e| self.map_io(path, e))?;
        let parts: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        Ok(parts.join(" "))
    }

    /// Whether the process still exists (and is not a zombie).
    pub fn is_alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(s) => !matches!(stat_fields(&s).first(), Some(&"Z") | Some(&"X")),
            Err(_) => false,
        }
    }

    /// The thread ids (TIDs) of the process.
    pub fn threads(&self) -> Result<Vec<i32>, ProcessError> {
        let path = format!("/proc/{}/task", self.pid);
        let dir = std::fs::read_dir(&path).map_err(|e| self.map_io(path, e))?;
        let mut tids: Vec<i32> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        tids.sort_unstable();
        Ok(tids)
    }

    /// Direct children of every thread, from `/proc/PID/task/*/children`.
    pub fn children(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for tid in self.threads().unwrap_or_default() {
            if let Ok(text) =
                std::fs::read_to_string(format!("/proc/{}/task/{}/children", self.pid, tid))
            {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|s| s.parse::<i32>().ok()),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// CPU time (user + system) consumed by the process so far, in clock ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let f = stat_fields(&s);
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn read_proc_text(&self, path: &str) -> Result<String, ProcessError> {
        let mut s = String::new();
        File::open(path)
            .and_then(|mut f| f.read_to_string(&mut s))
            .map_err(|e| self.map_io(path.to_string(), e))?;
        Ok(s)
    }

    fn map_io(&self, path: String, e: std::io::Error) -> ProcessError {
        match e.kind() {
            std::io::ErrorKind::NotFound => ProcessError::NoSuchProcess(self.pid),
            std::io::ErrorKind::PermissionDenied => ProcessError::PermissionDenied {
                pid: self.pid,
                what: format!("reading {path}"),
            },
            _ => ProcessError::io(path, e),
        }
    }

    fn read_via_proc_mem(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let file = self
            .mem_fallback
            .get_or_init(|| File::open(format!("/proc/{}/mem", self.pid)).ok());
        let file = file.as_ref().ok_or(MemoryError::PermissionDenied)?;
        match file.read_exact_at(buf, addr) {
            Ok(()) => Ok(()),
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::ESRCH) => MemoryError::ProcessGone,
                Some(libc::EPERM) | Some(libc::EACCES) => MemoryError::PermissionDenied,
                _ => MemoryError::Unmapped {
                    addr,
                    len: buf.len(),
                },
            }),
        }
    }
}

impl Memory for Process {
    fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> usize {
        // One process_vm_readv for up to IOV_MAX ranges; the kernel stops at
        // the first range it cannot read.
        let mut done = 0;
        for chunk in reqs.chunks_mut(1024) {
            let local: Vec<libc::iovec> = chunk
                .iter_mut()
                .map(|(_, b)| libc::iovec {
                    iov_base: b.as_mut_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // Contiguous ranges are one remote range: the kernel pins and
            // looks up the mapping once per remote range, not per page.
            let mut remote: Vec<libc::iovec> = Vec::with_capacity(chunk.len());
            for (a, b) in chunk.iter() {
                match remote.last_mut() {
                    Some(last)
                        if (last.iov_base as u64).checked_add(last.iov_len as u64) == Some(*a) =>
                    {
                        last.iov_len += b.len();
                    }
                    _ => remote.push(libc::iovec {
                        iov_base: *a as *mut libc::c_void,
                        iov_len: b.len(),
                    }),
                }
            }
            // SAFETY: `local` describes our own live buffers; `remote` is only
            // interpreted by the kernel in the target's address space.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            if n < 0 {
                return done;
            }
            let mut left = n as usize;
            for (_, b) in chunk.iter() {
                if left < b.len() {
                    return done;
                }
                left -= b.len();
                done += 1;
            }
        }
        done
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: both iovecs describe valid ranges: `local` is our own
        // buffer; `remote` is only interpreted by the kernel in the target.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n as usize == buf.len() {
            return Ok(());
        }
        if n >= 0 {
            return Err(MemoryError::Unmapped {
                addr,
                len: buf.len(),
            });
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        match errno {
            libc::EFAULT | libc::EINVAL => Err(MemoryError::Unmapped {
                addr,
                len: buf.len(),
            }),
            libc::ESRCH => Err(MemoryError::ProcessGone),
            libc::EPERM => Err(MemoryError::PermissionDenied),
            libc::ENOSYS => self.read_via_proc_mem(addr, buf),
            other => Err(MemoryError::Os(other)),
        }
    }
}

/// The calling thread's id (as in `/proc/PID/task/TID`).
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Split `/proc/*/stat` after the command name (which may hold spaces and
/// parentheses): element 0 is the state letter.
pub fn stat_fields(stat: &str) -> Vec<&str> {
    match stat.rfind(')') {
        Some(i) => stat[i + 1..].split_whitespace().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_many_reads_contiguous_and_separate_ranges_and_stops_at_unmapped() {
        let me = Process::attach(std::process::id() as i32).unwrap();
        let data: Vec<u8> = (0..3 * 4096).map(|i| (i % 251) as u8).collect();
        let base = data.as_ptr() as u64;
        let other = [7u8; 16];
        let (mut a, mut b, mut c, mut d, mut e) =
            ([0u8; 4096], [0u8; 4096], [0u8; 100], [0u8; 16], [0u8; 8]);
        // a and b are contiguous (one remote range), c follows a gap, d is
        // elsewhere, e is unmapped.
        let mut reqs: Vec<(u64, &mut [u8])> = vec![
            (base, &mut a),
            (base + 4096, &mut b),
            (base + 8192 + 50, &mut c),
            (other.as_ptr() as u64, &mut d),
            (8, &mut e),
        ];
        assert_eq!(me.read_many(&mut reqs), 4);
        drop(reqs);
        assert_eq!(&a[..], &data[..4096]);
        assert_eq!(&b[..], &data[4096..8192]);
        assert_eq!(&c[..], &data[8242..8342]);
        assert_eq!(d, other);
    }

    #[test]
    fn gettid_names_the_calling_thread() {
        let pid = std::process::id() as i32;
        let tid = std::thread::spawn(gettid).join().unwrap();
        assert_ne!(tid, pid);
        assert_ne!(tid, gettid());
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{}/status", gettid()))
            .expect("the calling thread's task directory");
        assert!(
            status.contains(&format!("\nPid:\t{}\n", gettid())),
            "{status}"
        );
    }

    /// The ranges after an unmapped one are read by a second
    /// `process_vm_readv`; when all are mapped, one does.
    #[test]
    fn read_each_skips_an_unmapped_range_of_a_live_process() {
        let me = Process::attach(std::process::id() as i32).unwrap();
        let data: Vec<u8> = (0..2 * 4096).map(|i| (i % 251) as u8).collect();
        let base = data.as_ptr() as u64;
        let (mut a, mut b, mut c) = ([0u8; 64], [0u8; 8], [0u8; 64]);
        let mut reqs: Vec<(u64, &mut [u8])> =
            vec![(base, &mut a), (8, &mut b), (base + 4096, &mut c)];
        let mut read = [false; 3];
        assert_eq!(me.read_each(&mut reqs, &mut read), 2);
        drop(reqs);
        assert_eq!(read, [true, false, true]);
        assert_eq!(&a[..], &data[..64]);
        assert_eq!(&c[..], &data[4096..4096 + 64]);
        let (mut a, mut c) = ([0u8; 64], [0u8; 64]);
        let mut reqs: Vec<(u64, &mut [u8])> = vec![(base + 100, &mut a), (base + 5000, &mut c)];
        assert_eq!(me.read_each(&mut reqs, &mut read[..2]), 1);
        assert_eq!(read[..2], [true, true]);
    }
}
