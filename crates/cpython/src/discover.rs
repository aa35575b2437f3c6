//! Finding the interpreter in a process: which binary holds it, its version,
//! where `_PyRuntime` is, and which [`Layout`] reads it.

use std::path::{Path, PathBuf};

use pyrometer_process::{Binary, MapEntry, Memory, Process};

use crate::debug_offsets;
use crate::error::CpythonError;
use crate::layout::{Layout, Version};

/// How `_PyRuntime` was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeSource {
    /// The `_PyRuntime` symbol.
    Symbol,
    /// The `.PyRuntime` ELF section.
    Section,
    /// A scan of writable data for a plausible interpreter state.
    Scan,
}

/// How the version was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// The `Py_Version` symbol (3.11+).
    PyVersionSymbol,
    /// `_Py_DebugOffsets.version` (3.13+).
    DebugOffsets,
    /// The version string in `.rodata`.
    VersionString,
    /// The binary's file name.
    FileName,
}

/// A located interpreter, ready to be read.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// The interpreter version.
    pub version: Version,
    /// The layout used to read it.
    pub layout: Layout,
    /// Address of `_PyRuntime` in the target.
    pub runtime: u64,
    /// The binary (executable or libpython) holding the interpreter.
    pub binary: PathBuf,
    /// Address of `PyCode_Type`, when the binary has the symbol.
    pub code_type: Option<u64>,
    /// How `_PyRuntime` was found.
    pub runtime_source: RuntimeSource,
    /// How the version was found.
    pub version_source: VersionSource,
}

