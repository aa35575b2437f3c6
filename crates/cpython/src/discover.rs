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
    /// Where pymalloc's arena count is (or why it cannot be read).
    pub heap: crate::heap::HeapLocation,
}

/// Which ways of finding the interpreter [`locate_with`] may use. The
/// default allows all of them, in the order listed; tests switch some off to
/// check the fallbacks a stripped or unusual build relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocateOptions {
    /// Use the binary's symbol tables (`_PyRuntime`, `Py_Version`,
    /// `PyCode_Type`). Off: behave as on a binary without any symbols.
    pub use_symbols: bool,
    /// Use the `.PyRuntime` ELF section (3.10+ builds have one).
    pub use_section: bool,
    /// Fall back to a bounded scan of the binary's writable data.
    pub use_scan: bool,
    /// Take the version from `Py_Version` (needs symbols).
    pub use_py_version: bool,
    /// Take the version from `_Py_DebugOffsets.version` (3.13+).
    pub use_debug_offsets_version: bool,
    /// Take the version from the `PY_VERSION` string in `.rodata`.
    pub use_version_string: bool,
}

impl Default for LocateOptions {
    fn default() -> Self {
        LocateOptions {
            use_symbols: true,
            use_section: true,
            use_scan: true,
            use_py_version: true,
            use_debug_offsets_version: true,
            use_version_string: true,
        }
    }
}

/// Find the interpreter in `process`, by every means available.
pub fn locate(process: &Process) -> Result<Interpreter, CpythonError> {
    locate_with(process, &LocateOptions::default())
}

/// Find the interpreter in `process` using only what `opts` allows.
pub fn locate_with(process: &Process, opts: &LocateOptions) -> Result<Interpreter, CpythonError> {
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
        // Binaries are opened through /proc/PID/root, so a target in another
        // mount namespace (a container) is read from its own files.
        let file = process.path_in_root(path);
        let binary = match Binary::load(&file, path, &maps) {
            Ok(b) => b,
            Err(e) => {
                last_err = Some(CpythonError::from(e));
                continue;
            }
        };
        match locate_in_binary(process, &binary, &maps, opts) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => continue,
            Err(e) => last_err = Some(e),
        }
    }
    // CPython before 3.7 has no _PyRuntime at all: name the version rather
    // than calling it "not Python".
    if let Some(old) = candidates.iter().find_map(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(old_version_from_file_name)
    }) {
        return Err(CpythonError::UnsupportedVersion {
            version: old,
            hint: ". Upgrade the target to a supported CPython.".into(),
        });
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
    opts: &LocateOptions,
) -> Result<Option<Interpreter>, CpythonError> {
    let symbol = |name: &str| {
        if opts.use_symbols {
            binary.symbol(name)
        } else {
            None
        }
    };
    let (runtime, runtime_source) = if let Some(addr) = symbol("_PyRuntime") {
        (addr, RuntimeSource::Symbol)
    } else if let Some(sec) = binary.section(".PyRuntime").filter(|_| opts.use_section) {
        (sec.addr, RuntimeSource::Section)
    } else if opts.use_scan && worth_scanning(mem, binary, opts) {
        match scan_for_runtime(mem, binary, maps, opts)? {
            Some(addr) => (addr, RuntimeSource::Scan),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };

    let debug = debug_offsets::read(mem, runtime)?;
    let (version, version_source) = detect_version(mem, binary, debug.as_ref(), opts)?;
    let layout = layout_for(version, debug.as_ref())?;
    let heap =
        crate::heap::HeapLocation::find(&layout, runtime, symbol(crate::heap::NARENAS_SYMBOL));
    Ok(Some(Interpreter {
        heap,
        version,
        layout,
        runtime,
        binary: binary.path.clone(),
        code_type: symbol("PyCode_Type"),
        runtime_source,
        version_source,
    }))
}

/// The one place where a version and (optionally) the interpreter's own
/// debug offsets become a layout. A table that disagrees with `version` on
/// the minor version, or comes from a free-threaded build, is refused.
pub fn layout_for(
    version: Version,
    debug: Option<&debug_offsets::DebugOffsets>,
) -> Result<Layout, CpythonError> {
    if let Some(d) = debug {
        let table = Version::from_hex(d.version);
        if d.free_threaded {
            return Err(CpythonError::FreeThreaded {
                version: debug_offsets::hex_version_string(d.version),
            });
        }
        if table.minor_pair() != version.minor_pair() {
            return Err(CpythonError::BadDebugOffsets(format!(
                "the table is for {} but the binary says {version}",
                debug_offsets::hex_version_string(d.version)
            )));
        }
    }
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
        } else if version.minor >= 13 {
            // 3.13+ carry their own offsets; without them only the static
            // 3.13 final/rc table is known.
            ": its _Py_DebugOffsets table could not be read".into()
        } else if version.level < 0xC {
            ": pre-releases (alphas, betas) are not supported; use a final release".into()
        } else {
            String::new()
        },
    })
}

