//! `/proc/PID/maps`.

use std::path::PathBuf;

/// One mapping of the target's address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Offset in the mapped file.
    pub offset: u64,
    /// Mapped file as the target sees it, if any.
    pub path: Option<PathBuf>,
}

impl MapEntry {
    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Parse the text of a maps file; malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MapEntry> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?.as_bytes();
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.next().map(str::trim).filter(|p| p.starts_with('/'));
    let (s, e) = range.split_once('-')?;
    Some(MapEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        read: perms.first() == Some(&b'r'),
        write: perms.get(1) == Some(&b'w'),
        exec: perms.get(2) == Some(&b'x'),
        offset,
        path: path.map(|p| PathBuf::from(p.trim_end_matches(" (deleted)"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let m = parse_maps(
            "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/python3.11\n\
             7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\n\
             garbage\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].start, 0x400000);
        assert!(m[0].exec && !m[0].write);
        assert_eq!(
            m[0].path.as_deref(),
            Some(std::path::Path::new("/usr/bin/python3.11"))
        );
        assert_eq!(m[1].path, None);
    }
}