/// Find the interpreter in `process`.
pub fn locate(process: &Process) -> Result<Interpreter, CpythonError> {
    let pid = process.pid();
    let maps = process.maps()?;
    let exe = process.exe()?;
    let candidates = candidate_binaries(&maps, &exe);
    if candidates.is_empty() {
        return Err(CpythonError::NotPython {
            pid,
            why: "no mapped binaries".into(),
        });
    }
    let mut last_err = None;
    for path in &candidates {
        let file = process.path_in_root(path);
        let binary = match Binary::load(&file, path, &maps) {
            Ok(b) => b,
            Err(e) => {
                last_err = Some(CpythonError::from(e));
                continue;
            }
        };
        match locate_in_binary(process, &binary, &maps) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => continue,
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| CpythonError::NotPython {
        pid,
        why: format!(
            "no CPython runtime (_PyRuntime) in {}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }))
}

/// libpython mappings first (shared builds, embedded interpreters), then the
/// executable itself (static builds).
fn candidate_binaries(maps: &[MapEntry], exe: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for m in maps {
        if let Some(p) = &m.path {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            if name.starts_with("libpython3") && !out.contains(p) {
                out.push(p.clone());
            }
        }
    }
    if maps.iter().any(|m| m.path.as_deref() == Some(exe)) && !out.iter().any(|p| p == exe) {
        out.push(exe.to_path_buf());
    }
    out
}

fn locate_in_binary<M: Memory>(
    mem: &M,
    binary: &Binary,
    maps: &[MapEntry],
) -> Result<Option<Interpreter>, CpythonError> {
    let (runtime, runtime_source) = if let Some(addr) = binary.symbol("_PyRuntime") {
        (addr, RuntimeSource::Symbol)
    } else if let Some(sec) = binary.section(".PyRuntime") {
        (sec.addr, RuntimeSource::Section)
    } else if looks_like_python(binary) {
        match scan_for_runtime(mem, binary, maps)? {
            Some(addr) => (addr, RuntimeSource::Scan),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };

    let debug = debug_offsets::read(mem, runtime)?;
    let (version, version_source) = detect_version(mem, binary, debug.as_ref())?;
    if let Some(d) = &debug {
        if d.free_threaded {
            return Err(CpythonError::FreeThreaded {
                version: version.to_string(),
            });
        }
    }
    let layout = layout_for(version, debug.as_ref())?;
    Ok(Some(Interpreter {
        version,
        layout,
        runtime,
        binary: binary.path.clone(),
        code_type: binary.symbol("PyCode_Type"),
        runtime_source,
        version_source,
    }))
}

/// The one place where a version and (optionally) the interpreter's own
/// debug offsets become a layout.
pub fn layout_for(
    version: Version,
    debug: Option<&debug_offsets::DebugOffsets>,
) -> Result<Layout, CpythonError> {
    if version.major != 3 || version.minor < 8 {
        return Err(CpythonError::UnsupportedVersion {
            version: version.to_string(),
            hint: ". Upgrade the target to a supported CPython.".into(),
        });
    }
    if let Some(d) = debug {
        return debug_offsets::layout_from_debug_offsets(version, d);
    }
    Layout::for_version(version).ok_or_else(|| CpythonError::UnsupportedVersion {
        version: version.to_string(),
        hint: if version.minor > 15 {
            ". A newer pyrometer may support it.".into()
        } else {
            String::new()
        },
    })
}

fn looks_like_python(binary: &Binary) -> bool {
    let name = binary.file_name();
    name.starts_with("python3") || name.starts_with("libpython3")
}

/// Version detection: `Py_Version`, the debug offsets, the version string in
/// `.rodata`, the file name — the first that works.
fn detect_version<M: Memory>(
    mem: &M,
    binary: &Binary,
    debug: Option<&debug_offsets::DebugOffsets>,
) -> Result<(Version, VersionSource), CpythonError> {
    if let Some(addr) = binary.symbol("Py_Version") {
        if let Ok(hex) = mem.read_u32(addr) {
            let v = Version::from_hex(hex as u64);
            if v.major == 3 {
                return Ok((v, VersionSource::PyVersionSymbol));
            }
        }
    }
    if let Some(d) = debug {
        return Ok((Version::from_hex(d.version), VersionSource::DebugOffsets));
    }
    let from_name = version_from_file_name(&binary.file_name());
    if let Some(rodata) = binary.rodata() {
        if let Some(v) = version_from_rodata(rodata, from_name.map(|v| v.minor)) {
            return Ok((v, VersionSource::VersionString));
        }
    }
    if let Some(v) = from_name {
        return Ok((v, VersionSource::FileName));
    }
    Err(CpythonError::NotPython {
        pid: 0,
        why: format!(
            "cannot tell the Python version of {}",
            binary.path.display()
        ),
    })
}

/// `python3.11`, `libpython3.12.so.1.0`, `libpython3.13t.so` → 3.X.0.
pub fn version_from_file_name(name: &str) -> Option<Version> {
    let rest = name
        .strip_prefix("libpython3.")
        .or_else(|| name.strip_prefix("python3."))?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let minor: u8 = digits.parse().ok()?;
    Some(Version::new(3, minor, 0))
}

/// Find `PY_VERSION` ("3.X.Y", NUL-terminated, possibly the tail of a longer
/// string the linker merged it into) in `.rodata`.
pub fn version_from_rodata(rodata: &[u8], want_minor: Option<u8>) -> Option<Version> {
    let mut best: Option<Version> = None;
    let mut i = 0;
    // A bounded scan: .rodata of libpython is a few MB.
    while let Some(pos) = memchr_from(rodata, i, b'3') {
        i = pos + 1;
        if pos > 0 && (rodata[pos - 1].is_ascii_digit() || rodata[pos - 1] == b'.') {
            continue;
        }
        let tail = &rodata[pos..rodata.len().min(pos + 24)];
        let Some(end) = tail.iter().position(|b| *b == 0) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&tail[..end]) else {
            continue;
        };
        if let Some(v) = parse_py_version(text) {
            if want_minor.is_none_or(|m| m == v.minor) {
                // Prefer the most specific match (release suffixes parse too).
                if best.is_none() {
                    best = Some(v);
                }
            }
        }
    }
    best
}

fn memchr_from(hay: &[u8], from: usize, needle: u8) -> Option<usize> {
    hay.get(from..)?
        .iter()
        .position(|b| *b == needle)
        .map(|p| p + from)
}

/// Parse "3.11.2", "3.13.0rc1", "3.14.0a3+" as written in PY_VERSION.
pub fn parse_py_version(text: &str) -> Option<Version> {
    let mut parts = text.splitn(3, '.');
    let major: u8 = parts.next()?.parse().ok()?;
    let minor: u8 = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let micro_digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let micro: u8 = micro_digits.parse().ok()?;
    let suffix = &rest[micro_digits.len()..];
    let level = if suffix.is_empty() || suffix == "+" {
        0xF
    } else if suffix.starts_with("rc") {
        0xC
    } else if suffix.starts_with('a') {
        0xA
    } else if suffix.starts_with('b') {
        0xB
    } else {
        return None;
    };
    if major != 3 || !(6..=40).contains(&minor) {
        return None;
    }
    Some(Version {
        major,
        minor,
        micro,
        level,
    })
}

/// Last resort for binaries without symbols or a `.PyRuntime` section: scan
/// the binary's writable data for a `_PyRuntime` whose interpreter list
/// points at a plausible interpreter state. Bounded to the first 16 MiB.
fn scan_for_runtime<M: Memory>(
    mem: &M,
    binary: &Binary,
    maps: &[MapEntry],
) -> Result<Option<u64>, CpythonError> {
    let Some(version) = version_from_file_name(&binary.file_name()) else {
        return Ok(None);
    };
    let Some(layout) = Layout::for_version(version) else {
        return Ok(None);
    };
    let heap_like = |addr: u64| {
        addr.is_multiple_of(8) && maps.iter().any(|m| m.contains(addr) && m.read && m.write)
    };
    for name in [".data", ".bss"] {
        let Some(sec) = binary.section(name) else {
            continue;
        };
        let len = sec.size.min(16 << 20) as usize;
        let Ok(bytes) = mem.read_vec(sec.addr, len) else {
            continue;
        };
        let head = layout.runtime_interpreters_head as usize;
        for off in (0..len.saturating_sub(head + 8)).step_by(8) {
            let interp = u64::from_le_bytes(
                bytes[off + head..off + head + 8]
                    .try_into()
                    .unwrap_or_default(),
            );
            if interp == 0 || !heap_like(interp) {
                continue;
            }
            // The interpreter's first thread must point back at it.
            let Ok(tstate) = mem.read_u64(interp + layout.interp_threads_head) else {
                continue;
            };
            if tstate == 0 || !heap_like(tstate) {
                continue;
            }
            if mem.read_u64(tstate + layout.tstate_interp).ok() == Some(interp) {
                return Ok(Some(sec.addr + off as u64));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_names() {
        assert_eq!(
            version_from_file_name("libpython3.12.so.1.0"),
            Some(Version::new(3, 12, 0))
        );
        assert_eq!(
            version_from_file_name("python3.8"),
            Some(Version::new(3, 8, 0))
        );
        assert_eq!(version_from_file_name("python3"), None);
        assert_eq!(version_from_file_name("uwsgi"), None);
    }

    #[test]
    fn version_strings() {
        assert_eq!(parse_py_version("3.11.2"), Some(Version::new(3, 11, 2)));
        assert_eq!(parse_py_version("3.13.0rc1").map(|v| v.level), Some(0xC));
        assert_eq!(parse_py_version("3.x.1"), None);
        let ro = b"junk\0/tmp/Python-3.8.18\0other 3.9.1\0";
        assert_eq!(
            version_from_rodata(ro, Some(8)),
            Some(Version::new(3, 8, 18))
        );
        assert_eq!(version_from_rodata(ro, Some(7)), None);
    }
}