fn looks_like_python(binary: &Binary) -> bool {
    let name = binary.file_name();
    name.starts_with("python3") || name.starts_with("libpython3")
}

/// The scan reads the binary's writable data, a few MB: only for binaries
/// named like Python or carrying a Python version string (a renamed or
/// statically linked interpreter).
fn worth_scanning<M: Memory>(mem: &M, binary: &Binary, opts: &LocateOptions) -> bool {
    looks_like_python(binary) || detect_version(mem, binary, None, opts).is_ok()
}

/// Version detection: `Py_Version`, the debug offsets, the version string in
/// `.rodata`, the file name — the first that works and that `opts` allows.
fn detect_version<M: Memory>(
    mem: &M,
    binary: &Binary,
    debug: Option<&debug_offsets::DebugOffsets>,
    opts: &LocateOptions,
) -> Result<(Version, VersionSource), CpythonError> {
    if opts.use_symbols && opts.use_py_version {
        if let Some(addr) = binary.symbol("Py_Version") {
            if let Ok(hex) = mem.read_u32(addr) {
                let v = Version::from_hex(hex as u64);
                if v.major == 3 {
                    return Ok((v, VersionSource::PyVersionSymbol));
                }
            }
        }
    }
    if opts.use_debug_offsets_version {
        if let Some(d) = debug {
            return Ok((Version::from_hex(d.version), VersionSource::DebugOffsets));
        }
    }
    let from_name = version_from_file_name(&binary.file_name());
    if opts.use_version_string {
        if let Some(rodata) = binary.rodata() {
            if let Some(v) = version_from_rodata(rodata, from_name.map(|v| v.minor)) {
                return Ok((v, VersionSource::VersionString));
            }
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

/// `python2.7`, `libpython3.6m.so.1.0` → `"2.7"`, `"3.6"`: a CPython older
/// than any pyrometer reads, named by its binary.
fn old_version_from_file_name(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let (major, minor): (u8, u8) = (major.parse().ok()?, minor.parse().ok()?);
    (major == 2 || (major == 3 && minor < 7)).then(|| format!("{major}.{minor}"))
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

/// Most bytes of writable data the scan reads from one binary.
const SCAN_LIMIT: u64 = 64 << 20;

/// The writable data of `binary` in the target: its read-write file
/// mappings (`.data`, `.PyRuntime`, ...) and the anonymous mapping that
/// directly follows one (`.bss` beyond the file; cut at the end of `.bss`
/// when the section headers say where that is), in address order. Section
/// headers are not needed, so this works on `sstrip`ped binaries too.
fn writable_regions(binary: &Binary, maps: &[MapEntry]) -> Vec<(u64, u64)> {
    let bss_end = binary
        .section(".bss")
        .map(|s| s.addr.saturating_add(s.size));
    let mut sorted: Vec<&MapEntry> = maps.iter().collect();
    sorted.sort_by_key(|m| m.start);
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut prev: Option<&MapEntry> = None;
    for m in sorted {
        let ours = m.path.as_deref() == Some(binary.path.as_path());
        let follows_ours = prev
            .is_some_and(|p| p.path.as_deref() == Some(binary.path.as_path()) && p.end == m.start);
        if m.read && m.write && m.end > m.start {
            if ours {
                out.push((m.start, m.end));
            } else if m.path.is_none() && follows_ours {
                let end = bss_end
                    .filter(|e| *e > m.start)
                    .map_or(m.end, |e| e.min(m.end));
                out.push((m.start, end));
            }
        }
        prev = Some(m);
    }
    out
}

/// Whether `interp` looks like a live interpreter state: its newest thread
/// state points back at it, is not the interpreter itself, has no `prev`
/// (new thread states are pushed at the head of the list), and carries a
/// thread id (and, 3.11+, an OS thread id within `pid_max`). Self-referential
/// list heads (obmalloc's `usedpools`) pass the first test alone.
fn plausible_interpreter<M: Memory>(
    mem: &M,
    layout: &Layout,
    interp: u64,
    heap_like: &impl Fn(u64) -> bool,
) -> bool {
    let Ok(tstate) = mem.read_u64(interp.wrapping_add(layout.interp_threads_head)) else {
        return false;
    };
    if tstate == 0 || tstate == interp || !heap_like(tstate) {
        return false;
    }
    let word = |off: u64| mem.read_u64(tstate.wrapping_add(off)).ok();
    // `prev` is the field before `next` (offset 0 in every version).
    let prev = layout.tstate_next.saturating_sub(8);
    if word(layout.tstate_interp) != Some(interp) || word(prev) != Some(0) {
        return false;
    }
    if word(layout.tstate_thread_id).is_none_or(|t| t == 0) {
        return false;
    }
    match layout.tstate_native_thread_id {
        Some(off) => word(off).is_some_and(|t| (1..=1 << 22).contains(&t)),
        None => true,
    }
}

/// Last resort for binaries without symbols or a `.PyRuntime` section: scan
/// the binary's writable data (at most [`SCAN_LIMIT`] bytes) for
///
/// 1. a valid `_Py_DebugOffsets` table (3.13+: the cookie, then a table
///    that passes validation), else
/// 2. a `_PyRuntime` whose interpreter list points at an interpreter whose
///    first thread state points back at it, using the static layout of the
///    version found without the runtime (`Py_Version`, `.rodata`, file name).
fn scan_for_runtime<M: Memory>(
    mem: &M,
    binary: &Binary,
    maps: &[MapEntry],
    opts: &LocateOptions,
) -> Result<Option<u64>, CpythonError> {
    let mut budget = SCAN_LIMIT;
    let mut regions: Vec<(u64, Vec<u8>)> = Vec::new();
    for (start, end) in writable_regions(binary, maps) {
        let len = (end - start).min(budget);
        if len == 0 {
            break;
        }
        budget -= len;
        if let Ok(bytes) = mem.read_vec(start, len as usize) {
            regions.push((start, bytes));
        }
    }

    // 1. The debug offsets cookie.
    for (start, bytes) in &regions {
        let mut off = 0usize;
        while off + 24 <= bytes.len() {
            if &bytes[off..off + 8] == debug_offsets::COOKIE {
                if let Ok(Some(_)) = debug_offsets::DebugOffsets::parse(&bytes[off..]) {
                    return Ok(Some(start + off as u64));
                }
            }
            off += 8;
        }
    }

    // 2. The interpreter list, with a static layout.
    let Ok((version, _)) = detect_version(mem, binary, None, opts) else {
        return Ok(None);
    };
    let Some(layout) = Layout::for_version(version) else {
        return Ok(None);
    };
    let heap_like = |addr: u64| {
        addr.is_multiple_of(8) && maps.iter().any(|m| m.contains(addr) && m.read && m.write)
    };
    let head = layout.runtime_interpreters_head as usize;
    for (start, bytes) in &regions {
        let mut off = 0usize;
        while off + head + 8 <= bytes.len() {
            let word = &bytes[off + head..off + head + 8];
            let interp = u64::from_le_bytes(word.try_into().unwrap_or_default());
            off += 8;
            if interp == 0 || !heap_like(interp) {
                continue;
            }
            if plausible_interpreter(mem, &layout, interp, &heap_like) {
                return Ok(Some(start + (off - 8) as u64));
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
    fn old_versions_from_names() {
        assert_eq!(
            old_version_from_file_name("python2.7").as_deref(),
            Some("2.7")
        );
        assert_eq!(
            old_version_from_file_name("libpython3.6m.so.1.0").as_deref(),
            Some("3.6")
        );
        assert_eq!(old_version_from_file_name("python3.11"), None);
        assert_eq!(old_version_from_file_name("python3.7m"), None);
        assert_eq!(old_version_from_file_name("python3"), None);
        assert_eq!(old_version_from_file_name("pythonista"), None);
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

    /// The scan's plausibility check follows pointers from the binary's
    /// data: on garbage (huge, misaligned, self-referential) it must say no
    /// and never panic, with every static layout.
    #[test]
    fn plausible_interpreter_on_garbage() {
        use pyrometer_process::ImageMemory;
        const BASE: u64 = 0x7f00_0000_0000;
        let values = [
            0,
            1,
            8,
            BASE,
            BASE + 8,
            BASE + 4096,
            u64::MAX,
            u64::MAX - 7,
            1 << 63,
        ];
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let heap_like = |a: u64| a.is_multiple_of(8) && (BASE..BASE + 8192).contains(&a);
        for minor in 8..=13 {
            let layout = Layout::for_version(Version::new(3, minor, 0)).unwrap();
            for _ in 0..300 {
                let page: Vec<u8> = (0..1024)
                    .flat_map(|_| {
                        let r = next();
                        let v = values[(r % values.len() as u64) as usize];
                        let v = if r & 0x100 != 0 {
                            v.wrapping_add(r >> 40 & !7)
                        } else {
                            v
                        };
                        v.to_le_bytes()
                    })
                    .collect();
                let mut mem = ImageMemory::new();
                mem.insert(BASE, page);
                for interp in [BASE, BASE + 8 * (next() % 1024), u64::MAX - 7, next()] {
                    let _ = plausible_interpreter(&mem, &layout, interp, &heap_like);
                }
            }
            // A self-referential list head is not an interpreter.
            let mut mem = ImageMemory::new();
            mem.insert(BASE, BASE.to_le_bytes().repeat(1024));
            assert!(!plausible_interpreter(&mem, &layout, BASE, &heap_like));
        }
    }
}
