//! PID namespaces: a process in a container numbers its threads in its own
//! namespace. CPython stores those namespace-local numbers
//! (`PyThreadState.native_thread_id` on 3.11+, glibc's `struct pthread` tid
//! before), while `/proc/PID/task/TID` of the profiler's `/proc` wants the
//! numbers of the profiler's namespace. [`Process::ns_tid_map`] reads the
//! `NSpid:` line of every thread's `status` file to translate.

use std::collections::HashMap;

use crate::error::ProcessError;
use crate::process::Process;

/// Thread ids of one process in two PID namespaces: ours (the namespace of
/// the `/proc` pyrometer reads, normally the host's) and the process's own
/// innermost namespace. Identity when the process is in our namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsTidMap {
    to_host: HashMap<i32, i32>,
    to_ns: HashMap<i32, i32>,
}

impl NsTidMap {
    /// Build from `(namespace tid, our tid)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (i32, i32)>) -> Self {
        let mut map = NsTidMap::default();
        for (ns, host) in pairs {
            map.to_host.insert(ns, host);
            map.to_ns.insert(host, ns);
        }
        map
    }

    /// Our TID of the thread the process itself calls `ns_tid`.
    pub fn to_host(&self, ns_tid: i32) -> Option<i32> {
        self.to_host.get(&ns_tid).copied()
    }

    /// The process's own TID of the thread we call `host_tid`.
    pub fn to_ns(&self, host_tid: i32) -> Option<i32> {
        self.to_ns.get(&host_tid).copied()
    }

    /// The TIDs as the process itself sees them (what CPython and glibc
    /// store), sorted.
    pub fn ns_tids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.to_host.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Our TIDs, sorted.
    pub fn host_tids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.to_ns.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Whether both namespaces number every thread alike (the process is
    /// in our PID namespace): no translation is needed.
    pub fn is_identity(&self) -> bool {
        self.to_host.iter().all(|(ns, host)| ns == host)
    }

    /// Number of threads.
    pub fn len(&self) -> usize {
        self.to_host.len()
    }

    /// Whether no thread was found (the process is gone).
    pub fn is_empty(&self) -> bool {
        self.to_host.is_empty()
    }
}

/// The ids of one `NSpid:` line (`NSpid:\t4321\t7\t1`): outermost (the
/// namespace of the `/proc` mount) first, innermost last.
pub fn parse_nspid(status: &str) -> Option<Vec<i32>> {
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    let ids: Vec<i32> = line["NSpid:".len()..]
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<Vec<i32>>>()?;
    (!ids.is_empty()).then_some(ids)
}

impl Process {
    /// The PID of the process in its own (innermost) PID namespace: 1 for
    /// the init of a container. Equal to [`Process::pid`] outside containers;
    /// `None` when the kernel does not say (`NSpid` needs Linux 4.1).
    pub fn ns_pid(&self) -> Option<i32> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        parse_nspid(&status)?.last().copied()
    }

    /// Whether the process lives in a PID namespace other than ours.
    pub fn in_other_pid_namespace(&self) -> bool {
        self.ns_pid().is_some_and(|ns| ns != self.pid())
    }

    /// Translate between the process's own thread ids and ours. Threads that
    /// exit while the map is read are left out; on kernels without `NSpid`
    /// the map is the identity. Threads come and go: re-read the map when an
    /// id is missing (at most every few hundred milliseconds).
    pub fn ns_tid_map(&self) -> Result<NsTidMap, ProcessError> {
        let tids = self.threads()?;
        let mut pairs = Vec::with_capacity(tids.len());
        for tid in tids {
            let path = format!("/proc/{}/task/{}/status", self.pid(), tid);
            let Ok(status) = std::fs::read_to_string(&path) else {
                continue; // the thread exited
            };
            let ns = parse_nspid(&status)
                .and_then(|ids| ids.last().copied())
                .unwrap_or(tid);
            pairs.push((ns, tid));
        }
        Ok(NsTidMap::from_pairs(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nspid_lines() {
        let status = "Name:\tpython3\nTgid:\t4321\nNSpid:\t4321\t17\t1\nNSsid:\t1\n";
        assert_eq!(parse_nspid(status), Some(vec![4321, 17, 1]));
        assert_eq!(parse_nspid("Name:\tx\nNSpid:\t55\n"), Some(vec![55]));
        assert_eq!(parse_nspid("Name:\tx\n"), None);
        assert_eq!(parse_nspid("NSpid:\t\n"), None);
        assert_eq!(parse_nspid("NSpid:\tabc\n"), None);
    }

    #[test]
    fn maps_both_ways() {
        let m = NsTidMap::from_pairs([(1, 4000), (7, 4006)]);
        assert_eq!(m.to_host(1), Some(4000));
        assert_eq!(m.to_ns(4006), Some(7));
        assert_eq!(m.to_host(4000), None);
        assert_eq!(m.ns_tids(), vec![1, 7]);
        assert_eq!(m.host_tids(), vec![4000, 4006]);
        assert!(!m.is_identity());
        assert!(NsTidMap::from_pairs([(5, 5)]).is_identity());
    }

    #[test]
    fn own_process_is_identity() {
        let me = Process::attach(std::process::id() as i32).expect("attach to self");
        let map = me.ns_tid_map().expect("map");
        assert!(!map.is_empty());
        // The test runner may itself run in a container; in any case our own
        // /proc numbers our threads as we do.
        assert!(map.is_identity(), "{map:?}");
        assert_eq!(me.ns_pid(), Some(std::process::id() as i32));
        assert!(!me.in_other_pid_namespace());
    }
}
